// The classes a filter extends: RootContext (one per plugin: configuration, timers, queues,
// creating streams) and HttpContext (one per HTTP stream: the request/response callbacks).
// Override the callbacks you need; the defaults let everything through.

import { proxy_close_stream, proxy_continue_stream, proxy_done, proxy_send_local_response, proxy_set_effective_context } from "./abi";
import { warnHostCall } from "./errors";
import { Headers, serializeHeaders } from "./headers";
import { HttpCallback, HttpCallResponse, sendHttpCall } from "./http-call";
import { HttpMessage, REQUEST, RESPONSE } from "./http-message";
import { toBytes } from "./memory";
import { setTickPeriod } from "./time";
import { BodyAction, HeadersAction, Status, StreamType, TrailersAction } from "./types";

/** What root and stream contexts share: an id, the end-of-life callbacks, HTTP calls. */
export class Context {
  /** HTTP calls made by this context still waiting for an answer. */
  pendingHttpCalls: i32 = 0;

  constructor(readonly id: u32) {}

  /** The host is done with this context; the last moment to log or record metrics about it. */
  onLog(): void {}

  /**
   * The host wants to finish this context. Return false to keep it alive (e.g. until an HTTP call
   * answers) and call `done()` later.
   */
  onDone(): bool {
    return true;
  }

  /** The context is gone; release what it holds. */
  onDelete(): void {}

  /**
   * Calls `cluster` over HTTP. `headers` must include `:method`, `:path` and `:authority`; `body`
   * is a string or bytes ("" for none). The answer goes to `callback` (or, without one, to the
   * root context's `onHttpCallResponse`). Returns Ok or the host's refusal (also logged).
   */
  httpCall<T>(
    cluster: string,
    headers: Headers,
    body: T,
    timeoutMilliseconds: u32,
    callback: HttpCallback | null = null,
    trailers: Headers | null = null,
  ): Status {
    return sendHttpCall<T>(this, cluster, headers, body, timeoutMilliseconds, callback, trailers);
  }

  /** Tells the host this context may now be finished (after `onDone` returned false). */
  done(): Status {
    const status = <Status>proxy_done();
    if (status != Status.Ok) warnHostCall("proxy_done", status, "context " + this.id.toString());
    return status;
  }
}

/** One per plugin: configuration, timers, queues, and the factory of HTTP stream contexts. */
export class RootContext extends Context {
  /** The plugin's root id (the host property `plugin_root_id`) this context was chosen for. */
  rootId: string = "";

  constructor(id: u32) {
    super(id);
  }

  /** The VM started; `vmConfiguration` is the VM configuration text ("" when none). */
  onVmStart(vmConfiguration: string): bool {
    return true;
  }

  /**
   * The plugin's configuration text ("" when none). Validate it here and return false (after
   * logging which field is wrong) to reject the plugin.
   */
  onConfigure(configuration: string): bool {
    return true;
  }

  /** Called every tick period (see `setTickPeriod`). */
  onTick(): void {}

  /** An item arrived on a shared queue this VM registered. */
  onQueueReady(queueId: u32): void {}

  /** The answer to an HTTP call made without a callback. */
  onHttpCallResponse(token: u32, response: HttpCallResponse): void {}

  /** The host called a foreign callback registered for this plugin. */
  onForeignFunction(functionId: u32, args: ArrayBuffer): void {}

  /** Builds the context of a new HTTP stream; pass `id` and `this` on to it. */
  createHttpContext(id: u32): HttpContext {
    return new HttpContext(id, this);
  }

  /** Calls `onTick` every `milliseconds` (0 stops it). */
  setTickPeriod(milliseconds: u32): Status {
    return setTickPeriod(milliseconds);
  }
}

/** One per HTTP stream (request and its response). */
export class HttpContext extends Context {
  constructor(id: u32, readonly root: RootContext) {
    super(id);
  }

  /** The downstream request: `request.headers`, `request.body`, `request.trailers`. */
  get request(): HttpMessage {
    return REQUEST;
  }

  /** The response: `response.headers`, `response.body`, `response.trailers`. */
  get response(): HttpMessage {
    return RESPONSE;
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    return HeadersAction.Continue;
  }

  onRequestBody(bodySize: u32, endOfStream: bool): BodyAction {
    return BodyAction.Continue;
  }

  onRequestTrailers(numTrailers: u32): TrailersAction {
    return TrailersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    return HeadersAction.Continue;
  }

  onResponseBody(bodySize: u32, endOfStream: bool): BodyAction {
    return BodyAction.Continue;
  }

  onResponseTrailers(numTrailers: u32): TrailersAction {
    return TrailersAction.Continue;
  }

  /**
   * Answers the request from the filter instead of the upstream. Takes effect when the current
   * callback returns; return StopIteration from it. `body`: string or bytes. `details` names the
   * reason in access logs (no spaces); `grpcStatus` -1 means none.
   */
  sendLocalResponse<T>(
    statusCode: u32,
    body: T,
    headers: Headers | null = null,
    details: string = "",
    grpcStatus: i32 = -1,
  ): Status {
    const bodyBytes = toBytes<T>(body);
    const headerBytes = serializeHeaders(headers);
    const detailBytes = String.UTF8.encode(details);
    const status = <Status>proxy_send_local_response(
      statusCode,
      changetype<usize>(detailBytes), detailBytes.byteLength,
      changetype<usize>(bodyBytes), bodyBytes.byteLength,
      changetype<usize>(headerBytes), headerBytes.byteLength,
      grpcStatus,
    );
    if (status != Status.Ok) warnHostCall("proxy_send_local_response", status, "status " + statusCode.toString());
    return status;
  }

  /**
   * Resumes a request paused by StopIteration. Callable from anywhere, e.g. a root context's
   * onTick or an HTTP call's callback: it makes this stream the effective context first.
   */
  continueRequest(): Status {
    this.makeEffective();
    return this.checked("proxy_continue_stream", <Status>proxy_continue_stream(StreamType.HttpRequest));
  }

  /** Resumes a response paused by StopIteration (callable from anywhere, like continueRequest). */
  continueResponse(): Status {
    this.makeEffective();
    return this.checked("proxy_continue_stream", <Status>proxy_continue_stream(StreamType.HttpResponse));
  }

  /** Makes this stream the context later host calls act on (proxy_set_effective_context). */
  makeEffective(): Status {
    return this.checked("proxy_set_effective_context", <Status>proxy_set_effective_context(this.id));
  }

  /** Resets the stream (HttpRequest: the downstream request; HttpResponse: the response). */
  closeStream(streamType: StreamType = StreamType.HttpRequest): Status {
    return this.checked("proxy_close_stream", <Status>proxy_close_stream(streamType));
  }

  private checked(hostFunction: string, status: Status): Status {
    if (status != Status.Ok) warnHostCall(hostFunction, status, "context " + this.id.toString());
    return status;
  }
}
