// The proxy-wasm host functions (`env.proxy_*`), all in one table. Each validates its arguments,
// reads guest memory, asks the AbiHost to act, copies results out and returns a status. None
// throws into the guest, except GuestAbort, which ends the guest call on purpose.

import type { AbiVersion } from './constants.ts';
import { Status } from './constants.ts';
import type { GuestMemory } from './memory.ts';

/** Thrown through the guest to end the current guest call (proc_exit, abort, a trap inside a nested guest call). */
export class GuestAbort extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GuestAbort';
  }
}

/** A body or configuration buffer as the host exposes it to the guest. */
export interface AbiBuffer {
  bytes(): Uint8Array;
  /** Replaces [start, start+length) with data (clamped); false when the buffer is read-only. */
  splice?(start: number, length: number, data: Uint8Array): boolean;
  readonly endOfStream?: boolean;
}

export interface HttpCallRequest {
  cluster: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
  trailers: Array<[string, string]>;
  timeoutMs: number;
}

/** A header or trailer map as the host functions use it (the host's HeaderMap; keys lower-case). */
export interface HeaderMap extends Iterable<readonly [string, string]> {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  add(key: string, value: string): void;
  delete(key: string): void;
  replaceAll(pairs: Array<[string, string]>): void;
}

/** Capability groups a plugin can be refused. */
export type Capability = 'http_call' | 'shared_data' | 'shared_queue' | 'foreign_function' | 'grpc_call';

/** The host functions of each capability: a refused capability's are linked as stubs. */
export const CAPABILITY_FUNCTIONS: Readonly<Record<Capability, readonly string[]>> = Object.freeze({
  http_call: ['proxy_http_call'],
  shared_data: ['proxy_get_shared_data', 'proxy_set_shared_data'],
  shared_queue: ['proxy_register_shared_queue', 'proxy_resolve_shared_queue', 'proxy_enqueue_shared_queue', 'proxy_dequeue_shared_queue'],
  foreign_function: ['proxy_call_foreign_function'],
  // gRPC calls from filters: linked so modules that import them load, refused when called.
  grpc_call: ['proxy_grpc_call', 'proxy_grpc_stream', 'proxy_grpc_send', 'proxy_grpc_cancel', 'proxy_grpc_close'],
});

/** What the host functions act on: one VM, through its effective context. Implemented by the VM. */
export interface AbiHost {
  readonly mem: GuestMemory;
  readonly abiVersion: AbiVersion;
  /** A refused function was called: log it (once per function). */
  refused(functionName: string): void;
  log(level: number, message: string): void;
  logLevel(): number;
  nowNanoseconds(): bigint;
  setTickPeriod(ms: number): Status;
  /** The map of `type` in the effective context; null for a type that does not exist, undefined when not available now. */
  headerMap(type: number): HeaderMap | null | undefined;
  buffer(type: number): AbiBuffer | undefined;
  getProperty(path: string[]): Uint8Array | string | undefined;
  setProperty(path: string[], value: Uint8Array): Status;
  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: Array<[string, string]>, grpcStatus: number): Status;
  continueStream(streamType: number): Status;
  closeStream(streamType: number): Status;
  clearRouteCache(): void;
  httpCall(request: HttpCallRequest): { status: Status; token: number };
  defineMetric(type: number, name: string): { status: Status; id: number };
  incrementMetric(id: number, offset: number): Status;
  recordMetric(id: number, value: number): Status;
  getMetric(id: number): { status: Status; value: number };
  getSharedData(key: string): { status: Status; value?: Uint8Array; cas: number };
  setSharedData(key: string, value: Uint8Array, cas: number): Status;
  registerQueue(name: string): { status: Status; id: number };
  resolveQueue(vmId: string, name: string): { status: Status; id: number };
  enqueue(id: number, value: Uint8Array): Status;
  dequeue(id: number): { status: Status; value?: Uint8Array };
  setEffectiveContext(id: number): Status;
  done(): Status;
  callForeignFunction(name: string, args: Uint8Array): { status: Status; result?: Uint8Array };
  /** A host function failed on the host's side: log it; the guest sees INTERNAL_FAILURE. */
  hostError(functionName: string, error: unknown): void;
}

type HostFunction = (...args: never[]) => number;

const ALL = 0xffffffff;
const EMPTY = new Uint8Array(0);
// Unknown map and buffer types are BAD_ARGUMENT before anything else is looked at (spec, cpp-host
// exports.cc); known types that are not available in the current context are decided by the host.
const MAX_MAP_TYPE = 7;
const MAX_BUFFER_TYPE = 8;

/**
 * Builds the `env` import object for a VM. The functions of a `refused` capability are stubs that
 * log once and return UNIMPLEMENTED (as cpp-host links what a plugin may not use), so the
 * functions a plugin may use check nothing on each call.
 */
export function hostFunctions(host: AbiHost, refused: ReadonlySet<Capability>): Record<string, HostFunction> {
  const mem = host.mem;
  const v01 = host.abiVersion === '0.1.0';

  const table: Record<string, HostFunction> = {
    proxy_log(level: number, ptr: number, len: number) {
      // The level is checked before memory, as cpp-host does: a bad level is BAD_ARGUMENT whatever the pointer.
      if (level < 0 || level > 5) return Status.BadArgument;
      const message = mem.string(ptr >>> 0, len >>> 0);
      if (message === undefined) return Status.InvalidMemoryAccess;
      if (level >= host.logLevel()) host.log(level, message);
      return Status.Ok;
    },
    proxy_get_log_level(retPtr: number) {
      return mem.putU32(retPtr >>> 0, host.logLevel()) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_current_time_nanoseconds(retPtr: number) {
      return mem.putU64(retPtr >>> 0, host.nowNanoseconds()) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_set_tick_period_milliseconds(period: number) {
      return host.setTickPeriod(period >>> 0);
    },

    proxy_get_property(pathPtr: number, pathLen: number, retPtr: number, retLen: number) {
      const path = mem.string(pathPtr >>> 0, pathLen >>> 0);
      if (path === undefined) return Status.InvalidMemoryAccess;
      const value = host.getProperty(splitPath(path));
      if (value === undefined) return notFound(retPtr, retLen);
      return mem.copyOut(value, retPtr >>> 0, retLen >>> 0);
    },
    proxy_set_property(pathPtr: number, pathLen: number, valuePtr: number, valueLen: number) {
      const path = mem.string(pathPtr >>> 0, pathLen >>> 0);
      const value = mem.copy(valuePtr >>> 0, valueLen >>> 0);
      if (path === undefined || value === undefined) return Status.InvalidMemoryAccess;
      return host.setProperty(splitPath(path), value);
    },

    proxy_get_header_map_value(type: number, keyPtr: number, keyLen: number, retPtr: number, retLen: number) {
      if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
      const key = mem.string(keyPtr >>> 0, keyLen >>> 0);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const map = host.headerMap(type);
      if (!map) return Status.BadArgument;
      const value = map.get(key.toLowerCase());
      if (value === undefined) {
        // ABI 0.1.0 reports a missing header as an empty value: its Rust SDK panics on NOT_FOUND.
        return v01 ? mem.copyOut('', retPtr >>> 0, retLen >>> 0) : notFound(retPtr, retLen);
      }
      return mem.copyOut(value, retPtr >>> 0, retLen >>> 0);
    },
    proxy_add_header_map_value(type: number, keyPtr: number, keyLen: number, valuePtr: number, valueLen: number) {
      return writeHeader(type, keyPtr, keyLen, valuePtr, valueLen, false);
    },
    proxy_replace_header_map_value(type: number, keyPtr: number, keyLen: number, valuePtr: number, valueLen: number) {
      return writeHeader(type, keyPtr, keyLen, valuePtr, valueLen, true);
    },
    proxy_remove_header_map_value(type: number, keyPtr: number, keyLen: number) {
      if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
      const key = mem.string(keyPtr >>> 0, keyLen >>> 0);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const map = host.headerMap(type);
      if (!map) return Status.BadArgument;
      map.delete(key);
      return Status.Ok;
    },
    proxy_get_header_map_pairs(type: number, retPtr: number, retLen: number) {
      if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
      const map = host.headerMap(type);
      if (!map) return Status.BadArgument;
      return mem.copyPairsOut(map, retPtr >>> 0, retLen >>> 0);
    },
    proxy_set_header_map_pairs(type: number, ptr: number, len: number) {
      if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
      const pairs = mem.pairs(ptr >>> 0, len >>> 0);
      if (pairs === undefined) return mem.inBounds(ptr >>> 0, len >>> 0) ? Status.BadArgument : Status.InvalidMemoryAccess;
      const map = host.headerMap(type);
      if (!map) return Status.BadArgument;
      for (const [key, value] of pairs) if (!validHeader(key, value)) return Status.BadArgument;
      map.replaceAll(pairs);
      return Status.Ok;
    },
    proxy_get_header_map_size(type: number, retPtr: number) {
      if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
      const map = host.headerMap(type);
      if (!map) return Status.BadArgument;
      let size = 4;
      for (const [k, v] of map) size += 10 + Buffer.byteLength(k) + Buffer.byteLength(v);
      return mem.putU32(retPtr >>> 0, size) ? Status.Ok : Status.InvalidMemoryAccess;
    },

    proxy_get_buffer_bytes(type: number, start: number, maxSize: number, retPtr: number, retLen: number) {
      if (type >>> 0 > MAX_BUFFER_TYPE) return Status.BadArgument;
      const buffer = host.buffer(type);
      if (!buffer) return notFound(retPtr, retLen);
      const bytes = buffer.bytes();
      start >>>= 0;
      maxSize >>>= 0;
      // Nothing to copy (an empty buffer, a start at or past the end): OK with address 0 and
      // size 0 written, as cpp-host does since 2022 (#303); SDKs read the slots after the call.
      const end = maxSize === ALL ? bytes.byteLength : Math.min(bytes.byteLength, start + maxSize);
      if (start >= bytes.byteLength || end <= start) return mem.copyOut(EMPTY, retPtr >>> 0, retLen >>> 0);
      return mem.copyOut(bytes.subarray(start, end), retPtr >>> 0, retLen >>> 0);
    },
    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataLen: number) {
      if (type >>> 0 > MAX_BUFFER_TYPE) return Status.BadArgument;
      const data = mem.copy(dataPtr >>> 0, dataLen >>> 0);
      if (data === undefined) return Status.InvalidMemoryAccess;
      const buffer = host.buffer(type);
      if (!buffer) return Status.NotFound;
      if (!buffer.splice) return Status.BadArgument;
      return buffer.splice(start >>> 0, size >>> 0, data) ? Status.Ok : Status.BadArgument;
    },
    proxy_get_buffer_status(type: number, lengthPtr: number, flagsPtr: number) {
      if (type >>> 0 > MAX_BUFFER_TYPE) return Status.BadArgument;
      const buffer = host.buffer(type);
      if (!buffer) return Status.NotFound;
      if (!mem.putU32(lengthPtr >>> 0, buffer.bytes().byteLength)) return Status.InvalidMemoryAccess;
      return mem.putU32(flagsPtr >>> 0, buffer.endOfStream ? 1 : 0) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_configuration(retPtr: number, retLen: number) {
      const buffer = host.buffer(7);
      return mem.copyOut(buffer ? buffer.bytes() : EMPTY, retPtr >>> 0, retLen >>> 0);
    },

    proxy_send_local_response(
      status: number,
      detailsPtr: number,
      detailsLen: number,
      bodyPtr: number,
      bodyLen: number,
      headersPtr: number,
      headersLen: number,
      grpcStatus: number,
    ) {
      const details = mem.string(detailsPtr >>> 0, detailsLen >>> 0);
      const body = mem.copy(bodyPtr >>> 0, bodyLen >>> 0);
      const headers = mem.pairs(headersPtr >>> 0, headersLen >>> 0);
      if (details === undefined || body === undefined) return Status.InvalidMemoryAccess;
      if (headers === undefined) return mem.inBounds(headersPtr >>> 0, headersLen >>> 0) ? Status.BadArgument : Status.InvalidMemoryAccess;
      if (status < 200 || status > 599) return Status.BadArgument;
      return host.sendLocalResponse(status, details, body, headers, grpcStatus);
    },
    proxy_continue_stream(streamType: number) {
      return host.continueStream(streamType);
    },
    proxy_close_stream(streamType: number) {
      return host.closeStream(streamType);
    },
    proxy_continue_request() {
      return host.continueStream(0);
    },
    proxy_continue_response() {
      return host.continueStream(1);
    },
    proxy_clear_route_cache() {
      host.clearRouteCache();
      return Status.Ok;
    },

    proxy_http_call(
      clusterPtr: number,
      clusterLen: number,
      headersPtr: number,
      headersLen: number,
      bodyPtr: number,
      bodyLen: number,
      trailersPtr: number,
      trailersLen: number,
      timeoutMs: number,
      tokenPtr: number,
    ) {
      const cluster = mem.string(clusterPtr >>> 0, clusterLen >>> 0);
      const headers = mem.pairs(headersPtr >>> 0, headersLen >>> 0);
      const body = mem.copy(bodyPtr >>> 0, bodyLen >>> 0);
      const trailers = mem.pairs(trailersPtr >>> 0, trailersLen >>> 0);
      if (cluster === undefined || body === undefined || !mem.inBounds(tokenPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
      // Pairs outside memory are INVALID_MEMORY_ACCESS (spec; cpp-host reads them before parsing); malformed ones BAD_ARGUMENT.
      if (!mem.inBounds(headersPtr >>> 0, headersLen >>> 0) || !mem.inBounds(trailersPtr >>> 0, trailersLen >>> 0)) return Status.InvalidMemoryAccess;
      if (headers === undefined || trailers === undefined) return Status.BadArgument;
      const result = host.httpCall({ cluster, headers, body, trailers, timeoutMs: timeoutMs >>> 0 });
      if (result.status === Status.Ok) mem.putU32(tokenPtr >>> 0, result.token);
      return result.status;
    },

    proxy_define_metric(type: number, namePtr: number, nameLen: number, retPtr: number) {
      const name = mem.string(namePtr >>> 0, nameLen >>> 0);
      if (name === undefined || !mem.inBounds(retPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
      if (name === '') return Status.BadArgument;
      const { status, id } = host.defineMetric(type, name);
      if (status === Status.Ok) mem.putU32(retPtr >>> 0, id);
      return status;
    },
    proxy_increment_metric(id: number, offset: bigint) {
      return host.incrementMetric(id >>> 0, Number(offset));
    },
    proxy_record_metric(id: number, value: bigint) {
      return host.recordMetric(id >>> 0, Number(BigInt.asUintN(64, value)));
    },
    proxy_get_metric(id: number, retPtr: number) {
      if (!mem.inBounds(retPtr >>> 0, 8)) return Status.InvalidMemoryAccess;
      const { status, value } = host.getMetric(id >>> 0);
      if (status === Status.Ok) mem.putU64(retPtr >>> 0, BigInt(Math.trunc(value)));
      return status;
    },

    proxy_get_shared_data(keyPtr: number, keyLen: number, retPtr: number, retLen: number, casPtr: number) {
      const key = mem.string(keyPtr >>> 0, keyLen >>> 0);
      if (key === undefined || !mem.inBounds(casPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
      const { status, value, cas } = host.getSharedData(key);
      if (status !== Status.Ok) return noData(status, retPtr, retLen);
      const copied = mem.copyOut(value!, retPtr >>> 0, retLen >>> 0);
      if (copied === Status.Ok) mem.putU32(casPtr >>> 0, cas);
      return copied;
    },
    proxy_set_shared_data(keyPtr: number, keyLen: number, valuePtr: number, valueLen: number, cas: number) {
      const key = mem.string(keyPtr >>> 0, keyLen >>> 0);
      const value = mem.copy(valuePtr >>> 0, valueLen >>> 0);
      if (key === undefined || value === undefined) return Status.InvalidMemoryAccess;
      return host.setSharedData(key, value, cas >>> 0);
    },

    proxy_register_shared_queue(namePtr: number, nameLen: number, retPtr: number) {
      const name = mem.string(namePtr >>> 0, nameLen >>> 0);
      if (name === undefined || !mem.inBounds(retPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
      const { status, id } = host.registerQueue(name);
      if (status === Status.Ok) mem.putU32(retPtr >>> 0, id);
      return status;
    },
    proxy_resolve_shared_queue(vmPtr: number, vmLen: number, namePtr: number, nameLen: number, retPtr: number) {
      const vmId = mem.string(vmPtr >>> 0, vmLen >>> 0);
      const name = mem.string(namePtr >>> 0, nameLen >>> 0);
      if (vmId === undefined || name === undefined || !mem.inBounds(retPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
      const { status, id } = host.resolveQueue(vmId, name);
      if (status === Status.Ok) mem.putU32(retPtr >>> 0, id);
      return status;
    },
    proxy_enqueue_shared_queue(id: number, valuePtr: number, valueLen: number) {
      const value = mem.copy(valuePtr >>> 0, valueLen >>> 0);
      if (value === undefined) return Status.InvalidMemoryAccess;
      return host.enqueue(id >>> 0, value);
    },
    proxy_dequeue_shared_queue(id: number, retPtr: number, retLen: number) {
      if (!mem.inBounds(retPtr >>> 0, 4) || !mem.inBounds(retLen >>> 0, 4)) return Status.InvalidMemoryAccess;
      const { status, value } = host.dequeue(id >>> 0);
      return status === Status.Ok ? mem.copyOut(value!, retPtr >>> 0, retLen >>> 0) : noData(status, retPtr, retLen);
    },

    proxy_set_effective_context(id: number) {
      return host.setEffectiveContext(id >>> 0);
    },
    proxy_done() {
      return host.done();
    },
    proxy_call_foreign_function(namePtr: number, nameLen: number, argsPtr: number, argsLen: number, retPtr: number, retLen: number) {
      const name = mem.string(namePtr >>> 0, nameLen >>> 0);
      const args = mem.copy(argsPtr >>> 0, argsLen >>> 0);
      if (name === undefined || args === undefined) return Status.InvalidMemoryAccess;
      if (!mem.inBounds(retPtr >>> 0, 4) || !mem.inBounds(retLen >>> 0, 4)) return Status.InvalidMemoryAccess;
      const { status, result } = host.callForeignFunction(name, args);
      return status === Status.Ok ? mem.copyOut(result ?? EMPTY, retPtr >>> 0, retLen >>> 0) : noData(status, retPtr, retLen);
    },
    proxy_get_status(codePtr: number, msgPtr: number, msgLen: number) {
      // gRPC call status; Sluice has no gRPC calls from filters yet, so there is never a status to report.
      void codePtr;
      return notFound(msgPtr, msgLen);
    },
  };


  /** proxy_add_header_map_value (another value) and proxy_replace_header_map_value (the only value). */
  function writeHeader(type: number, keyPtr: number, keyLen: number, valuePtr: number, valueLen: number, replace: boolean): Status {
    if (type >>> 0 > MAX_MAP_TYPE) return Status.BadArgument;
    const key = mem.string(keyPtr >>> 0, keyLen >>> 0);
    const value = mem.string(valuePtr >>> 0, valueLen >>> 0);
    if (key === undefined || value === undefined) return Status.InvalidMemoryAccess;
    const map = host.headerMap(type);
    if (!map || !validHeader(key, value)) return Status.BadArgument;
    if (replace) map.set(key, value);
    else map.add(key, value);
    return Status.Ok;
  }

  /** A call that answers with no data: zeroes the guest's (pointer, size) slots, keeps the status. */
  function noData(status: Status, retPtr: number, retLen: number): Status {
    mem.clearOut(retPtr >>> 0, retLen >>> 0);
    return status;
  }

  function notFound(retPtr: number, retLen: number): Status {
    return noData(Status.NotFound, retPtr, retLen);
  }

  function refuse(name: string): Status {
    host.refused(name);
    return Status.Unimplemented;
  }

  for (const [name, fn] of Object.entries(table)) table[name] = guard(name, fn, host);
  for (const capability of refused) {
    for (const name of CAPABILITY_FUNCTIONS[capability]) table[name] = () => refuse(name);
  }
  return table;
}

/** HTTP token characters (RFC 9110 §5.6.2), by char code. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN[c.charCodeAt(0)] = 1;

/**
 * Whether a filter's header may be written: a name that is an HTTP token (pseudo-headers: after
 * the colon), a value without CR, LF or NUL. Anything else could not be sent, or would split a
 * message. (Plain loops: a regular expression here cost more than the rest of the host call.)
 */
function validHeader(key: string, value: string): boolean {
  return (goodNames.has(key) || validName(key)) && value.indexOf('\r') < 0 && value.indexOf('\n') < 0 && value.indexOf('\u0000') < 0;
}

/** Names already found valid: filters write the same few names on every request. */
const goodNames = new Set<string>();

function validName(key: string): boolean {
  const start = key.charCodeAt(0) === 58 /* ':' */ ? 1 : 0;
  if (key.length <= start) return false;
  for (let i = start; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c >= 128 || TOKEN[c] === 0) return false;
  }
  if (goodNames.size >= 4096) goodNames.clear();
  goodNames.add(key);
  return true;
}

/** Decoded property paths by their text: filters ask for the same few paths over and over. */
const paths = new Map<string, string[]>();

/** Property paths are segments joined by NUL (`request\0path`). */
function splitPath(path: string): string[] {
  let segments = paths.get(path);
  if (segments === undefined) {
    segments = path.split('\u0000').filter((s) => s !== '');
    if (paths.size >= 1024) paths.clear();
    paths.set(path, segments);
  }
  return segments;
}

function guard(name: string, fn: HostFunction, host: AbiHost): HostFunction {
  const f = fn as (...a: number[]) => number;
  const fault = (error: unknown): number => {
    if (error instanceof GuestAbort) throw error;
    host.hostError(name, error);
    return Status.InternalFailure;
  };
  // One wrapper per arity: a wrapper with the import's exact parameter count keeps V8's
  // Wasm-to-JS calls on the fast path (no arguments object, no arity adaptation).
  type N = number;
  switch (f.length) {
    case 0:
      return (() => { try { return f(); } catch (e) { return fault(e); } }) as HostFunction;
    case 1:
      return ((a: N) => { try { return f(a); } catch (e) { return fault(e); } }) as HostFunction;
    case 2:
      return ((a: N, b: N) => { try { return f(a, b); } catch (e) { return fault(e); } }) as HostFunction;
    case 3:
      return ((a: N, b: N, c: N) => { try { return f(a, b, c); } catch (e) { return fault(e); } }) as HostFunction;
    case 4:
      return ((a: N, b: N, c: N, d: N) => { try { return f(a, b, c, d); } catch (e) { return fault(e); } }) as HostFunction;
    case 5:
      return ((a: N, b: N, c: N, d: N, e: N) => { try { return f(a, b, c, d, e); } catch (x) { return fault(x); } }) as HostFunction;
    default:
      return ((...args: N[]) => { try { return f(...args); } catch (x) { return fault(x); } }) as HostFunction;
  }
}
