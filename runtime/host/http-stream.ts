// One HTTP stream through a filter chain: runs each phase's callbacks in order (request phases
// first to last, response phases last to first), holds the stream while a filter pauses it,
// buffers bodies a filter asks for, and turns local replies, resets and VM failures into outcomes.
//
// Callers drive phases in order and await each one: requestHeaders, [requestBody...],
// [requestTrailers], responseHeaders, [responseBody...], [responseTrailers], end. A phase returns
// synchronously unless a filter paused the stream; then it returns a promise.

import { BodyAction, HeadersAction } from '../abi/constants.ts';
import { SluiceError } from '../errors.ts';
import { FilterContext, type ContextOwner, type LocalReplyRequest } from './filter-context.ts';
import { HeaderMap } from './header-map.ts';
import type { Plugin } from './plugin.ts';
import { EMPTY, StreamState, type BodyBuffer, type StreamInfo } from './stream.ts';
import { FAILED, type Vm } from './vm.ts';

export interface LocalReply {
  status: number;
  headers: HeaderMap;
  body: Uint8Array;
  details: string;
  /** The filter that answered (or failed). */
  filter: string;
}

export type Outcome =
  | { kind: 'continue'; data?: Uint8Array }
  | { kind: 'local-reply'; reply: LocalReply }
  | { kind: 'reset'; filter: string };

type Dir = 0 | 1;
const REQUEST: Dir = 0;
const RESPONSE: Dir = 1;
const CONTINUE: Outcome = { kind: 'continue' };

interface Slot {
  readonly plugin: Plugin;
  vm?: Vm;
  ctx?: FilterContext;
  skipped: boolean;
  /** Body callbacks the filter's module exports: bit 1 request, bit 2 response. */
  bodyCallbacks: number;
  /** Body data held by this filter (StopIterationAndBuffer), per direction. */
  held: [Uint8Array | undefined, Uint8Array | undefined];
}

/** What a paused phase is waiting for. */
interface Pause {
  dir: Dir;
  /** The slot that paused, and the step to resume from. */
  index: number;
  phase: Phase;
  resolve: (o: Outcome) => void;
}

type Phase = 'headers' | 'body' | 'trailers';

export class HttpStream implements ContextOwner {
  readonly state: StreamState;
  private readonly slots: Slot[];
  private pause?: Pause;
  /** A local reply or reset that arrived while no phase was running; the next phase returns it. */
  private pending?: Outcome;
  private ended = false;
  private started = false;
  private answered = false;
  private bodyEnd: [boolean, boolean] = [false, false];

  constructor(plugins: readonly Plugin[], info: StreamInfo, now: number) {
    this.state = new StreamState(info, now);
    this.slots = plugins.map((plugin) => ({ plugin, skipped: false, bodyCallbacks: 0, held: [undefined, undefined] }));
  }

  // ---- Phases ---------------------------------------------------------------------------------

  requestHeaders(headers: HeaderMap, endOfStream: boolean): Outcome | Promise<Outcome> {
    if (this.started) throw new SluiceError('SLUICE_ERR_STREAM_STATE', 'requestHeaders was called twice on one stream');
    this.started = true;
    this.state.requestHeaders = headers;
    this.bodyEnd[REQUEST] = endOfStream;
    const unavailable = this.createContexts();
    if (unavailable) return this.localReplyOutcome(unavailable);
    return this.runFrom(REQUEST, 'headers', 0);
  }

  requestBody(chunk: Uint8Array, endOfStream: boolean): Outcome | Promise<Outcome> {
    this.check('requestBody');
    this.state.requestBytes += chunk.byteLength;
    this.bodyEnd[REQUEST] = endOfStream;
    return this.runBody(REQUEST, 0, chunk);
  }

  requestTrailers(trailers: HeaderMap): Outcome | Promise<Outcome> {
    this.check('requestTrailers');
    this.state.requestTrailers = trailers;
    this.bodyEnd[REQUEST] = true;
    return this.runFrom(REQUEST, 'trailers', 0);
  }

  responseHeaders(headers: HeaderMap, endOfStream: boolean): Outcome | Promise<Outcome> {
    this.check('responseHeaders');
    this.state.responseHeaders = headers;
    this.bodyEnd[RESPONSE] = endOfStream;
    return this.runFrom(RESPONSE, 'headers', 0);
  }

  responseBody(chunk: Uint8Array, endOfStream: boolean): Outcome | Promise<Outcome> {
    this.check('responseBody');
    this.state.responseBytes += chunk.byteLength;
    this.bodyEnd[RESPONSE] = endOfStream;
    return this.runBody(RESPONSE, 0, chunk);
  }

  responseTrailers(trailers: HeaderMap): Outcome | Promise<Outcome> {
    this.check('responseTrailers');
    this.state.responseTrailers = trailers;
    this.bodyEnd[RESPONSE] = true;
    return this.runFrom(RESPONSE, 'trailers', 0);
  }

  /** Ends the stream: proxy_on_log for every filter, then proxy_on_done and proxy_on_delete. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.state.endTime = this.now();
    this.pause?.resolve({ kind: 'reset', filter: '' });
    this.pause = undefined;
    const live = this.slots.filter((s) => s.ctx && s.vm && !s.vm.failed);
    for (const s of live) s.vm!.call(s.ctx!, 'proxy_on_log', s.ctx!.id);
    for (const s of live) s.vm!.endContext(s.ctx!, false);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /**
   * Whether a filter of this stream implements a body callback for the response (or the request)
   * side, and so may change that body's size. A module that does not export the callback does
   * not implement it (SDK builds leave out the callbacks a filter does not override).
   */
  mayChangeBody(response: boolean): boolean {
    const bit = response ? 2 : 1;
    return this.slots.some((s) => !s.skipped && (s.bodyCallbacks & bit) !== 0);
  }

  /** The filter holding the stream (a phase it paused and has not resumed), if one is. */
  get heldBy(): string | undefined {
    return this.pause ? this.slots[this.pause.index]?.plugin.name : undefined;
  }

  // ---- Driving the chain ----------------------------------------------------------------------

  private check(phase: string): void {
    if (this.ended) throw new SluiceError('SLUICE_ERR_STREAM_STATE', `${phase} was called after the stream ended`);
    if (!this.started) throw new SluiceError('SLUICE_ERR_STREAM_STATE', `${phase} was called before requestHeaders`);
    if (this.pause) throw new SluiceError('SLUICE_ERR_STREAM_STATE', `${phase} was called while a filter holds the stream; await the previous phase`);
    // After a local reply no filter callback runs; only a reply still to be collected is returned.
    if (this.answered && !this.pending) throw new SluiceError('SLUICE_ERR_STREAM_STATE', `${phase} was called after the stream was answered locally`);
  }

  /** Stream contexts are created on the first request headers, one per filter. */
  private createContexts(): LocalReply | undefined {
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i];
      const vm = slot.plugin.vmForStream();
      if (!vm) {
        const why = slot.plugin.unavailable === undefined ? 'is quarantined after repeated failures' : `is unavailable on this node (${slot.plugin.unavailable})`;
        const failure = this.failSlot(slot, why);
        if (failure) return failure;
        continue;
      }
      slot.plugin.stats.streams++;
      slot.vm = vm;
      slot.bodyCallbacks = (vm.has('proxy_on_request_body') ? 1 : 0) | (vm.has('proxy_on_response_body') ? 2 : 0);
      slot.ctx = new FilterContext(vm.newContextId(), vm, this.state, this, i);
      if (vm.createContext(slot.ctx) === FAILED) {
        const failure = this.failSlot(slot, `failed: ${vm.failed?.message}`);
        if (failure) return failure;
      }
    }
    return undefined;
  }

  /** Applies the fail strategy to a filter that failed or is unavailable: skip it, or a 503 naming it. */
  private failSlot(slot: Slot, why: string): LocalReply | undefined {
    slot.skipped = true;
    const name = slot.plugin.name;
    if (slot.plugin.spec.failStrategy === 'FAIL_OPEN') {
      // Fail open by configuration: the stream goes on without this filter.
      slot.plugin.env.log({ plugin: name, level: 3, message: `filter ${why}; skipping it for this stream (FAIL_OPEN)` });
      return undefined;
    }
    const body = new TextEncoder().encode(`sluice: filter "${name}" ${why}; the request was refused (failStrategy ${slot.plugin.spec.failStrategy})\n`);
    const headers = new HeaderMap([
      [':status', '503'],
      ['content-type', 'text/plain'],
      ['x-sluice-filter-failed', name],
    ]);
    return { status: 503, headers, body, details: 'wasm_fail_stream', filter: name };
  }

  private order(dir: Dir, step: number): number {
    return dir === REQUEST ? step : this.slots.length - 1 - step;
  }

  /** Runs the headers or trailers callbacks of `dir` from `step` on. */
  private runFrom(dir: Dir, phase: Phase, step: number): Outcome | Promise<Outcome> {
    if (this.pending) return this.takePending();
    const n = this.slots.length;
    for (; step < n; step++) {
      const slot = this.slots[this.order(dir, step)];
      if (slot.skipped) continue;
      const ctx = slot.ctx!;
      let action: number;
      if (phase === 'headers') {
        const map = dir === REQUEST ? this.state.requestHeaders! : this.state.responseHeaders!;
        action = slot.vm!.streamCall(ctx, dir === REQUEST ? 'proxy_on_request_headers' : 'proxy_on_response_headers', map.size, this.bodyEnd[dir] ? 1 : 0);
      } else {
        const map = dir === REQUEST ? this.state.requestTrailers! : this.state.responseTrailers!;
        action = slot.vm!.streamCall(ctx, dir === REQUEST ? 'proxy_on_request_trailers' : 'proxy_on_response_trailers', map.size);
      }
      const result = this.afterCallback(slot, dir, action);
      if (result === 'next') continue;
      if (result === 'stop') {
        if (action === HeadersAction.Continue || action === HeadersAction.ContinueAndEndStream) continue;
        return this.suspend(dir, phase, step);
      }
      return result;
    }
    if (phase === 'trailers') {
      // Trailers end the body: data filters held is released with them.
      const data = this.releaseHeld(dir);
      return data ? { kind: 'continue', data } : CONTINUE;
    }
    return CONTINUE;
  }

  /** Runs the body callbacks of `dir` from `step` on, carrying `data` from filter to filter. */
  private runBody(dir: Dir, step: number, data: Uint8Array): Outcome | Promise<Outcome> {
    if (this.pending) return this.takePending();
    const eos = this.bodyEnd[dir];
    const buffer = dir === REQUEST ? this.state.requestBody : this.state.responseBody;
    const n = this.slots.length;
    const bit = dir === REQUEST ? 1 : 2;
    for (; step < n; step++) {
      const slot = this.slots[this.order(dir, step)];
      if (slot.skipped) continue;
      // A filter without this body callback is not called (it never holds data either); one
      // whose VM failed still goes through the call below, which applies its fail strategy.
      if ((slot.bodyCallbacks & bit) === 0 && !slot.vm!.failed) continue;
      const held = slot.held[dir];
      if (held) {
        data = concat(held, data);
        slot.held[dir] = undefined;
      }
      const action = this.bodyCallback(slot, dir, buffer, data, eos);
      data = buffer.data;
      buffer.data = EMPTY;
      const result = this.afterCallback(slot, dir, action);
      if (result !== 'next' && result !== 'stop') return result;
      if (action === BodyAction.Continue) continue;
      if (action !== BodyAction.StopIterationNoBuffer) {
        slot.held[dir] = data;
        if (data.byteLength > slot.plugin.spec.limits.bodyBytes) return this.tooLarge(slot, dir);
      }
      if (!eos) return { kind: 'continue', data: EMPTY };
      return this.suspend(dir, 'body', step);
    }
    return { kind: 'continue', data };
  }

  private bodyCallback(slot: Slot, dir: Dir, buffer: BodyBuffer, data: Uint8Array, eos: boolean): number {
    buffer.data = data;
    buffer.endOfStream = eos;
    buffer.active = true;
    try {
      return slot.vm!.streamCall(slot.ctx!, dir === REQUEST ? 'proxy_on_request_body' : 'proxy_on_response_body', data.byteLength, eos ? 1 : 0);
    } finally {
      buffer.active = false;
    }
  }

  private tooLarge(slot: Slot, dir: Dir): Outcome {
    const limit = slot.plugin.spec.limits.bodyBytes;
    const status = dir === REQUEST ? 413 : 500;
    const text = `sluice: filter "${slot.plugin.name}" buffered more than its body limit of ${limit} bytes (limits.bodyBytes)\n`;
    const headers = new HeaderMap([[':status', String(status)], ['content-type', 'text/plain']]);
    return this.localReplyOutcome({ status, headers, body: new TextEncoder().encode(text), details: 'request_payload_too_large', filter: slot.plugin.name });
  }

  /**
   * After a callback: 'next' to go on, 'stop' when the filter's return value decides, or a final
   * outcome (local reply, reset, fail-closed).
   */
  private afterCallback(slot: Slot, dir: Dir, action: number): 'next' | 'stop' | Outcome {
    const ctx = slot.ctx!;
    if (action === FAILED) {
      const reply = this.failSlot(slot, `failed: ${slot.vm!.failed?.message}`);
      return reply ? this.localReplyOutcome(reply) : 'next';
    }
    if (ctx.localReply) return this.localReplyOutcome(this.toLocalReply(slot, ctx.localReply));
    if (ctx.closeRequested) return { kind: 'reset', filter: slot.plugin.name };
    const bit = dir === REQUEST ? 1 : 2;
    if (ctx.continueRequested & bit) {
      // continue_stream during the callback itself: the filter went on before returning.
      ctx.continueRequested &= ~bit;
      return 'next';
    }
    return 'stop';
  }

  private suspend(dir: Dir, phase: Phase, step: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      this.pause = { dir, index: this.order(dir, step), phase, resolve };
    });
  }

  /** A filter acted outside the callback the stream was running, or its VM failed. */
  wake(ctx: FilterContext): void {
    if (this.ended) return;
    const slot = this.slots[ctx.index];
    if (slot.ctx !== ctx || slot.skipped) return;
    let outcome: Outcome | undefined;
    if (slot.vm!.failed) {
      const reply = this.failSlot(slot, `failed: ${slot.vm!.failed.message}`);
      if (reply) outcome = this.localReplyOutcome(reply);
    } else if (ctx.localReply) {
      outcome = this.localReplyOutcome(this.toLocalReply(slot, ctx.localReply));
    } else if (ctx.closeRequested) {
      outcome = { kind: 'reset', filter: slot.plugin.name };
    }
    const pause = this.pause;
    if (outcome) {
      if (pause) {
        this.pause = undefined;
        pause.resolve(outcome);
      } else {
        this.pending = outcome;
      }
      return;
    }
    if (!pause) return;
    // The paused filter continued (or, failing open, dropped out): resume after it.
    const bit = pause.dir === REQUEST ? 1 : 2;
    if (pause.index !== ctx.index) return;
    if (!slot.skipped && !(ctx.continueRequested & bit)) return;
    ctx.continueRequested &= ~bit;
    this.pause = undefined;
    const step = (pause.dir === REQUEST ? pause.index : this.slots.length - 1 - pause.index) + 1;
    let next: Outcome | Promise<Outcome>;
    if (pause.phase === 'body') {
      const data = slot.held[pause.dir] ?? EMPTY;
      slot.held[pause.dir] = undefined;
      next = this.runBody(pause.dir, step, data);
    } else {
      next = this.runFrom(pause.dir, pause.phase, step);
    }
    Promise.resolve(next).then(pause.resolve);
  }

  private takePending(): Outcome {
    const outcome = this.pending!;
    this.pending = undefined;
    return outcome;
  }

  private releaseHeld(dir: Dir): Uint8Array | undefined {
    let data: Uint8Array | undefined;
    for (let step = 0; step < this.slots.length; step++) {
      const slot = this.slots[this.order(dir, step)];
      const held = slot.held[dir];
      if (!held) continue;
      data = data ? concat(data, held) : held;
      slot.held[dir] = undefined;
    }
    return data;
  }

  private toLocalReply(slot: Slot, req: LocalReplyRequest): LocalReply {
    slot.ctx!.localReply = undefined;
    const headers = new HeaderMap([[':status', String(req.status)]]);
    for (const [k, v] of req.headers) headers.add(k, v);
    // The filter's gRPC status is for gRPC requests only, as in Envoy: a plain HTTP reply never
    // carries grpc-status because a filter passed one.
    if (req.grpcStatus !== undefined && this.isGrpc()) headers.set('grpc-status', String(req.grpcStatus));
    return { status: req.status, headers, body: req.body, details: req.details, filter: slot.plugin.name };
  }

  /**
   * A local reply passes through the filters' response callbacks, as in Envoy, so telemetry and
   * header filters see it. Pauses and further local replies there are ignored.
   */
  private localReplyOutcome(reply: LocalReply): Outcome {
    if (this.answered) return { kind: 'local-reply', reply };
    this.answered = true;
    this.state.responseHeaders = reply.headers;
    this.state.responseCodeDetails = reply.details;
    this.state.responseBytes = reply.body.byteLength;
    const buffer = this.state.responseBody;
    let body = reply.body;
    for (let step = 0; step < this.slots.length; step++) {
      const slot = this.slots[this.order(RESPONSE, step)];
      if (slot.skipped || !slot.ctx || slot.vm!.failed) continue;
      const eos = body.byteLength === 0;
      slot.vm!.streamCall(slot.ctx, 'proxy_on_response_headers', reply.headers.size, eos ? 1 : 0);
      if (!eos && !slot.vm!.failed) {
        this.bodyCallback(slot, RESPONSE, buffer, body, true);
        body = buffer.data;
        buffer.data = EMPTY;
      }
      slot.ctx.localReply = undefined;
      slot.ctx.continueRequested = 0;
    }
    const status = Number(reply.headers.get(':status') ?? reply.status);
    return { kind: 'local-reply', reply: { ...reply, status, body } };
  }

  /** Whether the request is gRPC (content-type application/grpc, +proto, ...), as the proxy decides it. */
  private isGrpc(): boolean {
    return this.state.requestHeaders?.get('content-type')?.startsWith('application/grpc') ?? false;
  }

  private now(): number {
    return this.slots[0]?.plugin.env.now() ?? Date.now();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.byteLength === 0) return b;
  if (b.byteLength === 0) return a;
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
