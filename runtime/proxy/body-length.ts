// The framing of a body that a filter may resize, when it came with a Content-Length: the length
// goes on only when the whole filtered body is known before any of it has to; otherwise the body
// goes on without it (chunked on HTTP/1.1), never with a length that does not match.

/** What to do with the Content-Length of a held body: its exact filtered size, or none. */
export type BodyLength = number | undefined;

/**
 * Holds the first data the filters let through, without the message's head having gone out yet.
 * The decision falls when the body ends (the exact length), or as soon as the body would have to
 * wait: once the read that brought the held data is processed (one setImmediate) and the body has
 * not ended, or once more than `limit` bytes are held (no length). A body that arrives at once,
 * or that a filter buffers to its end, so keeps an exact Content-Length; a streamed one goes on
 * at once, without. `start` sends the head with that decision, then the held data.
 */
export class LengthHold {
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private timer?: NodeJS.Immediate;
  private decided = false;

  constructor(
    private readonly limit: number,
    private readonly start: (length: BodyLength, held: Uint8Array[]) => void,
  ) {}

  /** Still holding: the head has not gone out. */
  get open(): boolean {
    return !this.decided;
  }

  /** Data the filters let through. True when it is held; false once the head is out (send it yourself). */
  add(data: Uint8Array): boolean {
    if (this.decided) return false;
    this.held.push(data);
    this.heldBytes += data.byteLength;
    if (this.heldBytes > this.limit) this.decide(undefined);
    else this.timer ??= setImmediate(() => this.decide(undefined));
    return true;
  }

  /**
   * The body ended, with `last` as its final data. True when this sent the head and everything held
   * (the caller only ends the message); false when the head was already out. `exact` false: the
   * length is not to be given even so (trailers follow, which HTTP/1.1 carries only when chunked).
   */
  end(last: Uint8Array | undefined, exact = true): boolean {
    if (this.decided) return false;
    if (last && last.byteLength > 0) {
      this.held.push(last);
      this.heldBytes += last.byteLength;
    }
    this.decide(exact ? this.heldBytes : undefined);
    return true;
  }

  /** The stream is over (a local reply, a reset, an error): nothing will be sent through this. */
  cancel(): void {
    if (this.timer) clearImmediate(this.timer);
    this.decided = true;
    this.held = [];
  }

  private decide(length: BodyLength): void {
    if (this.timer) clearImmediate(this.timer);
    this.decided = true;
    const held = this.held;
    this.held = [];
    this.start(length, held);
  }
}

/** `headers` (a flat name/value list) with content-length set to `length`, or removed when undefined. */
export function withLength(headers: string[], length: BodyLength): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== 'content-length') out.push(headers[i]!, headers[i + 1]!);
  if (length !== undefined) out.push('content-length', String(length));
  return out;
}
