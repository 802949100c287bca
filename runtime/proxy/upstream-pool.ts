// What a cluster endpoint's connection pool offers the request path, whichever protocol it speaks
// upstream: HTTP/1.1 through undici's Pool, HTTP/2 (h2c, gRPC) through h2-pool.ts.

import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { Pool, type buildConnector, type Dispatcher } from 'undici';

export interface UpstreamRequest {
  method: string;
  path: string;
  /** Flat name/value list; `host` carries the authority. */
  headers: string[];
  body?: Readable | Uint8Array;
  signal?: AbortSignal;
  /** Time to the response headers, and between body chunks (ms). */
  headersTimeout?: number;
  bodyTimeout?: number;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  /** Filled in once the body has been read to its end. */
  trailers: Record<string, string | string[] | undefined>;
  /** HTTP/2: the response ended with its headers (no body, no trailers: gRPC's "trailers-only"). */
  endAfterHeaders?: boolean;
}

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

  request(request: UpstreamRequest): Promise<UpstreamResponse> {
    return this.pool.request(request as Dispatcher.RequestOptions) as Promise<UpstreamResponse>;
  }

  get pending(): number {
    return this.pool.stats.pending;
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
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
export function discard(body: Readable): Promise<void> {
  const dump = (body as Readable & { dump?: () => Promise<void> }).dump;
  if (dump) return dump.call(body).catch(() => {});
  body.destroy();
  return Promise.resolve();
}
