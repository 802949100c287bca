// The fault filter (Envoy's fault injection): delays and aborts a set share of the requests a
// header match selects. A delayed stream is paused and resumed from the root context's onTick,
// which runs only while a delay is pending. The share is picked by a counter, not at random, so
// that a percentage is exact: 25 selects 25 of every 100 matching requests.

import { Counter, Gauge, Headers, HeadersAction, HeaderMap, HttpContext, RootContext, allHeadersMatch, currentTimeNanoseconds, log, registerRootContext } from "../../../sdk/assembly";
import { FaultConfig, MAX_MS, NONE, percentText, readConfig } from "./config";
import { ABORT_GRPC_HEADER, ABORT_HEADER, ABORT_PERCENTAGE_HEADER, DELAY_HEADER, DELAY_PERCENTAGE_HEADER, Spread, headerInteger, shareFor } from "./selection";

const delaysInjected = new Counter("fault_delays_injected_total");
const abortsInjected = new Counter("fault_aborts_injected_total");
const delaysSkipped = new Counter("fault_delays_overflow_total");
const activeDelays = new Gauge("fault_active_delays");

/** How often onTick looks for delays that are over, while some are pending. */
const TICK_MS: u32 = 10;
/**
 * Slack when comparing the clock to a delay's end. Hosts turn a millisecond clock into
 * nanoseconds through a double, which near today's epoch rounds by up to 128 ns: the tick due at
 * a delay's very end may read as a hair before it.
 */
const CLOCK_SLACK_NS: u64 = 1000;

class FaultRoot extends RootContext {
  config: FaultConfig = new FaultConfig();
  readonly delaySpread: Spread = new Spread();
  readonly abortSpread: Spread = new Spread();
  /** Streams held by a delay, in the order they were paused. */
  pending: FaultStream[] = [];

  onConfigure(configuration: string): bool {
    const config = readConfig(configuration);
    if (config === null) return false;
    this.config = config;
    const parts = new Array<string>();
    if (config.delay.enabled) parts.push("delay " + (config.delay.fixedDelayMs != NONE ? config.delay.fixedDelayMs.toString() + " ms" : "from the header") + " for " + percentText(config.delay.share));
    if (config.abort.enabled) parts.push("abort for " + percentText(config.abort.share));
    log.info("fault: " + parts.join(", ") + " of the requests " + (config.headers.length > 0 ? "matching " + config.headers.length.toString() + " header condition(s)" : "(all match)") + (config.headerControlled ? "; header-controlled" : ""));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new FaultStream(id, this);
  }

  hold(stream: FaultStream): void {
    if (this.pending.length == 0) this.setTickPeriod(TICK_MS);
    this.pending.push(stream);
    activeDelays.add(1);
  }

  /** Forgets a stream that ended while it was held (its client left, say). */
  forget(stream: FaultStream): void {
    const at = this.pending.indexOf(stream);
    if (at < 0) return;
    this.pending.splice(at, 1);
    this.released(1);
  }

  onTick(): void {
    const now = currentTimeNanoseconds() + CLOCK_SLACK_NS;
    const due = new Array<FaultStream>();
    const waiting = new Array<FaultStream>();
    for (let i = 0; i < this.pending.length; i++) {
      const s = unchecked(this.pending[i]);
      if (s.resumeAt <= now) due.push(s);
      else waiting.push(s);
    }
    if (due.length == 0) return;
    this.pending = waiting;
    this.released(due.length);
    for (let i = 0; i < due.length; i++) unchecked(due[i]).delayOver();
  }

  /** `count` streams left the pending list. The gauge moves by steps: fault filters in one proxy share it. */
  private released(count: i32): void {
    activeDelays.add(-count);
    if (this.pending.length == 0) this.setTickPeriod(0);
  }
}

class FaultStream extends HttpContext {
  /** When a held stream may go on (ns since the epoch); 0 when it is not held. */
  resumeAt: u64 = 0;
  /** The abort to answer with once the delay is over; NONE for no abort. */
  private abortStatus: i64 = NONE;
  private abortGrpcStatus: i64 = NONE;

  constructor(id: u32, readonly fault: FaultRoot) {
    super(id, fault);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.fault;
    const config = root.config;
    const headers = this.request.headers;
    if (!allHeadersMatch(config.headers, headers)) return HeadersAction.Continue;

    if (config.abort.enabled) this.chooseAbort(config, headers);
    if (config.delay.enabled) {
      const delayMs = this.chooseDelay(config, headers);
      if (delayMs > 0) {
        if (config.maxActiveFaults == NONE || <i64>root.pending.length < config.maxActiveFaults) {
          // Envoy's order: the delay first, then the abort (if any) when it is over.
          this.resumeAt = currentTimeNanoseconds() + <u64>delayMs * 1_000_000;
          root.hold(this);
          delaysInjected.increment();
          return HeadersAction.StopIteration;
        }
        delaysSkipped.increment();
      }
    }
    if (this.abortStatus != NONE) {
      this.answerAbort();
      return HeadersAction.StopIteration;
    }
    return HeadersAction.Continue;
  }

  /** The delay for this request if it is picked, else 0. */
  private chooseDelay(config: FaultConfig, headers: HeaderMap): i64 {
    let delayMs = config.delay.fixedDelayMs;
    if (config.headerControlled) {
      const asked = headerInteger(headers, DELAY_HEADER, 0, MAX_MS);
      if (asked != NONE) delayMs = asked;
    }
    // Only requests the fault applies to take a place in the spread.
    if (delayMs <= 0) return 0;
    const share = shareFor(config.delay.share, config.headerControlled, headers, DELAY_PERCENTAGE_HEADER);
    return this.fault.delaySpread.pick(share) ? delayMs : 0;
  }

  /** Sets abortStatus (and abortGrpcStatus) when this request is picked for an abort. */
  private chooseAbort(config: FaultConfig, headers: HeaderMap): void {
    let status = config.abort.httpStatus;
    let grpc = config.abort.grpcStatus;
    if (config.headerControlled) {
      const asked = headerInteger(headers, ABORT_HEADER, 200, 599);
      if (asked != NONE) status = asked;
      const askedGrpc = headerInteger(headers, ABORT_GRPC_HEADER, 0, 16);
      if (askedGrpc != NONE) grpc = askedGrpc;
    }
    if (status == NONE && grpc == NONE) return;
    // A gRPC status alone travels in an HTTP 200, as gRPC answers do.
    if (status == NONE) status = 200;
    const share = shareFor(config.abort.share, config.headerControlled, headers, ABORT_PERCENTAGE_HEADER);
    if (!this.fault.abortSpread.pick(share)) return;
    this.abortStatus = status;
    this.abortGrpcStatus = grpc;
  }

  private answerAbort(): void {
    abortsInjected.increment();
    const headers = new Headers().add("content-type", "text/plain");
    this.sendLocalResponse(<u32>this.abortStatus, this.fault.config.abort.body, headers, "fault_abort", <i32>this.abortGrpcStatus);
  }

  /** Called from the root's onTick once the delay is over. */
  delayOver(): void {
    this.resumeAt = 0;
    if (this.abortStatus != NONE) {
      // Outside this stream's own callback: the reply must name the stream first.
      this.makeEffective();
      this.answerAbort();
    } else {
      this.continueRequest();
    }
  }

  onDelete(): void {
    if (this.resumeAt != 0) this.fault.forget(this);
  }
}

registerRootContext((id: u32): RootContext => new FaultRoot(id), "fault");
