// What the host functions act on for one VM (the AbiHost): the effective context (the root or a
// stream), the data of the callback in progress (an HTTP call's answer, a foreign call's
// arguments), the root's properties, and the actions a filter takes on streams, kept until the
// guest call that took them returns. Entering and leaving the guest is the VM's (vm.ts).

import { BufferType, MapType, Status } from '../abi/constants.ts';
import type { AbiBuffer, AbiHost, HttpCallRequest } from '../abi/host-functions.ts';
import type { GuestMemory } from '../abi/memory.ts';
import type { HttpCallResponse } from './environment.ts';
import type { FilterContext } from './filter-context.ts';
import { HeaderMap } from './header-map.ts';
import { resolveProperty, type PropertyScope } from './properties.ts';
import type { RootContextState, Vm } from './vm.ts';

export class AbiContext implements AbiHost {
  readonly mem: GuestMemory;
  /** The context host functions act on: the one whose callback runs, or the one the filter chose. */
  effective: FilterContext | RootContextState;
  /** Streams the filter acted on during the current guest call (see Vm.afterCall). */
  readonly touched = new Set<FilterContext>();
  /** Warnings and errors the filter logs during start(), collected for the error message. */
  startLog?: string[];
  /** Whether the module read its root id and its plugin configuration during start(). */
  startSeen?: { rootId: boolean; configuration: boolean };
  private cancelTick?: () => void;
  private nextToken = 1;
  private readonly calls = new Map<number, true>();
  private callResponse?: { headers: HeaderMap; body: Uint8Array; trailers: HeaderMap };
  private foreignArgs?: Uint8Array;
  private readonly refusedLogged = new Set<string>();
  private readonly rootProperties = new Map<string, Uint8Array>();
  private awaitingDone = false;
  private readonly configBuffer: AbiBuffer;
  private readonly vmConfigBuffer: AbiBuffer;

  constructor(private readonly vm: Vm) {
    this.mem = vm.mem;
    this.effective = vm.root;
    this.configBuffer = readOnly(vm.spec.configuration);
    this.vmConfigBuffer = readOnly(vm.spec.vmConfiguration);
  }

  get abiVersion() {
    return this.vm.abiVersion;
  }

  /** Stops the tick timer (the VM failed or shuts down). */
  stopTick(): void {
    this.cancelTick?.();
    this.cancelTick = undefined;
  }

  /** Hands a host-initiated foreign function call's arguments to the guest for the call's duration. */
  withForeignArgs(args: Uint8Array, call: () => number): number {
    this.foreignArgs = args;
    try {
      return call();
    } finally {
      this.foreignArgs = undefined;
    }
  }

  /** proxy_on_done of the root said false: the root is deleted once the filter calls proxy_done. */
  awaitDone(): void {
    this.awaitingDone = true;
  }

  refused(functionName: string): void {
    if (this.refusedLogged.has(functionName)) return;
    this.refusedLogged.add(functionName);
    this.log(3, `${functionName} is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED`);
  }

  log(level: number, message: string): void {
    if (this.startLog && level >= 3) this.startLog.push(message);
    if (level >= this.logLevel()) this.vm.env.log({ plugin: this.vm.spec.name, level, message });
  }

  logLevel(): number {
    return this.vm.spec.logLevel ?? this.vm.env.logLevel;
  }

  nowNanoseconds(): bigint {
    // Whole milliseconds and the fraction apart: epoch ms × 1e6 as one double loses the sub-µs digits.
    const ms = this.vm.env.now();
    const whole = Math.floor(ms);
    return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
  }

  setTickPeriod(ms: number): Status {
    this.stopTick();
    if (ms > 0) this.cancelTick = this.vm.env.every(ms, () => this.vm.callRoot('proxy_on_tick'));
    return Status.Ok;
  }

  private get stream(): FilterContext | undefined {
    return this.effective === this.vm.root ? undefined : (this.effective as FilterContext);
  }

  headerMap(type: number): HeaderMap | null | undefined {
    const s = this.stream?.stream;
    switch (type) {
      case MapType.RequestHeaders:
        return s?.requestHeaders;
      case MapType.RequestTrailers:
        return s?.requestTrailers;
      case MapType.ResponseHeaders:
        return s?.responseHeaders;
      case MapType.ResponseTrailers:
        return s?.responseTrailers;
      case MapType.HttpCallResponseHeaders:
        return this.callResponse?.headers;
      case MapType.HttpCallResponseTrailers:
        return this.callResponse?.trailers;
      case MapType.GrpcReceiveInitialMetadata:
      case MapType.GrpcReceiveTrailingMetadata:
        return undefined;
      default:
        return null;
    }
  }

  buffer(type: number): AbiBuffer | undefined {
    if (this.startSeen && type === BufferType.PluginConfiguration) this.startSeen.configuration = true;
    switch (type) {
      case BufferType.HttpRequestBody: {
        const b = this.stream?.stream.requestBody;
        return b?.active ? b : undefined;
      }
      case BufferType.HttpResponseBody: {
        const b = this.stream?.stream.responseBody;
        return b?.active ? b : undefined;
      }
      case BufferType.HttpCallResponseBody:
        return this.callResponse ? readOnly(this.callResponse.body) : undefined;
      case BufferType.VmConfiguration:
        return this.vmConfigBuffer;
      case BufferType.PluginConfiguration:
        return this.configBuffer;
      case BufferType.CallData:
        return this.foreignArgs ? readOnly(this.foreignArgs) : undefined;
      default:
        return undefined;
    }
  }

  private propertyScope?: PropertyScope;

  getProperty(path: string[]): Uint8Array | string | undefined {
    if (this.startSeen && path.length === 1 && path[0] === 'plugin_root_id') this.startSeen.rootId = true;
    // One scope per context, its stream the current one (no object per property read).
    const scope = (this.propertyScope ??= { pluginName: this.vm.spec.name, rootId: this.vm.spec.rootId, vmId: this.vm.spec.vmId, node: this.vm.env.node, now: this.vm.env.now, stream: undefined, rootProperties: this.rootProperties });
    scope.stream = this.stream?.stream;
    return resolveProperty(path, scope);
  }

  setProperty(path: string[], value: Uint8Array): Status {
    if (path.length === 0) return Status.BadArgument;
    const key = path.join('\u0000');
    const s = this.stream?.stream;
    if (s) s.properties.set(key, value);
    else this.rootProperties.set(key, value);
    return Status.Ok;
  }

  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: Array<[string, string]>, grpcStatus: number): Status {
    const ctx = this.stream;
    if (!ctx) return Status.NotFound;
    ctx.localReply = { status, details, body, headers, grpcStatus: grpcStatus >= 0 && grpcStatus <= 16 ? grpcStatus : undefined };
    this.touched.add(ctx);
    return Status.Ok;
  }

  continueStream(streamType: number): Status {
    const ctx = this.stream;
    if (!ctx) return Status.NotFound;
    if (streamType !== 0 && streamType !== 1) return Status.BadArgument;
    ctx.continueRequested |= streamType === 0 ? 1 : 2;
    this.touched.add(ctx);
    return Status.Ok;
  }

  closeStream(streamType: number): Status {
    const ctx = this.stream;
    if (!ctx) return Status.NotFound;
    if (streamType !== 0 && streamType !== 1) return Status.BadArgument;
    ctx.closeRequested = true;
    this.touched.add(ctx);
    return Status.Ok;
  }

  clearRouteCache(): void {
    // Sluice picks the route after the request-header filters ran, so there is no cache to clear.
  }

  httpCall(request: HttpCallRequest): { status: Status; token: number } {
    const { spec, env } = this.vm;
    const allowedClusters = spec.capabilities.httpCalls;
    if (Array.isArray(allowedClusters) && !allowedClusters.includes(request.cluster)) {
      this.log(3, `proxy_http_call to cluster "${request.cluster}" refused: the filter may call only ${allowedClusters.join(', ')}`);
      return { status: Status.BadArgument, token: 0 };
    }
    if (!env.hasCluster(request.cluster)) {
      this.log(3, `proxy_http_call to unknown cluster "${request.cluster}": define it under clusters in the config`);
      return { status: Status.BadArgument, token: 0 };
    }
    const has = (k: string) => request.headers.some(([name]) => name === k);
    if (!has(':method') || !has(':path') || !has(':authority')) return { status: Status.BadArgument, token: 0 };
    const token = this.nextToken++;
    this.calls.set(token, true);
    env.httpCall(spec.name, request, (response) => this.httpCallDone(token, response));
    return { status: Status.Ok, token };
  }

  private httpCallDone(token: number, response: HttpCallResponse): void {
    if (!this.calls.delete(token) || this.vm.failed) return;
    this.callResponse = { headers: new HeaderMap(response.headers), body: response.body, trailers: new HeaderMap(response.trailers) };
    try {
      this.vm.callRoot('proxy_on_http_call_response', token, response.headers.length, response.body.byteLength, response.trailers.length);
    } finally {
      this.callResponse = undefined;
    }
  }

  defineMetric(type: number, name: string) {
    return this.vm.env.metrics.define(type, name);
  }
  incrementMetric(id: number, offset: number) {
    return this.vm.env.metrics.increment(id, offset);
  }
  recordMetric(id: number, value: number) {
    return this.vm.env.metrics.record(id, value);
  }
  getMetric(id: number) {
    return this.vm.env.metrics.get(id);
  }

  getSharedData(key: string) {
    return this.vm.env.sharedData.get(this.vm.spec.vmId, key);
  }
  setSharedData(key: string, value: Uint8Array, cas: number) {
    return this.vm.env.sharedData.set(this.vm.spec.vmId, key, value, cas);
  }

  registerQueue(name: string) {
    const vm = this.vm;
    const id = vm.env.queues.register(vm.spec.vmId, name, {
      queueReady: (queueId) => vm.callRoot('proxy_on_queue_ready', queueId),
      get alive() {
        return !vm.failed && !vm.closed;
      },
    });
    return { status: Status.Ok as Status, id };
  }
  resolveQueue(vmId: string, name: string) {
    return this.vm.env.queues.resolve(vmId, name);
  }
  enqueue(id: number, value: Uint8Array) {
    return this.vm.env.queues.enqueue(id, value);
  }
  dequeue(id: number) {
    return this.vm.env.queues.dequeue(id);
  }

  setEffectiveContext(id: number): Status {
    const vm = this.vm;
    if (id === vm.root.id) this.effective = vm.root;
    else {
      const ctx = vm.contexts.get(id);
      if (!ctx) return Status.BadArgument;
      this.effective = ctx;
    }
    return Status.Ok;
  }

  done(): Status {
    if (!this.awaitingDone) return Status.NotFound;
    this.awaitingDone = false;
    this.vm.env.defer(() => this.vm.callRoot('proxy_on_delete'));
    return Status.Ok;
  }

  callForeignFunction(name: string, args: Uint8Array): { status: Status; result?: Uint8Array } {
    const fn = this.vm.env.foreignFunctions.get(name);
    if (!fn) return { status: Status.NotFound };
    const result = fn(args, this.vm.spec.name);
    return result instanceof Uint8Array ? { status: Status.Ok, result } : { status: result.status as Status };
  }

  hostError(functionName: string, error: unknown): void {
    this.log(4, `host error in ${functionName}: ${(error as Error)?.stack ?? String(error)}`);
  }
}

function readOnly(bytes: Uint8Array): AbiBuffer {
  return { bytes: () => bytes };
}
