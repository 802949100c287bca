// The telemetry filter: a request counter and a duration histogram per combination of configured
// labels (Istio's stats filter model), a request id and a W3C traceparent for requests that come
// without one, optionally echoed in response headers, and extra access-log fields from onLog.
//
// config.ts parses the configuration, labels.ts reads label values, series.ts caches the metric
// handles of each label combination, ids.ts makes UUIDs and traceparents, access-log.ts the fields.

import {
  Counter,
  HeadersAction,
  HttpContext,
  RootContext,
  currentTimeNanoseconds,
  getPropertyI64,
  log,
  registerRootContext,
} from "../../../sdk/assembly";
import { writeAccessLogFields } from "./access-log";
import { TelemetryConfig, parseConfig } from "./config";
import { isValidTraceparent, newTraceparent, traceIdOf, uuidV4 } from "./ids";
import { labelValue } from "./labels";
import { SeriesCache } from "./series";

const DURATION = ["request", "duration"];

class TelemetryRoot extends RootContext {
  config: TelemetryConfig = new TelemetryConfig();
  series: SeriesCache | null = null;
  /** Label values of the stream being logged, reused by every stream (onLog runs one at a time). */
  values: string[] = [];
  requestIdsGenerated: Counter | null = null;
  traceparentsGenerated: Counter | null = null;
  /** Logged once: the host gave no random bytes. */
  randomFailed: bool = false;

  onConfigure(configuration: string): bool {
    const parsed = parseConfig(configuration);
    const config = parsed.config;
    if (config === null) {
      log.error("telemetry: invalid configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    const m = config.metrics;
    const prefix = m.prefix;
    if (m.enabled) {
      const names = new Array<string>(m.labels.length);
      for (let i = 0; i < names.length; i++) names[i] = m.labels[i].name;
      this.series = new SeriesCache(m.labelEncoding, names, prefix + "requests_total", prefix + "request_duration_milliseconds", m.maxSeries);
      this.values = new Array<string>(names.length);
    } else {
      this.series = null;
    }
    this.requestIdsGenerated = config.requestId.generate ? definedCounter(prefix + "request_ids_generated_total") : null;
    this.traceparentsGenerated = config.traceparent.inject ? definedCounter(prefix + "traceparents_generated_total") : null;
    log.info("telemetry: " + describe(config));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new TelemetryStream(id, this);
  }

  noRandom(what: string): void {
    if (this.randomFailed) return;
    this.randomFailed = true;
    log.error("telemetry: the host's random source (WASI random_get) failed; requests go on without a generated " + what);
  }
}

/** A counter defined now, so that it reads 0 before the first increment. */
function definedCounter(name: string): Counter {
  const counter = new Counter(name);
  counter.id;
  return counter;
}

function describe(config: TelemetryConfig): string {
  const m = config.metrics;
  const labels = new Array<string>();
  for (let i = 0; i < m.labels.length; i++) labels.push(m.labels[i].name);
  let text = m.enabled ? "metrics " + m.prefix + "requests_total and " + m.prefix + "request_duration_milliseconds by [" + labels.join(", ") + "]" : "no metrics";
  if (config.requestId.generate) text += ", request id in '" + config.requestId.header + "' when missing";
  if (config.traceparent.inject) text += ", traceparent when missing or invalid";
  if (config.accessLog.fields.length > 0) text += ", " + config.accessLog.fields.length.toString() + " access-log field(s)";
  return text;
}

class TelemetryStream extends HttpContext {
  /** The request id and trace id seen or set during the request, for the response headers. */
  requestId: string | null = null;
  traceId: string | null = null;
  /** Host clock at onRequestHeaders; 0 when it did not run. */
  startedNanoseconds: u64 = 0;

  constructor(id: u32, readonly telemetry: TelemetryRoot) {
    super(id, telemetry);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const config = this.telemetry.config;
    if (config.metrics.enabled) this.startedNanoseconds = currentTimeNanoseconds();
    const r = config.requestId;
    if (r.generate || r.responseHeader.length > 0) this.requestId = this.ensureRequestId();
    const t = config.traceparent;
    if (t.inject || t.responseHeader.length > 0) this.traceId = this.ensureTraceparent();
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const config = this.telemetry.config;
    const requestHeader = config.requestId.responseHeader;
    if (requestHeader.length > 0) {
      // Our request callback did not run when an earlier filter answered locally: read it now.
      let id = this.requestId;
      if (id === null) id = this.request.headers.get(config.requestId.header);
      if (id !== null) this.response.headers.set(requestHeader, id);
    }
    const traceHeader = config.traceparent.responseHeader;
    if (traceHeader.length > 0) {
      let traceId = this.traceId;
      if (traceId === null) {
        const traceparent = this.request.headers.get("traceparent");
        if (traceparent !== null && isValidTraceparent(traceparent)) traceId = traceIdOf(traceparent);
      }
      if (traceId !== null) this.response.headers.set(traceHeader, traceId);
    }
    return HeadersAction.Continue;
  }

  onLog(): void {
    const root = this.telemetry;
    const series = root.series;
    if (series !== null) {
      const labels = root.config.metrics.labels;
      const values = root.values;
      for (let i = 0; i < labels.length; i++) values[i] = labelValue(this, labels[i]);
      const s = series.find(values);
      s.requests.increment();
      // Whole milliseconds, rounded: the host clock may be coarser than a nanosecond (Sluice's
      // steps by 256 ns), so truncating would turn an exact 1 ms into 0.
      const nanoseconds = this.elapsedNanoseconds();
      if (nanoseconds >= 0) s.duration.record(<u64>((nanoseconds + 500_000) / 1_000_000));
    }
    const access = root.config.accessLog;
    if (access.fields.length > 0) writeAccessLogFields(this, access);
  }

  /**
   * From onRequestHeaders to now, by the host clock: two cheap host calls (reading the
   * `request.duration` property costs more in Sluice). When an earlier filter answered before our
   * request callback ran, the host's own measure. -1 when there is none.
   */
  private elapsedNanoseconds(): i64 {
    const started = this.startedNanoseconds;
    if (started == 0) return getPropertyI64(DURATION, -1);
    const now = currentTimeNanoseconds();
    return now >= started ? <i64>(now - started) : 0;
  }

  /** The request id, set to a new UUID when missing and generation is on; null when there is none. */
  private ensureRequestId(): string | null {
    const r = this.telemetry.config.requestId;
    const headers = this.request.headers;
    const id = headers.get(r.header);
    if (id !== null || !r.generate) return id;
    const generated = uuidV4();
    if (generated === null) {
      this.telemetry.noRandom("request id");
      return null;
    }
    headers.set(r.header, generated);
    this.telemetry.requestIdsGenerated!.increment();
    return generated;
  }

  /**
   * The trace id of the request. A valid incoming traceparent is left as it is (the proxy
   * propagates it); a missing or invalid one is replaced by a new sampled trace when injection is
   * on, and `tracestate` goes with an invalid one (W3C: it belongs to the trace being dropped).
   */
  private ensureTraceparent(): string | null {
    const t = this.telemetry.config.traceparent;
    const headers = this.request.headers;
    const incoming = headers.get("traceparent");
    // The trace id is only kept when a response header will carry it.
    const wanted = t.responseHeader.length > 0;
    if (incoming !== null && isValidTraceparent(incoming)) return wanted ? traceIdOf(incoming) : null;
    if (!t.inject) return null;
    const generated = newTraceparent();
    if (generated === null) {
      this.telemetry.noRandom("traceparent");
      return null;
    }
    headers.set("traceparent", generated);
    if (incoming !== null) headers.remove("tracestate");
    this.telemetry.traceparentsGenerated!.increment();
    return wanted ? traceIdOf(generated) : null;
  }
}

registerRootContext((id: u32): RootContext => new TelemetryRoot(id), "telemetry");
