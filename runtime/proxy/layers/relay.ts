// The one way a response reaches the client: through the response filters (headers, body chunks,
// trailers), whether it came from the upstream (streamed, with backpressure and a held
// Content-Length when a filter may resize the body) or Sluice made it (a local reply, written
// whole). As the innermost handler it relays what the try got: the answer, or a reply naming the failure.

import { EMPTY } from '../../host/stream.ts';
import type { HeaderMap } from '../../host/header-map.ts';
import type { LocalReply } from '../../host/http-stream.ts';
import { isClosed, writeBounded } from '../backpressure.ts';
import { bodyChunks } from '../body-chunks.ts';
import { LengthHold, withLength } from '../body-length.ts';
import { endWithHeaders } from '../downstream.ts';
import { upstreamChunks } from '../stream-reset.ts';
import { DispatchedBody } from '../upstream-body.ts';
import { abandon, type UpstreamResponse } from '../upstream-pool.ts';
import { classifyUpstreamFailure } from '../upstream-errors.ts';
import type { Handler } from './compose.ts';
import type { Exchange } from './context.ts';
import { downstreamHeaders, downstreamTrailers, responseHeaders, trailerMap } from './headers.ts';
import { bodiless, finish, upstreamFailureReply, writeReply } from './local-reply.ts';

/** Relays the answer the try got, or replies with what failed. */
export const relay: Handler<Exchange> = async function relay(x) {
  if (x.answer) return sendUpstreamResponse(x, x.answer);
  if (x.failure !== undefined) {
    x.errorCode = classifyUpstreamFailure(x.failure);
    return respond(x, upstreamFailureReply(x.failure, x.cluster, x.current?.address ?? ''));
  }
};

/** What passes the response filters: a head, then body chunks, then maybe trailers. */
interface ResponseSource {
  readonly headers: HeaderMap;
  readonly status: number;
  /** No body follows the head. */
  readonly endOfStream: boolean;
  chunks(): AsyncIterable<{ data: Uint8Array; last: boolean }>;
  trailers(): HeaderMap | undefined;
  /** A filter answered instead: what is left of the source is not read. */
  abandon(): void;
}

/** Where the filtered response goes: streamed to the client, or gathered into one local reply. */
interface ResponseSink {
  head(status: number, headers: HeaderMap): void;
  /** False: the client is gone, stop. */
  data(data: Uint8Array): boolean | Promise<boolean>;
  end(last: Uint8Array | undefined, trailers: HeaderMap | undefined): void;
  /** A filter answered late: drop what is held. */
  cancel(): void;
}

/** Passes a response through the response filters into `sink`. */
async function throughResponseFilters(x: Exchange, source: ResponseSource, sink: ResponseSink): Promise<void> {
  const { stream, res } = x;
  let out = await stream.responseHeaders(source.headers, source.endOfStream);
  if (out.kind !== 'continue') {
    source.abandon();
    return void finish(out, res, x);
  }
  sink.head(Number(source.headers.get(':status') ?? source.status), source.headers);
  if (source.endOfStream) return sink.end(undefined, undefined);
  let ended = false;
  for await (const { data, last } of source.chunks()) {
    out = await stream.responseBody(data, last);
    // A late local reply goes out whole while the head is held; once the client has the headers
    // it (like a reset) can only end the stream.
    if (out.kind !== 'continue') return void (sink.cancel(), finish(out, res, x));
    if (out.data && out.data.byteLength > 0 && !(await sink.data(out.data))) return;
    ended = last;
  }
  const trailers = source.trailers();
  // HTTP/2: the body's last chunk may have carried its end already (body-chunks.ts).
  out = trailers ? await stream.responseTrailers(trailers) : ended ? { kind: 'continue' } : await stream.responseBody(EMPTY, true);
  if (out.kind !== 'continue') return void (sink.cancel(), finish(out, res, x));
  sink.end(out.data && out.data.byteLength > 0 ? out.data : undefined, trailers);
}

/** A response Sluice makes itself (no route, direct response, upstream failure): it too passes the response filters. */
export function respond(x: Exchange, reply: LocalReply): Promise<void> {
  x.stream.state.responseCodeDetails = reply.details;
  // The response filters see what the client will: no body on a 204 or 304.
  const body = bodiless(reply.status) ? EMPTY : reply.body;
  const parts: Uint8Array[] = [];
  let status = reply.status;
  return throughResponseFilters(
    x,
    {
      headers: reply.headers,
      status: reply.status,
      endOfStream: body.byteLength === 0,
      chunks: () => [{ data: body, last: true }] as unknown as AsyncIterable<{ data: Uint8Array; last: boolean }>,
      trailers: () => undefined,
      abandon: () => {},
    },
    {
      head: (s) => void (status = s),
      data: (data) => (parts.push(data), true),
      end: (last) => {
        if (last) parts.push(last);
        const whole = parts.length === 1 ? parts[0]! : parts.length === 0 ? EMPTY : Buffer.concat(parts);
        writeReply(x.res, { ...reply, status, body: whole }, x);
      },
      cancel: () => {},
    },
  );
}

/** Streams the upstream's response through the response filters to the client. */
function sendUpstreamResponse(x: Exchange, answer: UpstreamResponse): Promise<void> {
  const { res, stream, bufferLimit } = x;
  const h2 = x.upstreamCluster!.config.protocol === 'http2';
  let hold: LengthHold | undefined;
  let head: string[] = [];
  let status = 0;
  return throughResponseFilters(
    x,
    {
      headers: responseHeaders(answer),
      status: answer.statusCode,
      endOfStream: answer.endAfterHeaders === true,
      chunks: () => (answer.body instanceof DispatchedBody ? answer.body : bodyChunks(upstreamChunks(answer.body), h2, () => Object.keys(answer.trailers).length > 0)),
      trailers: () => trailerMap(answer.trailers),
      abandon: () => abandon(answer.body),
    },
    {
      head: (s, headers) => {
        status = x.status = s;
        head = downstreamHeaders(headers);
        if (answer.endAfterHeaders) return;
        // A filter that may resize the body would make its Content-Length wrong: body-length.ts decides it.
        hold =
          headers.has('content-length') && !bodiless(status) && stream.state.requestHeaders?.get(':method') !== 'HEAD' && stream.mayChangeBody(true)
            ? new LengthHold(bufferLimit, (length, held) => {
                // The client left, or the relay failed and a 500 went out instead.
                if (isClosed(res) || res.headersSent) return;
                res.writeHead(status, withLength(head, length));
                for (const data of held) res.write(data);
              })
            : undefined;
        if (!hold) res.writeHead(status, head);
      },
      data: (data) => {
        x.responseBytes += data.byteLength;
        if (hold?.add(data)) return true;
        // Past the buffer limit, the upstream body is not read until the client has taken it.
        // The client is gone: leaving the loop stops the upstream body.
        return writeBounded(res, data, bufferLimit) ?? true;
      },
      end: (last, trailers) => {
        if (answer.endAfterHeaders) return endWithHeaders(res, status, head);
        if (last) x.responseBytes += last.byteLength;
        const sent = hold?.end(last, trailers === undefined) ?? false;
        if (trailers) res.addTrailers(downstreamTrailers(trailers));
        res.end(sent ? undefined : last);
      },
      cancel: () => hold?.cancel(),
    },
  );
}
