// What a cluster endpoint's connection pool offers the request path, whichever protocol it speaks
// upstream: HTTP/1.1 through undici's Pool, HTTP/2 (h2c, gRPC) through h2-pool.ts.

import type { ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Pool, type buildConnector, type Dispatcher } from 'undici';
import { cancelStream } from './h2-pool.ts';
import { DispatchedBody } from './upstream-body.ts';
import type { StopSignalLike } from './stop-signal.ts';

export interface UpstreamRequest {
  method: string;
  path: string;
  /** Flat name/value list; `host` carries the authority. */
  headers: string[];
  body?: Readable | Uint8Array;
  signal?: StopSignalLike;
  /** Time to the response headers, and between body chunks (ms). */
  headersTimeout?: number;
  bodyTimeout?: number;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /** HTTP/1.1: the chunks undici dispatches; HTTP/2: the stream. */
  body: UpstreamBody;
  /** Filled in once the body has been read to its end. */
  trailers: Record<string, string | string[] | undefined>;
  /** HTTP/2: the response ended with its headers (no body, no trailers: gRPC's "trailers-only"). */
  endAfterHeaders?: boolean;
}

export type UpstreamBody = Readable | DispatchedBody;

export interface UpstreamPool {
  request(request: UpstreamRequest): Promise<UpstreamResponse>;
  /** Requests waiting for a connection (the pending-requests circuit breaker counts these). */
  readonly pending: number;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

export interface Http1PoolOptions {
  maxConnections: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
}

/** Makes the pool's connections (instead of undici's own connect): capture opens them in a pod's netns. */
export type Connector = (host: string, port: number) => Socket;

export class Http1Pool implements UpstreamPool {
  private readonly pool: Pool;

  constructor(authority: string, options: Http1PoolOptions, connector?: Connector) {
    this.pool = new Pool(`http://${authority}`, {
      connections: options.maxConnections,
      connectTimeout: options.connectTimeoutMs,
      keepAliveTimeout: options.idleTimeoutMs,
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
      ...(connector && { connect: adapt(connector, options.connectTimeoutMs) }),
    });
  }

  /** Requests aborted before undici settled them: those still queued stay in its count until a connection frees. */
  abortedUnsettled = 0;

  request(request: UpstreamRequest): Promise<UpstreamResponse> {
    // undici stops listening to a request body once the request failed, then destroys it with
    // the failure; the failure is reported by the returned promise.
    if (request.body instanceof Readable) request.body.on('error', ignore);
    return new Promise((resolve, reject) => {
      const handler = new DispatchedRequest(this, request.signal, resolve, reject);
      if (handler.refused) return;
      this.pool.dispatch(
        { method: request.method, path: request.path, headers: request.headers, body: request.body, headersTimeout: request.headersTimeout, bodyTimeout: request.bodyTimeout } as Dispatcher.DispatchOptions,
        handler,
      );
    });
  }

  get pending(): number {
    return Math.max(0, this.pool.stats.pending - this.abortedUnsettled);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

/**
 * One request dispatched to undici (its handler): resolves with the response head, then feeds
 * the body to a DispatchedBody. undici acts on an abort only once the request has a connection:
 * one still queued (every connection busy) would wait there, counted as pending, until a
 * connection frees; the caller hears of the abort at once, and the pending count leaves it out.
 */
class DispatchedRequest implements Dispatcher.DispatchHandler {
  private controller?: Dispatcher.DispatchController;
  private response?: UpstreamResponse;
  private body?: DispatchedBody;
  /** Aborted before undici gave it a connection. */
  private aborted = false;
  /** The signal was already aborted: nothing is dispatched. */
  readonly refused: boolean = false;

  constructor(
    private readonly pool: Http1Pool,
    private readonly signal: StopSignalLike | undefined,
    private readonly resolve: (r: UpstreamResponse) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    if (!signal) return;
    if (signal.aborted) {
      this.refused = true;
      reject(signal.reason);
      return;
    }
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = (): void => {
    if (this.controller) return this.controller.abort(this.signal!.reason as Error);
    this.aborted = true;
    this.pool.abortedUnsettled++;
    this.reject(this.signal!.reason);
  };

  private settled(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    if (this.aborted) {
      this.aborted = false;
      this.pool.abortedUnsettled--;
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Aborted while it waited for a connection: it goes no further.
    if (this.aborted) controller.abort(this.signal!.reason as Error);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx (a 100 Continue the upstream sends on its own) are not the answer.
    if (statusCode < 200) return;
    if (this.aborted) return controller.abort(this.signal!.reason as Error);
    this.body = new DispatchedBody(controller);
    this.response = { statusCode, headers, body: this.body, trailers: {} };
    this.resolve(this.response);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.body?.push(chunk);
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.settled();
    if (this.response) this.response.trailers = trailers;
    this.body?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.settled();
    if (this.body) this.body.fail(error);
    else this.reject(error);
  }
}

const ignore = () => {};

/**
 * Stops a response body we will not relay, aborting the rest of the upstream response: an HTTP/2
 * stream is reset (CANCEL; destroy() alone would send NO_ERROR), an HTTP/1.1 one closes its
 * connection.
 */
export function abandon(body: UpstreamBody): void {
  if (body instanceof DispatchedBody) return body.abandon();
  body.on('error', ignore);
  // An HTTP/2 stream (node exports no class to test against).
  if ('rstCode' in body && 'session' in body) return cancelStream(body as ClientHttp2Stream);
  body.destroy();
}

/** undici's connect callback over a Connector, with the pool's connect timeout. */
function adapt(connector: Connector, timeoutMs: number): buildConnector.connector {
  return (opts, callback) => {
    let socket: Socket;
    try {
      socket = connector(opts.hostname.replace(/^\[|\]$/g, ''), Number(opts.port));
    } catch (error) {
      return void callback(error as Error, null);
    }
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`connect timeout after ${timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' })), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      callback(null, socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      callback(error, null);
    });
  };
}

/** Throws away a response body we will not relay (a retried try), keeping the connection when it can. */
export function discard(body: UpstreamBody): Promise<void> {
  if (body instanceof DispatchedBody) return body.discard();
  // An HTTP/2 stream: reset (its session stays).
  abandon(body);
  return Promise.resolve();
}
