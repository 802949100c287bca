// Upstream HTTP/2 over cleartext (prior knowledge), as gRPC services speak it: one multiplexed
// session per endpoint, opened on first use and again after it closes or gets a GOAWAY. Requests
// and responses stream both ways, and response trailers (grpc-status) come back. node:http2
// rather than undici, whose HTTP/2 client cannot yet send request bodies as streams with
// trailers reliably.

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import type { Connector, UpstreamPool, UpstreamRequest, UpstreamResponse } from './upstream-pool.ts';

/** Headers that describe one HTTP/1.1 connection and must not appear in HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

export interface Http2PoolOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** Time to the response headers (0: none). */
  requestTimeoutMs: number;
}

class ConnectTimeout extends Error {
  readonly code = 'UND_ERR_CONNECT_TIMEOUT';
  constructor(authority: string, ms: number) {
    super(`connecting to ${authority} took longer than ${ms} ms`);
  }
}

class StreamReset extends Error {
  readonly code = 'ECONNRESET';
  constructor(authority: string, rstCode: number) {
    super(`the HTTP/2 stream to ${authority} was reset (code ${rstCode}) before the response headers`);
  }
}

export class Http2Pool implements UpstreamPool {
  private session?: ClientHttp2Session;
  private connecting?: Promise<ClientHttp2Session>;
  private closed = false;
  /** Requests waiting for the session to connect. */
  pending = 0;

  constructor(
    private readonly authority: string,
    private readonly options: Http2PoolOptions,
    /** Makes the session's connection instead of http2.connect's own (capture: in a pod's netns). */
    private readonly connector?: Connector,
  ) {}

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    this.pending++;
    let session: ClientHttp2Session;
    try {
      session = await this.connect();
    } finally {
      this.pending--;
    }
    req.signal?.throwIfAborted();
    const body = req.body;
    const endStream = body === undefined || (body instanceof Uint8Array && body.byteLength === 0);
    const stream = session.request(toHttp2Headers(req), { endStream });
    const signal = req.signal;
    if (signal) {
      const onAbort = () => cancelStream(stream, signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    if (!endStream) {
      if (body instanceof Uint8Array) stream.end(body);
      else pipeBody(body as Readable, stream);
    }
    return this.response(stream, req.headersTimeout ?? this.options.requestTimeoutMs);
  }

  private response(stream: ClientHttp2Stream, timeoutMs: number): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const trailers: Record<string, string | string[]> = {};
      let answered = false;
      let timedOut = false;
      const headersTimeout = () => Object.assign(new Error(`no response headers within ${timeoutMs} ms`), { name: 'HeadersTimeoutError', code: 'UND_ERR_HEADERS_TIMEOUT' });
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              timedOut = true;
              cancelStream(stream, headersTimeout());
            }, timeoutMs)
          : undefined;
      const settle = () => {
        answered = true;
        if (timer) clearTimeout(timer);
      };
      stream.once('response', (headers, flags: number) => {
        settle();
        const statusCode = Number(headers[':status']);
        const endAfterHeaders = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
        resolve({ statusCode, headers: withoutPseudo(headers), body: stream, trailers, endAfterHeaders });
      });
      stream.once('trailers', (t: IncomingHttpHeaders) => Object.assign(trailers, withoutPseudo(t)));
      // Kept after the response: later errors reach whoever reads the body, or nobody.
      stream.on('error', (error) => {
        if (answered) return;
        settle();
        reject(timedOut ? headersTimeout() : error);
      });
      stream.once('close', () => {
        if (answered) return;
        settle();
        reject(timedOut ? headersTimeout() : new StreamReset(this.authority, stream.rstCode ?? 0));
      });
    });
  }

  private connect(): Promise<ClientHttp2Session> {
    const live = this.session;
    if (live && !live.closed && !live.destroyed) return Promise.resolve(live);
    if (this.closed) return Promise.reject(Object.assign(new Error(`the pool for ${this.authority} is closed`), { code: 'UND_ERR_CLOSED' }));
    this.connecting ??= new Promise<ClientHttp2Session>((resolve, reject) => {
      const connector = this.connector;
      const session = connector
        ? http2.connect(`http://${this.authority}`, { createConnection: (url: URL) => connector(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port)) })
        : http2.connect(`http://${this.authority}`);
      const timer = setTimeout(() => {
        session.destroy();
        fail(new ConnectTimeout(this.authority, this.options.connectTimeoutMs));
      }, this.options.connectTimeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        this.connecting = undefined;
        reject(error);
      };
      session.once('error', fail);
      session.once('connect', () => {
        clearTimeout(timer);
        session.off('error', fail);
        // Later session errors fail its streams, which report them to their requests.
        session.on('error', () => {});
        this.session = session;
        this.connecting = undefined;
        resolve(session);
      });
      const forget = () => {
        if (this.session === session) this.session = undefined;
      };
      session.once('close', forget);
      session.once('goaway', forget);
      // An idle session (no open streams) is closed after idleTimeoutMs.
      session.setTimeout(this.options.idleTimeoutMs, () => session.close());
    });
    return this.connecting;
  }

  /** Closes the session once its streams are done. */
  async close(): Promise<void> {
    this.closed = true;
    const session = this.session;
    if (!session || session.closed) return;
    await new Promise<void>((resolve) => session.close(() => resolve()));
  }

  /** Closes the session now, resetting its streams. */
  async destroy(): Promise<void> {
    this.closed = true;
    this.session?.destroy();
  }
}

/**
 * Stops an upstream stream. One whose request body is still open is reset with INTERNAL_ERROR
 * through destroy(): node's close(code) and its AbortSignal support send END_STREAM before the
 * reset, and the upstream would take a request cut short for a whole one. One whose request is
 * whole gets CANCEL.
 */
export function cancelStream(stream: ClientHttp2Stream, reason?: unknown): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.writableEnded) return void stream.close(http2.constants.NGHTTP2_CANCEL);
  stream.destroy(new Error(`the request was cancelled: ${(reason as Error)?.message ?? String(reason)}`, { cause: reason }));
}

function toHttp2Headers(req: UpstreamRequest): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': req.method, ':path': req.path, ':scheme': 'http' };
  const flat = req.headers;
  for (let i = 0; i < flat.length; i += 2) {
    const key = flat[i].toLowerCase();
    const value = flat[i + 1];
    if (key === 'host') out[':authority'] = value;
    else if (CONNECTION_SPECIFIC.has(key) || (key === 'te' && value !== 'trailers')) continue;
    else {
      const had = out[key];
      out[key] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value];
    }
  }
  return out;
}

function withoutPseudo(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (k.charCodeAt(0) !== 58 && v !== undefined) out[k] = v;
  return out;
}

/** Streams a request body into the upstream stream; a failing body resets the stream. */
function pipeBody(body: Readable, stream: ClientHttp2Stream): void {
  body.on('error', (error) => cancelStream(stream, error));
  stream.on('error', () => body.destroy());
  body.pipe(stream);
}
