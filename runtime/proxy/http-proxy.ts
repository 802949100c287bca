// One HTTP request (HTTP/1.1 or HTTP/2, gRPC included) through a listener: request headers into
// the filter chain, the route picked after the request-header filters ran (Envoy's clear-route-
// cache behaviour), the request streamed to an upstream endpoint, the response (and its
// trailers) streamed back through the chain.

import { randomUUID } from 'node:crypto';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { log as logLine, type LogLevelName } from '../log.ts';
import type { ListenerConfig, RouteConfig } from '../config/snapshot.ts';
import type { FilterChain } from '../host/filter-chain.ts';
import { HeaderMap } from '../host/header-map.ts';
import type { HttpStream, LocalReply, Outcome } from '../host/http-stream.ts';
import { EMPTY } from '../host/stream.ts';
import type { AccessLog } from './access-log.ts';
import { DEFAULT_BUFFER_LIMIT_BYTES, isClosed, writeBounded } from './backpressure.ts';
import { bodyChunks } from './body-chunks.ts';
import { LengthHold, withLength, type BodyLength } from './body-length.ts';
import { backoffMs, effectivePolicy, retriable } from './retry.ts';
import { pickWeighted, type Router } from './router.ts';
import type { SpanExporter } from './span-export.ts';
import { spanFor, traceparentOf, type Span } from './trace-context.ts';
import type { Telemetry } from './telemetry.ts';
import { downstreamSocket, endWithHeaders, tlsFacts, type DownstreamRequest, type DownstreamResponse } from './downstream.ts';
import { DEFAULT_STREAM_IDLE_TIMEOUT_MS, StreamDeadline, type Expiry } from './stream-deadline.ts';
import { requestChunks, resetResponse, responseIncomplete, upstreamChunks, UpstreamBodyFailed } from './stream-reset.ts';
import { abandon, discard, type UpstreamResponse } from './upstream-pool.ts';
import type { Cluster, UpstreamHost } from './upstreams.ts';
import type { StreamInfo } from '../host/stream.ts';

/** What one listener runs with: immutable per snapshot, swapped whole on reload. */
export interface ListenerState {
  readonly config: ListenerConfig;
  readonly chain: FilterChain;
  readonly router: Router;
  readonly clusters: ReadonlyMap<string, Cluster>;
  readonly accessLog?: AccessLog;
  readonly spans?: SpanExporter;
}

/** Connection-level headers that never cross a proxy (RFC 9110 §7.6.1); `te: trailers` is kept (gRPC needs it). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade', 'http2-settings']);

interface Exchange {
  span?: Span;
  status: number;
  requestBytes: number;
  responseBytes: number;
  cluster: string;
  route: string;
  /** The request is gRPC: Sluice's own replies take gRPC's form (status in grpc-status). */
  grpc: boolean;
  /** Stops the upstream side of the exchange (the client went away). */
  cancel?: () => void;
  /** The client left before its response was complete. */
  clientGone?: boolean;
  deadline?: StreamDeadline;
  /** The stream's deadline passed (its response_code_details): it was answered or reset then. */
  expired?: string;
}

type Req = DownstreamRequest;
type Res = DownstreamResponse;

export async function proxyRequest(state: ListenerState, telemetry: Telemetry, req: Req, res: Res): Promise<void> {
  const started = performance.now();
  const exchange: Exchange = { status: 0, requestBytes: 0, responseBytes: 0, cluster: '', route: '', grpc: false };
  const connection = connectionFacts(req);
  const stream = state.chain.stream({ ...connection, protocol: req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}` });
  const deadline = new StreamDeadline(
    {
      progress: () => exchange.requestBytes + exchange.responseBytes + (res.headersSent ? 1 : 0),
      heldBy: () => stream.heldBy,
      expire: (expiry) => expire(stream, res, exchange, expiry),
      timedOut: (timeout) => telemetry.streamTimedOut(state.config.name, timeout),
    },
    started,
    state.config.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    state.config.name,
  );
  exchange.deadline = deadline;
  // A client that leaves before its answer (HTTP/1.1 disconnect, HTTP/2 RST_STREAM) ends the
  // stream at once (a filter holding it, e.g. a fault delay, lets go) and the upstream request is
  // aborted.
  res.once('close', () => {
    if (!responseIncomplete(res)) return;
    exchange.clientGone = true;
    stream.end();
    exchange.cancel?.();
  });
  try {
    await exchangeThrough(state, stream, req, res, exchange, connection.tls);
  } catch (error) {
    // Past the deadline the stream was answered or reset; what failed after is a consequence.
    if (exchange.expired) return;
    if (exchange.clientGone || req.destroyed || (error as { code?: string })?.code === 'ECONNRESET' || (error as Error)?.message === 'aborted') {
      // The client is gone (or its request broke mid-body): nobody to answer.
      exchange.status = 0;
      return void resetResponse(res);
    }
    if (error instanceof UpstreamBodyFailed) {
      // The client has the headers and part of the body: only a reset tells it the rest is missing.
      stream.state.responseCodeDetails = 'upstream_reset_after_response_started';
      log('warn', `${req.method} ${req.url}: ${error.message}; the response to the client was reset`);
      return void resetResponse(res);
    }
    // A bug here must cost one request, never the proxy.
    process.stderr.write(`${JSON.stringify({ level: 'error', msg: 'request failed', error: String((error as Error)?.stack ?? error) })}\n`);
    if (!res.headersSent) writeReply(res, plainReply(500, 'sluice: internal error\n'), exchange);
    else resetResponse(res);
  } finally {
    deadline.stop();
    stream.end();
    if (exchange.expired) stream.state.responseCodeDetails = exchange.expired;
    const ms = performance.now() - started;
    telemetry.request(state.config.name, exchange.grpc ? 'grpc' : req.httpVersion, exchange, ms);
    state.accessLog?.write(accessLogEntry(stream, req, exchange, ms, connection.source), filterFields(stream));
    if (state.spans && exchange.span) state.spans.add(finishedSpan(state, stream, req, exchange, ms));
  }
}

function finishedSpan(state: ListenerState, stream: HttpStream, req: Req, e: Exchange, ms: number) {
  const info = stream.state.info;
  const attributes: Record<string, string | number> = {
    'http.request.method': req.method ?? '',
    'url.path': (req.url ?? '').split('?')[0]!,
    'http.response.status_code': e.status,
    'network.protocol.version': req.httpVersion,
    'sluice.listener': state.config.name,
    'client.address': info.source?.address ?? '',
  };
  if (e.route) attributes['sluice.route'] = e.route;
  if (e.cluster) attributes['sluice.upstream_cluster'] = e.cluster;
  if (info.upstream) attributes['server.address'] = `${info.upstream.address}:${info.upstream.port}`;
  if (stream.state.responseCodeDetails) attributes['sluice.response_code_details'] = stream.state.responseCodeDetails;
  return { span: e.span!, name: `${req.method} ${e.route || 'no_route'}`, startMs: stream.state.startTime, durationMs: ms, attributes, error: e.status === 0 || e.status >= 500 };
}

/** Properties filters set under `sluice.access_log.<name>` (docs/properties.md), as access-log fields. */
const FILTER_FIELD = 'sluice\u0000access_log\u0000';
function* filterFields(stream: HttpStream): Generator<[string, string]> {
  for (const [key, value] of stream.state.properties) {
    if (key.startsWith(FILTER_FIELD)) yield [key.slice(FILTER_FIELD.length), Buffer.from(value).toString('utf8')];
  }
}

function accessLogEntry(stream: HttpStream, req: Req, e: Exchange, ms: number, peer: { address: string; port: number }) {
  const h = stream.state.requestHeaders;
  const upstream = stream.state.info.upstream;
  return {
    time: new Date(stream.state.startTime).toISOString(),
    method: req.method,
    path: req.url,
    authority: h?.get(':authority'),
    protocol: stream.state.info.protocol,
    status: e.status,
    response_code_details: stream.state.responseCodeDetails || undefined,
    duration_ms: Math.round(ms * 1000) / 1000,
    request_bytes: e.requestBytes,
    response_bytes: e.responseBytes,
    route: e.route || undefined,
    upstream_cluster: e.cluster || undefined,
    upstream_host: upstream ? `${upstream.address}:${upstream.port}` : undefined,
    request_id: h?.get('x-request-id'),
    trace_id: e.span?.traceId,
    span_id: e.span?.spanId,
    user_agent: req.headers['user-agent'],
    downstream_remote_address: `${peer.address}:${peer.port}`,
    x_forwarded_for: h?.get('x-forwarded-for'),
  };
}

async function exchangeThrough(state: ListenerState, stream: HttpStream, req: Req, res: Res, exchange: Exchange, tls: boolean): Promise<void> {
  const headers = requestHeaders(req, tls);
  exchange.grpc = headers.get('content-type')?.startsWith('application/grpc') ?? false;
  exchange.span = spanFor(headers.get('traceparent'));
  headers.set('traceparent', traceparentOf(exchange.span));
  const h2 = (req as Http2ServerRequest).stream;
  const hasBody = h2
    ? !h2.endAfterHeaders
    : req.headers['content-length'] !== undefined
      ? req.headers['content-length'] !== '0'
      : req.headers['transfer-encoding'] !== undefined;
  const headersDone = stream.requestHeaders(headers, !hasBody);
  if (headersDone instanceof Promise) {
    // A filter holds the request headers: until it lets go, the deadline is the timeout of the
    // route the request matches as it is now.
    const likely = state.router.route(headers);
    if (likely) exchange.deadline?.route(likely.timeoutMs, `timeoutMs of route "${likely.name}"`);
  }
  let out = await headersDone;
  if (finish(out, res, exchange)) return;

  const named = stream.state.property('sluice\u0000route');
  const route = named !== undefined ? state.router.named(named) : state.router.route(headers);
  if (!route) return respond(stream, res, exchange, plainReply(404, `sluice: no route matches ${headers.get(':method')} ${headers.get(':path')} on listener "${state.config.name}"\n`));
  exchange.route = route.name;
  exchange.deadline?.route(route.timeoutMs, `timeoutMs of route "${route.name}"`);
  // Known from here on, for the response filters of direct responses and redirects too.
  stream.state.info.routeName = route.name;
  const action = route.action;
  if (action.kind === 'direct') {
    return respond(stream, res, exchange, { status: action.status, headers: new HeaderMap([[':status', String(action.status)], ...Object.entries(action.headers)]), body: Buffer.from(action.body), details: 'direct_response', filter: '' });
  }
  if (action.kind === 'redirect') {
    return respond(stream, res, exchange, { status: action.status, headers: new HeaderMap([[':status', String(action.status)], ['location', action.location]]), body: EMPTY, details: 'redirect', filter: '' });
  }

  // A filter may pick the cluster (sluice.cluster), overriding the route's.
  const clusterName = stream.state.property('sluice\u0000cluster') ?? pickWeighted(action.clusters);
  exchange.cluster = clusterName;
  const cluster = state.clusters.get(clusterName);
  if (!cluster) return respond(stream, res, exchange, plainReply(503, `sluice: no cluster named "${clusterName}"\n`));
  const hashOn = cluster.config.hashOn;
  const hashKey = hashOn ? headers.get(hashOn.header) : undefined;
  // A filter may pin the endpoint (sluice.upstream_host); otherwise load balancing picks it.
  const pinned = stream.state.property('sluice\u0000upstream_host');
  const host = pinned !== undefined ? cluster.hosts.find((h) => h.address === pinned) : cluster.pick(undefined, hashKey);
  if (!host && pinned !== undefined) return respond(stream, res, exchange, plainReply(503, `sluice: a filter pinned the upstream host "${pinned}" (sluice.upstream_host), which is not an endpoint of cluster "${clusterName}"\n`));
  if (!host) return respond(stream, res, exchange, plainReply(503, `sluice: cluster "${clusterName}" has no endpoints\n`));
  stream.state.info.clusterName = clusterName;

  const open = cluster.circuitOpen();
  if (open) return respond(stream, res, exchange, plainReply(503, `sluice: cluster "${clusterName}" circuit breaker open: ${open}\n`));
  const policy = effectivePolicy(route.retryPolicy, stream.state.property('sluice\u0000retry_policy'), (m) => log('warn', m));
  const abort = new AbortController();
  // The client may have gone while the request filters ran (a reset right after the headers).
  if (exchange.clientGone) throw new Error('aborted');
  exchange.cancel = () => abort.abort(new Error('the client went away'));
  // A filter may set this request's timeout (sluice.timeout_ms, decimal milliseconds; 0: none).
  const timeoutOverride = stream.state.property('sluice\u0000timeout_ms');
  const timeoutMs = timeoutOverride !== undefined && /^\d{1,10}$/.test(timeoutOverride) ? Number(timeoutOverride) : route.timeoutMs;
  if (timeoutOverride !== undefined) exchange.deadline?.route(timeoutMs, 'sluice.timeout_ms, set by a filter');
  exchange.deadline?.onUpstream(() => abort.abort(new TimeoutError(timeoutMs)));
  const bufferLimit = state.config.bufferLimitBytes ?? DEFAULT_BUFFER_LIMIT_BYTES;
  // A filter that may resize the body would make its Content-Length wrong: body-length.ts decides it.
  const holdLength = hasBody && headers.has('content-length') && stream.mayChangeBody(false);
  const pump = hasBody ? new BodyPump(stream, req, exchange, policy.numRetries > 0 ? Math.min(REPLAY_LIMIT, bufferLimit) : 0, bufferLimit, holdLength) : undefined;
  const budget = cluster.retryBudget;
  const tried = new Set<UpstreamHost>();
  budget.active++;
  try {
    const bodyLength = pump?.length ? await Promise.race([pump.length, whenAborted(abort.signal)]) : undefined;
    // While the length was being decided: a filter answered, the client left, or the route timed out.
    if (pump?.answered) return void finish(pump.answered, res, exchange);
    if (abort.signal.aborted) return stream.isEnded ? undefined : respond(stream, res, exchange, upstreamFailure(abort.signal.reason, clusterName, host.address));
    for (let attempt = 1; ; attempt++) {
      const current = attempt === 1 || pinned !== undefined ? host : cluster.pick(tried, hashKey)!;
      tried.add(current);
      stream.state.info.upstream = { address: current.endpoint.host, port: current.endpoint.port };
      const sent = holdLength ? withLength(upstreamHeaders(headers, action.hostRewrite), bodyLength) : upstreamHeaders(headers, action.hostRewrite);
      // The upstream sees which try this is (Envoy's x-envoy-attempt-count).
      sent.push('x-sluice-attempt-count', String(attempt));
      const tryAbort = new AbortController();
      // The exchange may have been stopped during a retry's backoff (the route timeout).
      if (abort.signal.aborted) tryAbort.abort(abort.signal.reason);
      const onAbort = () => tryAbort.abort(abort.signal.reason);
      abort.signal.addEventListener('abort', onAbort);
      const perTry = policy.perTryTimeoutMs > 0 ? setTimeout(() => tryAbort.abort(new PerTryTimeout(policy.perTryTimeoutMs)), policy.perTryTimeoutMs) : undefined;
      current.active++;
      try {
        const upstream = current.pool.request({
          method: headers.get(':method') ?? 'GET',
          path: rewritePath(headers.get(':path') ?? '/', route, action.prefixRewrite),
          headers: sent,
          body: attempt === 1 ? pump?.stream : pump?.replay(),
          signal: tryAbort.signal,
        });
        upstream.catch(() => {});
        if (pump && attempt === 1) {
          // The body streams while the response is awaited: bidirectional streams (gRPC) need
          // both at once. A filter answering during the body, or a client that breaks off or
          // sends a malformed body, ends the try: the upstream never gets a partial request.
          pump.done.then(
            (replied) => replied && abort.abort(new BodyInterrupted(replied)),
            (error: unknown) => abort.abort(new BodyInterrupted(undefined, error)),
          );
        }
        let answer: UpstreamResponse | undefined;
        let failure: unknown;
        try {
          answer = await upstream;
        } catch (error) {
          failure = error;
        }
        const interrupted = abort.signal.reason instanceof BodyInterrupted ? abort.signal.reason : undefined;
        if (interrupted) {
          if (answer) await discard(answer.body);
          if (interrupted.reply) return void finish(interrupted.reply, res, exchange);
          throw interrupted.error;
        }
        if (!abort.signal.aborted) cluster.record(current, answer?.statusCode, failure);
        if (!abort.signal.aborted && attempt <= policy.numRetries && retriable(policy, answer?.statusCode, failure) && (!pump || pump.replay()) && budget.tryAcquire(cluster.config.circuitBreakers.maxRetries)) {
          try {
            const retryAfter = answer?.headers['retry-after'];
            if (answer) await discard(answer.body);
            await sleep(backoffMs(policy, attempt, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter));
          } finally {
            budget.release();
          }
          continue;
        }
        if (!answer) return respond(stream, res, exchange, upstreamFailure(abort.signal.reason ?? failure, clusterName, current.address));
        return await relayResponse(stream, answer, res, exchange, bufferLimit, cluster.config.protocol === 'http2');
      } finally {
        current.active--;
        if (perTry) clearTimeout(perTry);
        abort.signal.removeEventListener('abort', onAbort);
      }
    }
  } finally {
    budget.active--;
    exchange.deadline?.onUpstream(undefined);
  }
}

/** Bodies up to this size are kept so that a retry can send them again; larger ones are not retried. */
const REPLAY_LIMIT = 64 * 1024;

/**
 * Streams the request body through the request-body filters into the first try's upstream
 * request, and keeps a copy (up to a limit) for retries. `done` resolves with a local reply or
 * reset when a filter answers, undefined when the body is through (or the upstream request went
 * away and nobody reads the rest). Past `bufferLimit` bytes waiting for the upstream, it stops
 * reading the client until they drain.
 */
class BodyPump {
  readonly stream = new PassThrough();
  readonly done: Promise<Outcome | undefined>;
  /**
   * With `holdLength`: the upstream request waits for this, the Content-Length to send (the
   * filtered body's exact size, or undefined: none) as LengthHold decides it.
   */
  readonly length?: Promise<BodyLength>;
  private readonly hold?: LengthHold;
  /** A filter's local reply or reset during the body, once run has ended with one. */
  answered?: Outcome;
  private kept: Uint8Array[] | undefined = [];
  private keptBytes = 0;
  private complete = false;

  constructor(private readonly http: HttpStream, req: Req, exchange: Exchange, private readonly keepLimit: number, private readonly bufferLimit: number, holdLength: boolean) {
    if (keepLimit === 0) this.kept = undefined;
    if (holdLength) {
      let decided!: (length: BodyLength) => void;
      this.length = new Promise((resolve) => (decided = resolve));
      this.hold = new LengthHold(bufferLimit, (length, held) => {
        // At most the buffer limit (and one chunk) is held: written without waiting.
        for (const data of held) this.stream.write(data);
        decided(length);
      });
      this.done = this.run(req, exchange).then((outcome) => (this.answered = outcome)).finally(() => {
        // A filter's answer or a broken body: nothing more goes upstream, the request must not wait.
        this.hold!.cancel();
        decided(undefined);
      });
    } else {
      this.done = this.run(req, exchange);
    }
    this.done = this.done.catch((error) => {
      this.stream.destroy();
      throw error;
    });
    // The request path handles the outcome once it has started the upstream request.
    this.done.catch(() => {});
  }

  /** The whole body for another try, or undefined when it was not kept (too large, or not through yet). */
  replay(): Uint8Array | undefined {
    return this.complete && this.kept ? Buffer.concat(this.kept) : undefined;
  }

  private async run(req: Req, exchange: Exchange): Promise<Outcome | undefined> {
    const h2 = (req as Http2ServerRequest).stream !== undefined;
    let ended = false;
    for await (const { data, last } of bodyChunks(requestChunks(req), h2, () => Object.keys(req.trailers ?? {}).length > 0)) {
      exchange.requestBytes += data.byteLength;
      const out = await this.http.requestBody(data, last);
      if (out.kind !== 'continue') return out;
      if (!(await this.send(out.data))) return undefined;
      ended = last;
    }
    if (!ended) {
      const out = await this.http.requestBody(EMPTY, true);
      if (out.kind !== 'continue') return out;
      if (!(await this.send(out.data))) return undefined;
    }
    this.hold?.end(undefined);
    this.stream.end();
    this.complete = true;
    return undefined;
  }

  /** Passes data on; false when the upstream request is gone. */
  private async send(data: Uint8Array | undefined): Promise<boolean> {
    if (!data || data.byteLength === 0) return true;
    if (this.kept) {
      this.keptBytes += data.byteLength;
      if (this.keptBytes > this.keepLimit) this.kept = undefined;
      else this.kept.push(data);
    }
    if (this.hold?.add(data)) return true;
    const full = writeBounded(this.stream, data, this.bufferLimit);
    return full ? await full : true;
  }
}

/** Why a try ended while its request body was still streaming: a filter's answer, or the body's error. */
class BodyInterrupted extends Error {
  constructor(
    readonly reply: Outcome | undefined,
    readonly error?: unknown,
  ) {
    super('the request body was interrupted');
  }
}

class PerTryTimeout extends Error {
  override readonly name = 'PerTryTimeout';
  constructor(readonly ms: number) {
    super(`the upstream did not answer within the per-try timeout of ${ms} ms`);
  }
}

/** Resolves (with undefined) once `signal` is aborted. */
const whenAborted = (signal: AbortSignal) => new Promise<undefined>((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener('abort', () => resolve(undefined), { once: true })));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function log(level: string, msg: string): void {
  logLine(level as LogLevelName, msg);
}

async function relayResponse(stream: HttpStream, answer: UpstreamResponse, res: Res, exchange: Exchange, bufferLimit: number, h2: boolean): Promise<void> {
  const headers = new HeaderMap([[':status', String(answer.statusCode)]]);
  for (const [key, value] of Object.entries(answer.headers)) {
    if (HOP_BY_HOP.has(key) || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.add(key, v);
    else headers.add(key, value);
  }
  let out = await stream.responseHeaders(headers, answer.endAfterHeaders === true);
  if (out.kind !== 'continue') {
    abandon(answer.body);
    return void finish(out, res, exchange);
  }
  const status = (exchange.status = Number(headers.get(':status') ?? answer.statusCode));
  if (answer.endAfterHeaders) return endWithHeaders(res, status, downstreamHeaders(headers));
  const head = downstreamHeaders(headers);
  // A filter that may resize the body would make its Content-Length wrong: body-length.ts decides it.
  const hold =
    headers.has('content-length') && !bodiless(status) && stream.state.requestHeaders?.get(':method') !== 'HEAD' && stream.mayChangeBody(true)
      ? new LengthHold(bufferLimit, (length, held) => {
          // The client left, or the relay failed and a 500 went out instead.
          if (isClosed(res) || res.headersSent) return;
          res.writeHead(status, withLength(head, length));
          for (const data of held) res.write(data);
        })
      : undefined;
  if (!hold) res.writeHead(status, head);
  let ended = false;
  for await (const { data, last } of bodyChunks(upstreamChunks(answer.body), h2, () => Object.keys(answer.trailers).length > 0)) {
    out = await stream.responseBody(data, last);
    // A late local reply goes out whole while the head is held; once the client has the headers
    // it (like a reset) can only end the stream.
    if (out.kind !== 'continue') return void (hold?.cancel(), finish(out, res, exchange));
    if (out.data && out.data.byteLength > 0) {
      exchange.responseBytes += out.data.byteLength;
      if (hold?.add(out.data)) continue;
      // Past the buffer limit, the upstream body is not read until the client has taken it.
      const full = writeBounded(res, out.data, bufferLimit);
      // The client is gone: leaving the loop stops the upstream body.
      if (full && !(await full)) return;
    }
    ended = last;
  }
  const trailers = trailerMap(answer.trailers);
  // HTTP/2: the body's last chunk may have carried its end already (body-chunks.ts).
  out = trailers ? await stream.responseTrailers(trailers) : ended ? { kind: 'continue' } : await stream.responseBody(EMPTY, true);
  if (out.kind !== 'continue') return void (hold?.cancel(), finish(out, res, exchange));
  if (out.data) exchange.responseBytes += out.data.byteLength;
  const last = out.data && out.data.byteLength > 0 ? out.data : undefined;
  const sent = hold?.end(last, trailers === undefined) ?? false;
  if (trailers) res.addTrailers(downstreamTrailers(trailers));
  res.end(sent ? undefined : last);
}

/** The upstream's trailers as a map, or undefined when it sent none. */
function trailerMap(trailers: UpstreamResponse['trailers']): HeaderMap | undefined {
  let map: HeaderMap | undefined;
  for (const key in trailers) {
    const value = trailers[key];
    if (value === undefined) continue;
    map ??= new HeaderMap([]);
    for (const v of [value].flat()) map.add(key, v);
  }
  return map;
}

function downstreamTrailers(trailers: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  const raw = trailers.raw();
  for (let i = 0; i < raw.length; i += 2) out[raw[i]] = out[raw[i]] === undefined ? raw[i + 1] : `${out[raw[i]]}, ${raw[i + 1]}`;
  return out;
}

/** A response Sluice makes itself (no route, direct response, upstream failure): it too passes the response filters. */
async function respond(stream: HttpStream, res: Res, exchange: Exchange, reply: LocalReply): Promise<void> {
  stream.state.responseCodeDetails = reply.details;
  // The response filters see what the client will: no body on a 204 or 304.
  let body = bodiless(reply.status) ? EMPTY : reply.body;
  let out = await stream.responseHeaders(reply.headers, body.byteLength === 0);
  if (finish(out, res, exchange)) return;
  if (body.byteLength > 0) {
    out = await stream.responseBody(body, true);
    if (finish(out, res, exchange)) return;
    if (out.kind === 'continue' && out.data) body = out.data;
  }
  writeReply(res, { ...reply, status: Number(reply.headers.get(':status') ?? reply.status), body }, exchange);
}

/** The stream's deadline passed: answer (no response headers out yet) or reset, then let go of the filters and the upstream. */
function expire(stream: HttpStream, res: Res, exchange: Exchange, expiry: Expiry): void {
  exchange.expired = expiry.details;
  log('warn', `${stream.state.requestHeaders?.get(':method')} ${stream.state.requestHeaders?.get(':path')}: ${expiry.text.replace(/^sluice: /, '').trim()}`);
  try {
    if (!res.headersSent) writeReply(res, plainReply(expiry.status, expiry.text), exchange);
    else resetResponse(res);
  } catch (error) {
    // This runs in a timer: what throws here must cost this stream, never the process.
    log('error', `answering a stream past its deadline failed: ${String((error as Error)?.stack ?? error)}`);
    resetResponse(res);
  }
  stream.end();
  exchange.cancel?.();
}

/** Sends a local reply or resets; false when the outcome says go on. */
function finish(out: Outcome, res: Res, exchange: Exchange): boolean {
  if (out.kind === 'continue') return false;
  if (out.kind === 'reset') {
    resetResponse(res);
    return true;
  }
  writeReply(res, out.reply, exchange);
  return true;
}

function writeReply(res: Res, reply: LocalReply, exchange: Exchange): void {
  if (res.headersSent) return void resetResponse(res);
  if (exchange.grpc) return writeGrpcReply(res, reply, exchange);
  exchange.status = reply.status;
  const headers = downstreamHeaders(reply.headers, 'content-length');
  if (bodiless(reply.status)) {
    // RFC 9110: 1xx, 204 and 304 have no body, and 1xx and 204 no content-length either; a body a
    // direct response or filter gave one is dropped (content-length of a 304 would describe a
    // representation Sluice does not have).
    exchange.responseBytes = 0;
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  exchange.responseBytes = reply.body.byteLength;
  headers.push('content-length', String(reply.body.byteLength));
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}

/** Statuses whose responses never have a body (RFC 9110 §6.4.1). */
function bodiless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/**
 * A reply to a gRPC request is a gRPC status, as gRPC clients expect: HTTP 200 with grpc-status
 * (mapped from the HTTP status as gRPC specifies, unless the reply names one) and grpc-message,
 * and no body ("trailers-only").
 */
function writeGrpcReply(res: Res, reply: LocalReply, exchange: Exchange): void {
  exchange.status = 200;
  exchange.responseBytes = 0;
  const headers: string[] = [];
  const given = downstreamHeaders(reply.headers, 'content-length');
  for (let i = 0; i < given.length; i += 2) {
    if (given[i] !== 'content-type' && given[i] !== 'grpc-status' && given[i] !== 'grpc-message') headers.push(given[i]!, given[i + 1]!);
  }
  const message = Buffer.from(reply.body).toString('utf8').trim();
  headers.push('content-type', 'application/grpc', 'grpc-status', reply.headers.get('grpc-status') ?? String(grpcStatusOf(reply.status)), 'grpc-message', grpcPercentEncode(message));
  endWithHeaders(res, 200, headers);
}

/** grpc-message's encoding: bytes outside printable ASCII, and "%", as %XX of their UTF-8. */
function grpcPercentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** gRPC's mapping of HTTP statuses to gRPC status codes. */
function grpcStatusOf(http: number): number {
  switch (http) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

function plainReply(status: number, text: string): LocalReply {
  return { status, headers: new HeaderMap([[':status', String(status)], ['content-type', 'text/plain']]), body: Buffer.from(text), details: 'sluice', filter: '' };
}

class TimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`the upstream did not answer within the route's timeout of ${ms} ms`);
  }
}

function upstreamFailure(error: unknown, cluster: string, address: string): LocalReply {
  const e = error as { code?: string; message?: string; name?: string };
  if (e instanceof TimeoutError || e instanceof PerTryTimeout || e?.name === 'HeadersTimeoutError') {
    return plainReply(504, `sluice: upstream ${address} of cluster "${cluster}" timed out: ${e.message}\n`);
  }
  if (e?.code === 'ECONNREFUSED' || e?.code === 'UND_ERR_CONNECT_TIMEOUT' || e?.code === 'ENOTFOUND' || e?.code === 'EHOSTUNREACH') {
    return plainReply(503, `sluice: upstream connect error to ${address} of cluster "${cluster}" (${e.code}); is the service running and listening there?\n`);
  }
  return plainReply(502, `sluice: upstream ${address} of cluster "${cluster}" failed: ${e?.code ?? ''} ${e?.message ?? String(error)}\n`);
}

function requestHeaders(req: Req, tls: boolean): HeaderMap {
  const scheme = tls ? 'https' : 'http';
  const headers = new HeaderMap([
    [':method', req.method ?? 'GET'],
    [':path', req.url ?? '/'],
    [':authority', (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? ''],
    [':scheme', scheme],
  ]);
  // Headers the client names in Connection are hop-by-hop too.
  const named = req.headers.connection?.toLowerCase().split(',').map((s) => s.trim());
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i].toLowerCase();
    if (key.charCodeAt(0) === 58 /* ':' */ || key === 'host' || HOP_BY_HOP.has(key) || named?.includes(key)) continue;
    // node's server has already answered 100 Continue (as Envoy does by default); undici refuses
    // the header, and the upstream must not answer it again.
    if (key === 'expect' && /^100-continue$/i.test(raw[i + 1].trim())) continue;
    // TE is hop-by-hop, but "trailers" says the client takes trailers: gRPC needs it through.
    if (key === 'te') {
      if (/\btrailers\b/i.test(raw[i + 1])) headers.add('te', 'trailers');
      continue;
    }
    headers.add(key, raw[i + 1]);
  }
  const peer = downstreamSocket(req).remoteAddress ?? '';
  const forwarded = headers.get('x-forwarded-for');
  headers.set('x-forwarded-for', forwarded ? `${forwarded}, ${peer}` : peer);
  headers.set('x-forwarded-proto', scheme);
  if (!headers.has('x-request-id')) headers.set('x-request-id', randomUUID());
  return headers;
}

function upstreamHeaders(headers: HeaderMap, hostRewrite: string | undefined): string[] {
  const out: string[] = ['host', hostRewrite ?? headers.get(':authority') ?? ''];
  const raw = headers.raw();
  for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 58 /* ':' */ && !HOP_BY_HOP.has(raw[i])) out.push(raw[i], raw[i + 1]);
  return out;
}

/** The headers to write to the client: no pseudo-headers, no hop-by-hop ones, nor `leaveOut`. */
function downstreamHeaders(headers: HeaderMap, leaveOut?: string): string[] {
  const out: string[] = [];
  const raw = headers.raw();
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i];
    if (key.charCodeAt(0) !== 58 && !HOP_BY_HOP.has(key) && key !== leaveOut) out.push(key, raw[i + 1]);
  }
  return out;
}

function rewritePath(path: string, route: RouteConfig, prefixRewrite: string | undefined): string {
  const prefix = route.match.prefix;
  if (prefixRewrite === undefined || prefix === undefined || !path.startsWith(prefix)) return path;
  return prefixRewrite + path.slice(prefix.length);
}

type ConnectionFacts = Required<Pick<StreamInfo, 'source' | 'destination' | 'connection'>> & { tls: boolean };

/** What filters see of the downstream connection, worked out once per connection. */
const connections = new WeakMap<Socket, ConnectionFacts>();
let nextConnection = 1;
function connectionFacts(req: Req): ConnectionFacts {
  const socket = downstreamSocket(req);
  let facts = connections.get(socket);
  if (facts === undefined) {
    const tls = tlsFacts(socket);
    facts = {
      source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      destination: { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
      connection: { id: nextConnection++, ...tls },
      tls: tls.tlsVersion !== undefined,
    };
    connections.set(socket, facts);
  }
  return facts;
}
