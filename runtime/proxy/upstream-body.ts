// An HTTP/1.1 upstream's response body as undici's dispatch hands it over, read by the relay as an
// async iterable of the chunks the response filters get (body-chunks.ts: HTTP/1.1 chunks are
// never the last; the end comes after them). It stands in for the Readable that undici's request() would build
// (and the async iterator over it): one queue, one waiting reader, undici paused while the reader
// is behind by more than HIGH_WATER bytes. A failure while the body streams comes out of the
// iteration as an UpstreamBodyFailed; leaving the loop early aborts the rest of the response.

import type { Dispatcher } from 'undici';
import type { BodyChunk } from './body-chunks.ts';
import { UpstreamBodyFailed } from './stream-reset.ts';

/** Bytes received and not yet read past which undici stops reading the upstream's socket. */
export const HIGH_WATER = 64 * 1024;

/** At most this much of a body nobody reads is read to keep its connection; a longer one closes it. */
export const DISCARD_LIMIT = 128 * 1024;

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

export class DispatchedBody implements AsyncIterable<BodyChunk>, AsyncIterator<BodyChunk> {
  private readonly queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private ended = false;
  private failure?: UpstreamBodyFailed;
  private waiting?: { resolve(r: IteratorResult<BodyChunk>): void; reject(e: unknown): void };
  /** Thrown away as it comes (discard): undefined while the body is read. */
  private discarding?: { left: number; done(): void };

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  /** From undici: a chunk of the body. */
  push(chunk: Buffer): void {
    if (this.discarding) {
      this.discarding.left -= chunk.byteLength;
      if (this.discarding.left < 0) this.controller.abort(new Error('discarded'));
      return;
    }
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      return waiting.resolve({ done: false, value: { data: chunk, last: false } });
    }
    this.queue.push(chunk);
    this.queued += chunk.byteLength;
    if (this.queued >= HIGH_WATER) this.controller.pause();
  }

  /** From undici: the body is complete. */
  end(): void {
    this.ended = true;
    this.settleDiscard();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve(DONE);
  }

  /** From undici: the body broke off. */
  fail(error: unknown): void {
    if (this.ended || this.failure) return;
    this.failure = new UpstreamBodyFailed(error);
    this.settleDiscard();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(this.failure);
  }

  [Symbol.asyncIterator](): AsyncIterator<BodyChunk> {
    return this;
  }

  next(): Promise<IteratorResult<BodyChunk>> {
    if (this.head < this.queue.length) {
      const chunk = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Buffer;
      this.queued -= chunk.byteLength;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
        this.controller.resume();
      }
      return Promise.resolve({ done: false, value: { data: chunk, last: false } });
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** The reader left early: the rest of the response is not wanted (its connection closes). */
  return(): Promise<IteratorResult<BodyChunk>> {
    this.abandon();
    return Promise.resolve(DONE);
  }

  /** Stops the body: the rest of the upstream response is aborted. */
  abandon(): void {
    this.queue.length = 0;
    this.head = 0;
    if (!this.ended && !this.failure) this.controller.abort(new Error('the response body was abandoned'));
  }

  /** Throws the body away, keeping the connection when the rest is short (DISCARD_LIMIT). */
  discard(): Promise<void> {
    this.queue.length = 0;
    this.head = 0;
    this.queued = 0;
    if (this.ended || this.failure) return Promise.resolve();
    return new Promise((done) => {
      this.discarding = { left: DISCARD_LIMIT, done };
      this.controller.resume();
    });
  }

  private settleDiscard(): void {
    this.discarding?.done();
  }
}
