// The request body: streamed through the request-body filters into the first try's upstream
// request (a copy kept, up to a limit, for retries), with the Content-Length held back when a
// filter may resize the body. Waits for that length, when held, before any try starts.

import type { Http2ServerRequest } from 'node:http2';
import { PassThrough } from 'node:stream';
import type { HttpStream, Outcome } from '../../host/http-stream.ts';
import { EMPTY } from '../../host/stream.ts';
import { writeBounded } from '../backpressure.ts';
import { bodyChunks } from '../body-chunks.ts';
import { LengthHold, type BodyLength } from '../body-length.ts';
import type { DownstreamRequest } from '../downstream.ts';
import type { StopSignal } from '../stop-signal.ts';
import { requestChunks } from '../stream-reset.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { finish, upstreamFailureReply } from './local-reply.ts';
import { respond } from './relay.ts';
import { retryPolicy } from './retry.ts';

/** Bodies up to this size are kept so that a retry can send them again; larger ones are not retried. */
const REPLAY_LIMIT = 64 * 1024;

export const requestBody: Layer<Exchange> = (next) =>
  async function requestBody(x) {
    if (!x.hasBody) return next(x);
    const { stream, bufferLimit } = x;
    const abort = x.abort!;
    // A filter that may resize the body would make its Content-Length wrong: body-length.ts decides it.
    x.holdLength = x.headers!.has('content-length') && stream.mayChangeBody(false);
    const pump = (x.pump = new BodyPump(stream, x.req, x, retryPolicy(x).numRetries > 0 ? Math.min(REPLAY_LIMIT, bufferLimit) : 0, bufferLimit, x.holdLength));
    if (pump.length) {
      x.bodyLength = await Promise.race([pump.length, whenAborted(abort)]);
      // While the length was being decided: a filter answered, the client left, or the route timed out.
      if (pump.answered) return void finish(pump.answered, x.res, x);
      if (abort.aborted) return stream.isEnded ? undefined : respond(x, upstreamFailureReply(abort.reason, x.cluster, x.host!.address));
    }
    return next(x);
  };

/** Resolves (with undefined) once `signal` is aborted. */
const whenAborted = (signal: StopSignal) => new Promise<undefined>((resolve) => (signal.aborted ? resolve(undefined) : signal.addEventListener('abort', () => resolve(undefined), { once: true })));

/**
 * Streams the request body through the request-body filters into the first try's upstream
 * request, and keeps a copy (up to a limit) for retries. `done` resolves with a local reply or
 * reset when a filter answers, undefined when the body is through (or the upstream request went
 * away and nobody reads the rest). Past `bufferLimit` bytes waiting for the upstream, it stops
 * reading the client until they drain.
 */
export class BodyPump {
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

  constructor(
    private readonly http: HttpStream,
    req: DownstreamRequest,
    counts: { requestBytes: number },
    private readonly keepLimit: number,
    private readonly bufferLimit: number,
    holdLength: boolean,
  ) {
    if (keepLimit === 0) this.kept = undefined;
    if (holdLength) {
      let decided!: (length: BodyLength) => void;
      this.length = new Promise((resolve) => (decided = resolve));
      this.hold = new LengthHold(bufferLimit, (length, held) => {
        // At most the buffer limit (and one chunk) is held: written without waiting.
        for (const data of held) this.stream.write(data);
        decided(length);
      });
      this.done = this.run(req, counts)
        .then((outcome) => (this.answered = outcome))
        .finally(() => {
          // A filter's answer or a broken body: nothing more goes upstream, the request must not wait.
          this.hold!.cancel();
          decided(undefined);
        });
    } else {
      this.done = this.run(req, counts);
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

  private async run(req: DownstreamRequest, counts: { requestBytes: number }): Promise<Outcome | undefined> {
    const h2 = (req as Http2ServerRequest).stream !== undefined;
    let ended = false;
    for await (const { data, last } of bodyChunks(requestChunks(req), h2, () => Object.keys(req.trailers ?? {}).length > 0)) {
      counts.requestBytes += data.byteLength;
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
