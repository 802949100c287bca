// Outgoing HTTP calls (`proxy_http_call`) and their answers: the SDK remembers which context made
// each call and which callback wants the answer, and hands the answer over as an HttpCallResponse.

import { proxy_get_header_map_pairs, proxy_http_call } from "./abi";
import { Context } from "./context";
import { failHostCall, warnHostCall } from "./errors";
import { Headers, deserializeHeaders, serializeHeaders } from "./headers";
import { Body } from "./body";
import { clearReturned, freeReturned, RETURN_PTR, RETURN_SIZE, toBytes } from "./memory";
import { BufferType, MapType, Status } from "./types";

/** The answer to an HTTP call. A call that failed (timeout, reset, no upstream) has no headers. */
export class HttpCallResponse {
  constructor(
    readonly token: u32,
    readonly headers: Headers,
    readonly body: ArrayBuffer,
    readonly trailers: Headers,
  ) {}

  /** True when the call got no answer (the host reports 0 headers). */
  get failed(): bool {
    return this.headers.length == 0;
  }

  /** The answer's HTTP status (`:status`), 0 when the call failed. */
  get status(): u32 {
    const value = this.headers.get(":status");
    if (value === null) return 0;
    const parsed = I32.parseInt(value, 10);
    return parsed > 0 ? <u32>parsed : 0;
  }

  header(name: string): string | null {
    return this.headers.get(name);
  }

  /** The body decoded as UTF-8. */
  text(): string {
    return String.UTF8.decode(this.body);
  }
}

/**
 * Gets the answer of an HTTP call. No closures in AssemblyScript: instead of capturing state, the
 * callback gets the context that made the call; cast it back (`origin as MyHttpContext`). For a call
 * made by a stream, the stream is the effective context while the callback runs, so
 * `continueRequest()` or `sendLocalResponse(...)` act on it.
 */
export type HttpCallback = (origin: Context, response: HttpCallResponse) => void;

export class PendingCall {
  /** Set when the calling context was deleted first: the answer is then dropped. */
  orphaned: bool = false;

  constructor(readonly originId: u32, readonly callback: HttpCallback | null) {}
}

const pending = new Map<u32, PendingCall>();

/** Sends an HTTP call for `origin`. Returns Ok, or the host's refusal (logged). */
export function sendHttpCall<T>(
  origin: Context,
  cluster: string,
  headers: Headers,
  body: T,
  timeoutMilliseconds: u32,
  callback: HttpCallback | null,
  trailers: Headers | null,
): Status {
  const clusterBytes = String.UTF8.encode(cluster);
  const headerBytes = serializeHeaders(headers);
  const bodyBytes = toBytes<T>(body);
  const trailerBytes = serializeHeaders(trailers);
  store<u32>(RETURN_SIZE, 0);
  const status = <Status>proxy_http_call(
    changetype<usize>(clusterBytes), clusterBytes.byteLength,
    changetype<usize>(headerBytes), headerBytes.byteLength,
    changetype<usize>(bodyBytes), bodyBytes.byteLength,
    changetype<usize>(trailerBytes), trailerBytes.byteLength,
    timeoutMilliseconds,
    RETURN_SIZE,
  );
  if (status != Status.Ok) {
    const detail = status == Status.BadArgument
      ? "cluster '" + cluster + "': unknown cluster, or headers lack :method, :path or :authority"
      : "cluster '" + cluster + "'";
    if (status == Status.InvalidMemoryAccess) failHostCall("proxy_http_call", status, detail);
    else warnHostCall("proxy_http_call", status, detail);
    return status;
  }
  pending.set(load<u32>(RETURN_SIZE), new PendingCall(origin.id, callback));
  origin.pendingHttpCalls++;
  return status;
}

/** Removes and returns the record of call `token`, or null for a call the SDK did not make. */
export function takePendingCall(token: u32): PendingCall | null {
  if (!pending.has(token)) return null;
  const call = pending.get(token);
  pending.delete(token);
  return call;
}

/**
 * Marks the calls a deleted context still waits for as orphaned: their answers will be dropped
 * (kept until then, so they are not mistaken for calls made outside the SDK).
 */
export function orphanPendingCalls(contextId: u32): void {
  const calls = pending.values();
  for (let i = 0; i < calls.length; i++) {
    if (calls[i].originId == contextId) calls[i].orphaned = true;
  }
}

const CALL_BODY = new Body(BufferType.HttpCallResponseBody);

function readCallMap(mapType: MapType): Headers {
  clearReturned();
  const status = <Status>proxy_get_header_map_pairs(mapType, RETURN_PTR, RETURN_SIZE);
  if (status != Status.Ok) {
    warnHostCall("proxy_get_header_map_pairs", status, "HTTP call response");
    return new Headers();
  }
  const ptr = <usize>load<u32>(RETURN_PTR);
  const headers = deserializeHeaders(ptr, <usize>load<u32>(RETURN_SIZE));
  freeReturned(ptr);
  if (headers === null) {
    failHostCall("proxy_get_header_map_pairs", Status.SerializationFailure, "malformed HTTP call response headers");
    return new Headers();
  }
  return headers;
}

/** Reads the answer the host offers during `proxy_on_http_call_response` (it is gone afterwards). */
export function readHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): HttpCallResponse {
  const headers = numHeaders > 0 ? readCallMap(MapType.HttpCallResponseHeaders) : new Headers();
  const body = bodySize > 0 ? CALL_BODY.get(0, bodySize) : new ArrayBuffer(0);
  const trailers = numTrailers > 0 ? readCallMap(MapType.HttpCallResponseTrailers) : new Headers();
  return new HttpCallResponse(token, headers, body, trailers);
}
