// A stop signal for one exchange or one try: what the request path needs of an AbortSignal
// (aborted, reason, abort listeners; undici and node:http2 take it as one) without the cost of an
// AbortController and its EventTarget, made twice per request on the hot path.

/** What the upstream pools read of a signal (a subset of AbortSignal's surface). */
export interface StopSignalLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
  throwIfAborted(): void;
}

export class StopSignal implements StopSignalLike {
  aborted = false;
  reason: unknown = undefined;
  private listeners?: Array<() => void>;

  /** Stops with `reason`; the listeners run once, in the order they were added. A second stop does nothing. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const listener of listeners) listener();
  }

  /** Listeners run at most once (the stop happens once): `once` is implied. */
  addEventListener(_type: 'abort', listener: () => void, _options?: { once?: boolean }): void {
    if (this.aborted) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const listeners = this.listeners;
    if (!listeners) return;
    const i = listeners.indexOf(listener);
    if (i >= 0) listeners.splice(i, 1);
  }

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }
}
