// A stream's deadlines, as Envoy's route timeout and stream_idle_timeout: the route timeout counts
// from the request's arrival to the end of its response, time a filter holds the stream paused
// included; the idle timeout ends a stream nothing moved on (no bytes either way) for that long.
// What happens then is the caller's (a reply naming the timeout and the holder, or a reset).

import { CONFIG_DEFAULTS } from '../config/index.ts';

/** Envoy's default stream_idle_timeout. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = CONFIG_DEFAULTS.streamIdleTimeoutMs;

export interface Expiry {
  status: 408 | 504;
  /** The reply's body: which timeout, where it is configured, and the filter that held the stream. */
  text: string;
  /** response_code_details. */
  details: 'route_timeout' | 'stream_idle_timeout';
}

export interface DeadlineTarget {
  /** Grows whenever something moves on the stream (request or response bytes, the response headers). */
  progress(): number;
  /** The filter holding the stream, if one is. */
  heldBy(): string | undefined;
  /** Ends the stream: a reply when no response headers went out yet, else a reset. */
  expire(expiry: Expiry): void;
  /** Told of every timeout that passes, whoever then acts on it (for metrics). */
  timedOut(timeout: 'route' | 'idle'): void;
}

export class StreamDeadline {
  private routeTimer?: NodeJS.Timeout;
  private idle?: IdleWatch;
  private upstreamTimeout?: () => void;
  private lastProgress: number;
  private quietSince: number;
  private done = false;

  /** `started`: performance.now() at the request's arrival. */
  constructor(
    private readonly target: DeadlineTarget,
    private readonly started: number,
    private readonly idleMs: number,
    private readonly listener: string,
  ) {
    this.lastProgress = target.progress();
    this.quietSince = started;
    if (idleMs > 0) (this.idle = idleWatch(idleMs)).add(this);
  }

  /** Sets the route timeout (0: none), counted from the request's arrival; replaces the one set before. `source` says where it was configured. */
  route(ms: number, source: string): void {
    if (this.routeTimer) clearTimeout(this.routeTimer);
    this.routeTimer = undefined;
    if (ms <= 0 || this.done) return;
    const left = Math.max(0, this.started + ms - performance.now());
    this.routeTimer = setTimeout(() => this.routeExpired(ms, source), left);
  }

  /**
   * While an upstream try runs, the route timeout aborts it through `abort` (the 504 it then gets
   * passes the response filters like any upstream failure), unless a filter holds the stream.
   */
  onUpstream(abort: (() => void) | undefined): void {
    this.upstreamTimeout = abort;
  }

  stop(): void {
    this.done = true;
    if (this.routeTimer) clearTimeout(this.routeTimer);
    this.idle?.delete(this);
  }

  private routeExpired(ms: number, source: string): void {
    if (this.done) return;
    this.target.timedOut('route');
    const holder = this.target.heldBy();
    if (holder === undefined && this.upstreamTimeout) return this.upstreamTimeout();
    this.expire({ status: 504, details: 'route_timeout', text: `sluice: the request did not complete within the route's timeout of ${ms} ms (${source})${held(holder)}\n` });
  }

  /** Called four times per idle period by the shared IdleWatch. */
  idleCheck(): void {
    if (this.done) return;
    const now = performance.now();
    const progress = this.target.progress();
    if (progress !== this.lastProgress) {
      this.lastProgress = progress;
      this.quietSince = now;
    } else if (now - this.quietSince >= this.idleMs) {
      this.target.timedOut('idle');
      const holder = this.target.heldBy();
      return this.expire({ status: 408, details: 'stream_idle_timeout', text: `sluice: nothing moved on the stream for ${this.idleMs} ms (streamIdleTimeoutMs of listener "${this.listener}")${held(holder)}\n` });
    }
  }

  private expire(expiry: Expiry): void {
    this.stop();
    this.target.expire(expiry);
  }
}

const held = (holder: string | undefined): string => (holder === undefined ? '' : `; filter "${holder}" held the stream`);

/**
 * The idle checks of every stream with the same idle period, on one interval timer (four ticks
 * per period) that runs only while such a stream is open: a stream is ended between 1 and 1.25
 * periods after its last movement, with no timer of its own.
 */
class IdleWatch {
  private readonly streams = new Set<StreamDeadline>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly periodMs: number) {}

  add(stream: StreamDeadline): void {
    this.streams.add(stream);
    this.timer ??= setInterval(() => {
      for (const s of this.streams) s.idleCheck();
    }, Math.max(1, Math.ceil(this.periodMs / 4)));
  }

  delete(stream: StreamDeadline): void {
    this.streams.delete(stream);
    if (this.streams.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

const idleWatches = new Map<number, IdleWatch>();

function idleWatch(periodMs: number): IdleWatch {
  let w = idleWatches.get(periodMs);
  if (!w) {
    w = new IdleWatch(periodMs);
    idleWatches.set(periodMs, w);
  }
  return w;
}
