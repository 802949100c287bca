// The chunks of a body as the filters get them, each with end_of_stream set where Envoy's codecs
// set it. HTTP/1.1: every chunk with false, then an empty chunk with true (the message's end).
// HTTP/2: the chunk of the DATA frame that carries END_STREAM comes with true, once.


export interface BodyChunk {
  readonly data: Buffer;
  /** The body ends with this chunk (end_of_stream = true). */
  readonly last: boolean;
}

/**
 * The chunks of `source`. With `endsWithFrame` (HTTP/2), each chunk is checked for being the last
 * before it is handed on. node:http2 does not show a DATA frame's END_STREAM flag, but it delivers
 * a frame's data and the stream's end from the same read of the socket, before the event loop
 * reaches its check phase: so a chunk waits at most for one setImmediate, and if the end came
 * by then it is the last one. A chunk is never held until the next one arrives: a gRPC stream's
 * messages go on at once with false, and an END_STREAM frame that comes later, on its own (an
 * empty DATA frame), gives an empty last chunk, as in Envoy.
 * `hasTrailers`: the body ended with trailers; then no chunk is the last (the trailers end it).
 * Leaving the loop early ends (destroys) the source, as a `for await` over it does.
 */
export async function* bodyChunks(source: AsyncIterable<Buffer>, endsWithFrame: boolean, hasTrailers: () => boolean = () => false): AsyncGenerator<BodyChunk, void> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let finished = false;
  try {
    let current = await it.next();
    while (!current.done) {
      if (!endsWithFrame) {
        yield { data: current.value, last: false };
        current = await it.next();
        continue;
      }
      const next = it.next();
      // Marked handled: if the source fails while we wait for the tick, the await below rethrows.
      next.catch(() => {});
      const first = await Promise.race([next, afterThisRead()]);
      if (first !== TICK && first.done && !hasTrailers()) {
        finished = true;
        yield { data: current.value, last: true };
        return;
      }
      yield { data: current.value, last: false };
      current = await next;
    }
    finished = true;
  } finally {
    if (!finished) await it.return?.();
  }
}

const TICK = Symbol('tick');
const afterThisRead = () => new Promise<typeof TICK>((resolve) => setImmediate(resolve, TICK));
