// A request's arrival: its Exchange, filter stream and deadlines are made, `sluice:proxy:request-start`
// is published, and the listener's request path (path.ts) runs it.

import type { Socket } from 'node:net';
import { log } from '../../log.ts';
import { DEFAULT_BUFFER_LIMIT_BYTES } from '../backpressure.ts';
import { downstreamSocket, tlsFacts, type DownstreamRequest, type DownstreamResponse } from '../downstream.ts';
import { destinationOf } from '../original-destination.ts';
import { DEFAULT_STREAM_IDLE_TIMEOUT_MS, StreamDeadline, type Expiry } from '../stream-deadline.ts';
import { resetResponse, responseIncomplete } from '../stream-reset.ts';
import type { Telemetry } from '../telemetry.ts';
import type { ConnectionFacts, Exchange, ListenerState } from './context.ts';
import { requestStart } from './diagnostics.ts';
import { plainReply, writeReply } from './local-reply.ts';
import { buildRequestPath } from './path.ts';

/** Runs one request on a listener's state (the snapshot current when it arrived). */
export async function proxyRequest(state: ListenerState, telemetry: Telemetry, req: DownstreamRequest, res: DownstreamResponse): Promise<void> {
  const started = performance.now();
  const connection = connectionFacts(req);
  const stream = state.chain.stream({ ...connection, protocol: req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}` });
  const x: Exchange = {
    state,
    telemetry,
    req,
    res,
    stream,
    connection,
    started,
    status: 0,
    requestBytes: 0,
    responseBytes: 0,
    cluster: '',
    route: '',
    grpc: false,
    bufferLimit: state.config.bufferLimitBytes ?? DEFAULT_BUFFER_LIMIT_BYTES,
    attempt: 0,
  };
  if (requestStart.hasSubscribers) requestStart.publish({ listener: state.config.name, request: req });
  x.deadline = new StreamDeadline(
    {
      progress: () => x.requestBytes + x.responseBytes + (res.headersSent ? 1 : 0),
      heldBy: () => stream.heldBy,
      expire: (expiry) => expire(x, expiry),
      timedOut: (timeout) => telemetry.streamTimedOut(state.config.name, timeout),
    },
    started,
    state.config.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    state.config.name,
  );
  // A client that leaves before its answer (HTTP/1.1 disconnect, HTTP/2 RST_STREAM) ends the
  // stream at once (a filter holding it, e.g. a fault delay, lets go) and the upstream request is
  // aborted.
  res.once('close', () => {
    if (!responseIncomplete(res)) return;
    x.clientGone = true;
    stream.end();
    x.cancel?.();
  });
  await (state.path ??= buildRequestPath())(x);
}

/** The stream's deadline passed: answer (no response headers out yet) or reset, then let go of the filters and the upstream. */
function expire(x: Exchange, expiry: Expiry): void {
  const { stream, res } = x;
  x.expired = expiry.details;
  log('warn', `${stream.state.requestHeaders?.get(':method')} ${stream.state.requestHeaders?.get(':path')}: ${expiry.text.replace(/^sluice: /, '').trim()}`);
  try {
    if (!res.headersSent) writeReply(res, plainReply(expiry.status, expiry.text), x);
    else resetResponse(res);
  } catch (error) {
    // This runs in a timer: what throws here must cost this stream, never the process.
    log('error', `answering a stream past its deadline failed: ${String((error as Error)?.stack ?? error)}`);
    resetResponse(res);
  }
  stream.end();
  x.cancel?.();
}

/** What filters see of the downstream connection, worked out once per connection. */
const connections = new WeakMap<Socket, ConnectionFacts>();
let nextConnection = 1;
function connectionFacts(req: DownstreamRequest): ConnectionFacts {
  const socket = downstreamSocket(req);
  let facts = connections.get(socket);
  if (facts === undefined) {
    const tls = tlsFacts(socket);
    facts = {
      source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      destination: destinationOf(socket),
      connection: { id: nextConnection++, ...tls },
      tls: tls.tlsVersion !== undefined,
    };
    connections.set(socket, facts);
  }
  return facts;
}
