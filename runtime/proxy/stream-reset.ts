// How a stream ends early on the client's side: telling that the client left before its response
// was complete, noticing a request body the client broke off, and resetting a response that
// cannot complete so that the client sees it failed (HTTP/2: RST_STREAM with an error code, never
// NO_ERROR; HTTP/1.1: the connection closes without a clean end of the body).

import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { DownstreamRequest, DownstreamResponse } from './downstream.ts';
import { markResetByProxy } from './h2-reset-guard.ts';

/** In a response's 'close' listener: true when the response did not complete (the client left, or it was reset). */
export function responseIncomplete(res: DownstreamResponse): boolean {
  const stream = (res as unknown as Http2ServerResponse).stream;
  // After a client's RST_STREAM node ends the stream's writable side itself, so writableFinished
  // reads true; `aborted` says the stream closed before we ended it.
  if (stream) return stream.aborted;
  return !res.writableFinished;
}

/**
 * Ends a response that cannot complete, so that the client cannot take it for a whole one: HTTP/2
 * RST_STREAM INTERNAL_ERROR (as Envoy), HTTP/1.1 the connection closed.
 */
export function resetResponse(res: DownstreamResponse): void {
  const stream = (res as unknown as Http2ServerResponse).stream;
  // A response already ended whole (an answer the stream's deadline gave) has nothing to reset.
  if ((res as { writableEnded?: boolean }).writableEnded || stream?.writableEnded) return;
  if (!stream) return void res.destroy();
  if (stream.closed || stream.destroyed) return;
  markResetByProxy(stream);
  // Not stream.close(code): node sends END_STREAM (a clean end of the body) before that reset.
  // destroy() with an error resets with INTERNAL_ERROR and nothing before it. (A client already
  // gone needs no CANCEL: its stream is closed.)
  stream.destroy(new ResponseReset());
}

class ResponseReset extends Error {
  constructor() {
    super('the response was reset');
  }
}

/** The client broke its request off (an HTTP/2 RST_STREAM mid-body): what it sent is not the whole body. */
export class RequestAborted extends Error {
  readonly code = 'ECONNRESET';
  constructor() {
    super('aborted');
  }
}

/**
 * The request body's chunks; throws RequestAborted when the client broke the body off. An HTTP/2
 * request reset mid-body ends its readable side as if the body were complete, with only its
 * `aborted` flag telling otherwise.
 */
export async function* requestChunks(req: DownstreamRequest): AsyncGenerator<Buffer> {
  for await (const chunk of req) yield chunk as Buffer;
  if ((req as Http2ServerRequest).stream !== undefined && (req as Http2ServerRequest).aborted) throw new RequestAborted();
}

/** The upstream failed while its response body was being relayed (a reset, a dropped connection, the route timeout). */
export class UpstreamBodyFailed extends Error {
  constructor(cause: unknown) {
    super(`the upstream response broke off: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/**
 * The upstream response body's chunks; a failure while reading it is an UpstreamBodyFailed. An
 * HTTP/2 upstream stream reset with CANCEL (or NO_ERROR) ends like a whole body, without an
 * error: its reset code tells. (NO_ERROR is only allowed once the response is complete.)
 */
export async function* upstreamChunks(body: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of body) yield chunk as Buffer;
  } catch (error) {
    throw new UpstreamBodyFailed(error);
  }
  const rstCode = (body as { rstCode?: number }).rstCode;
  if (rstCode !== undefined && rstCode !== http2.constants.NGHTTP2_NO_ERROR) throw new UpstreamBodyFailed(new Error(`the HTTP/2 stream was reset (code ${rstCode})`));
}
