// The filter author's test harness: load a compiled filter into the real Sluice host (no proxy,
// no cluster), drive requests and responses through it, answer its HTTP calls, move time, and
// look at what it did: headers, local replies, bodies, metrics, logs.

import { readFile } from 'node:fs/promises';
import {
  FilterChain,
  HeaderMap,
  LOG_LEVEL_NAMES,
  Plugin,
  SluiceError,
  createEnvironment,
  type HeaderInit,
  type HostEnvironment,
  type HttpStream,
  type Outcome,
  type PluginOptions,
  type StreamInfo,
} from '../../runtime/index.ts';

export interface HarnessOptions extends Omit<PluginOptions, 'name'> {
  /** Filter name used in logs and failure replies; defaults to the file name. */
  name?: string;
  /** Clusters the filter may call; when omitted every cluster name is accepted. */
  clusters?: string[];
  /** Starting wall-clock time in ms since the epoch (default: a fixed 2026-01-01T00:00:00Z). */
  startTime?: number;
  /** Lowest level logged (default 0: trace). */
  logLevel?: number;
  foreignFunctions?: Record<string, (args: Uint8Array) => Uint8Array | { status: number }>;
}

export interface FilterSource extends HarnessOptions {
  module: string | Uint8Array;
}

export interface PhaseResult {
  kind: 'continue' | 'local-reply' | 'reset';
  /** Local replies: status, headers (first value of each), body as text and bytes, the filter that answered. */
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  bodyBytes?: Uint8Array;
  details?: string;
  filter?: string;
  /** Body phases: the data passed on (possibly rewritten), as text and bytes. */
  data?: string;
  dataBytes?: Uint8Array;
}

export interface HarnessLog {
  plugin: string;
  level: string;
  message: string;
}

export class HttpCall {
  answered = false;
  constructor(
    readonly plugin: string,
    readonly cluster: string,
    readonly headers: Record<string, string>,
    readonly body: string,
    readonly timeoutMs: number,
    private readonly done: (headers: Array<[string, string]>, body: Uint8Array, trailers: Array<[string, string]>) => void,
  ) {}

  /** Answers the call; the filter's proxy_on_http_call_response runs now. */
  respond(status: number, init: { headers?: Record<string, string>; body?: string | Uint8Array; trailers?: Record<string, string> } = {}): void {
    this.finish([[':status', String(status)], ...Object.entries(init.headers ?? {})], bytes(init.body), Object.entries(init.trailers ?? {}));
  }

  /** Fails the call (reset, timeout): the filter is told with zero headers. */
  fail(): void {
    this.finish([], new Uint8Array(0), []);
  }

  private finish(headers: Array<[string, string]>, body: Uint8Array, trailers: Array<[string, string]>): void {
    if (this.answered) throw new SluiceError('SLUICE_ERR_HARNESS', `the HTTP call to "${this.cluster}" was already answered`);
    this.answered = true;
    this.done(headers, body, trailers);
  }
}

interface Timer {
  every: number;
  due: number;
  fn: () => void;
  cancelled: boolean;
}

export class FilterHarness {
  readonly logs: HarnessLog[] = [];
  readonly httpCalls: HttpCall[] = [];
  readonly env: HostEnvironment;
  private chain!: FilterChain;
  private clock: number;
  private timers: Timer[] = [];

  private constructor(options: HarnessOptions) {
    this.clock = options.startTime ?? Date.UTC(2026, 0, 1);
    const clusters = options.clusters;
    this.env = createEnvironment({
      logLevel: options.logLevel ?? 0,
      log: (e) => this.logs.push({ plugin: e.plugin, level: LOG_LEVEL_NAMES[e.level] ?? String(e.level), message: e.message }),
      now: () => this.clock,
      every: (ms, fn) => {
        const timer: Timer = { every: ms, due: this.clock + ms, fn, cancelled: false };
        this.timers.push(timer);
        return () => {
          timer.cancelled = true;
        };
      },
      hasCluster: (name) => clusters === undefined || clusters.includes(name),
      httpCall: (plugin, req, done) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of req.headers) headers[k] = v;
        this.httpCalls.push(
          new HttpCall(plugin, req.cluster, headers, Buffer.from(req.body).toString('utf8'), req.timeoutMs, (h, b, t) => done({ headers: h, body: b, trailers: t })),
        );
      },
      foreignFunctions: new Map(Object.entries(options.foreignFunctions ?? {})),
    });
  }

  /** Loads one compiled filter (a .wasm path or bytes) and configures it; throws when it refuses its configuration. */
  static async load(module: string | Uint8Array, options: HarnessOptions = {}): Promise<FilterHarness> {
    return FilterHarness.chain([{ ...options, module }], options);
  }

  /** Loads several filters as one chain, in request order. */
  static async chain(filters: FilterSource[], options: HarnessOptions = {}): Promise<FilterHarness> {
    const harness = new FilterHarness(options);
    const plugins: Plugin[] = [];
    for (const f of filters) {
      const bytes = typeof f.module === 'string' ? await readFile(f.module) : f.module;
      const name = f.name ?? (typeof f.module === 'string' ? f.module.replace(/^.*\//, '').replace(/\.wasm$/, '') : 'filter');
      const { module: _m, clusters: _c, startTime: _s, logLevel: _l, foreignFunctions: _f, ...pluginOptions } = f;
      plugins.push(await Plugin.load(new Uint8Array(bytes), { ...pluginOptions, name }, harness.env));
    }
    harness.chain = new FilterChain(plugins, harness.env);
    return harness;
  }

  get plugins(): readonly Plugin[] {
    return this.chain.plugins;
  }

  /** Opens a stream through the filters. */
  stream(info: StreamInfo = {}): HarnessStream {
    return new HarnessStream(this.chain.stream(info));
  }

  /** The value of a counter or gauge the filter defined, or a histogram's {count, sum, buckets}. */
  metric(name: string): number | { count: number; sum: number; buckets: number[] } | undefined {
    const m = this.env.metrics.byMetricName(name);
    if (!m) return undefined;
    return m.buckets ? { count: m.count!, sum: m.sum!, buckets: m.buckets.slice() } : m.value;
  }

  /** Shared data of a vm id, as text. */
  sharedData(key: string, vmId = ''): string | undefined {
    const { value } = this.env.sharedData.get(vmId, key);
    return value ? Buffer.from(value).toString('utf8') : undefined;
  }

  /** HTTP calls not answered yet. */
  get pendingHttpCalls(): HttpCall[] {
    return this.httpCalls.filter((c) => !c.answered);
  }

  /** Moves the clock forward, firing due ticks (proxy_on_tick) in order. */
  async advanceTime(ms: number): Promise<void> {
    const until = this.clock + ms;
    for (;;) {
      const next = this.timers.filter((t) => !t.cancelled).sort((a, b) => a.due - b.due)[0];
      if (!next || next.due > until) break;
      this.clock = next.due;
      next.due += next.every;
      next.fn();
    }
    this.clock = until;
    await settle();
  }

  /** Fires every registered tick once, without moving the clock. */
  async tick(): Promise<void> {
    for (const t of this.timers) if (!t.cancelled) t.fn();
    await settle();
  }

  /** Host-initiated foreign function call into the first filter's root context (proxy_on_foreign_function). */
  callForeign(functionId: number, args: string | Uint8Array = ''): number {
    const vm = this.chain.plugins[0].vm;
    if (!vm) throw new SluiceError('SLUICE_ERR_HARNESS', 'the filter has no healthy VM');
    return vm.callForeign(functionId, bytes(args));
  }

  /** Log lines at or above a level, as "level: message" strings. */
  logLines(minLevel = 0): string[] {
    return this.logs.filter((l) => LOG_LEVEL_NAMES.indexOf(l.level as never) >= minLevel).map((l) => `${l.level}: ${l.message}`);
  }

  /** Shuts the filters down (proxy_on_done/proxy_on_delete on root contexts). */
  close(): void {
    for (const p of this.chain.plugins) p.close();
  }
}

type HeadersArg = HeaderInit;

export class HarnessStream {
  constructor(readonly stream: HttpStream) {}

  get request(): MessageView {
    const s = this.stream.state;
    return new MessageView(s.requestHeaders, s.requestTrailers);
  }

  get response(): MessageView {
    const s = this.stream.state;
    return new MessageView(s.responseHeaders, s.responseTrailers);
  }

  /** A property a filter set on this stream, as text (e.g. `sluice.cluster`). */
  property(path: string): string | undefined {
    return this.stream.state.property(path.split('.').join('\u0000'));
  }

  requestHeaders(headers: HeadersArg, opts: { endOfStream?: boolean } = {}): Promise<PhaseResult> {
    return result(this.stream.requestHeaders(new HeaderMap(headers), opts.endOfStream ?? false));
  }

  requestBody(data: string | Uint8Array, opts: { endOfStream?: boolean } = {}): Promise<PhaseResult> {
    return result(this.stream.requestBody(bytes(data), opts.endOfStream ?? true));
  }

  requestTrailers(trailers: HeadersArg): Promise<PhaseResult> {
    return result(this.stream.requestTrailers(new HeaderMap(trailers)));
  }

  responseHeaders(headers: HeadersArg, opts: { endOfStream?: boolean } = {}): Promise<PhaseResult> {
    return result(this.stream.responseHeaders(new HeaderMap(headers), opts.endOfStream ?? false));
  }

  responseBody(data: string | Uint8Array, opts: { endOfStream?: boolean } = {}): Promise<PhaseResult> {
    return result(this.stream.responseBody(bytes(data), opts.endOfStream ?? true));
  }

  responseTrailers(trailers: HeadersArg): Promise<PhaseResult> {
    return result(this.stream.responseTrailers(new HeaderMap(trailers)));
  }

  /** Ends the stream: proxy_on_log, proxy_on_done, proxy_on_delete. */
  async end(): Promise<void> {
    this.stream.end();
    await settle();
  }
}

export class MessageView {
  constructor(
    readonly headers: HeaderMap | undefined,
    readonly trailers: HeaderMap | undefined,
  ) {}

  header(name: string): string | undefined {
    return this.headers?.get(name.toLowerCase());
  }

  trailer(name: string): string | undefined {
    return this.trailers?.get(name.toLowerCase());
  }

  /** The headers as an object with the first value of each name. */
  headersObject(): Record<string, string> {
    return this.headers?.toObject() ?? {};
  }
}

async function result(outcome: Outcome | Promise<Outcome>): Promise<PhaseResult> {
  const o = await outcome;
  if (o.kind === 'local-reply') {
    const r = o.reply;
    return {
      kind: 'local-reply',
      status: r.status,
      headers: r.headers.toObject(),
      body: Buffer.from(r.body).toString('utf8'),
      bodyBytes: r.body,
      details: r.details,
      filter: r.filter,
    };
  }
  if (o.kind === 'reset') return { kind: 'reset', filter: o.filter };
  if (o.data === undefined) return { kind: 'continue' };
  return { kind: 'continue', data: Buffer.from(o.data).toString('utf8'), dataBytes: o.data };
}

function bytes(data: string | Uint8Array | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}

/** Lets deferred work (woken streams, queue wake-ups) run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
