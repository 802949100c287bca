// Backpressure for the bodies the proxy passes on: at most a stream's buffer limit waits in a
// destination's buffer; past it the writer waits for the destination to drain, and stops reading
// its source meanwhile (Envoy's per-stream buffer limit and its high/low watermarks).

import { CONFIG_DEFAULTS } from '../config/index.ts';

/** Envoy's default per_connection_buffer_limit_bytes, which Envoy also gives each stream. */
export const DEFAULT_BUFFER_LIMIT_BYTES = CONFIG_DEFAULTS.bufferLimitBytes;

/** What a body is written to: a downstream response, or the request body stream an upstream reads. */
export interface BodySink {
  write(chunk: Uint8Array): boolean;
  readonly writableLength: number;
  readonly destroyed?: boolean;
  /** HTTP/2 responses: their stream (the response object itself has no `destroyed`). */
  readonly stream?: { readonly destroyed: boolean };
  once(event: 'drain' | 'close', listener: () => void): unknown;
  removeListener(event: 'drain' | 'close', listener: () => void): unknown;
}

/**
 * Writes `chunk` to `sink`. Returns undefined while less than `limit` bytes wait in the sink (the
 * caller goes on at once); otherwise a promise that resolves true once the sink has drained, or
 * false when it closed first (nobody will read the rest: the caller stops).
 */
export function writeBounded(sink: BodySink, chunk: Uint8Array, limit: number): Promise<boolean> | undefined {
  // write() returning false is what makes the sink emit 'drain' later; only then may we wait for it.
  if (sink.write(chunk) || sink.writableLength < limit) return undefined;
  return drained(sink);
}

/** The sink is closed: nothing written to it will be read (HTTP/1.1 or HTTP/2 response, or a stream). */
export function isClosed(sink: object): boolean {
  const s = sink as Pick<BodySink, 'destroyed' | 'stream'>;
  return s.destroyed === true || s.stream?.destroyed === true;
}

/** Resolves true on the sink's next 'drain', false if it closes (or is already destroyed) first. */
export function drained(sink: BodySink): Promise<boolean> {
  if (isClosed(sink)) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const onDrain = () => settle(true);
    const onClose = () => settle(false);
    const settle = (ok: boolean) => {
      sink.removeListener('drain', onDrain);
      sink.removeListener('close', onClose);
      resolve(ok);
    };
    sink.once('drain', onDrain);
    sink.once('close', onClose);
  });
}
