// Span export over OTLP/HTTP (JSON encoding): the proxy's span of each request, batched and
// POSTed to a collector's /v1/traces. Export never slows a request: spans wait in a bounded
// queue, a full queue drops (and counts) new spans, and a collector that fails is logged once
// per failure streak, then retried with the next batch.

import { request } from 'undici';
import type { TracingConfig } from '../config/snapshot.ts';
import type { LogLevelName } from '../log.ts';
import type { Span } from './trace-context.ts';

export interface FinishedSpan {
  span: Span;
  /** `<method> <route>`: low-cardinality, as OpenTelemetry's HTTP conventions ask. */
  name: string;
  /** Milliseconds since the epoch. */
  startMs: number;
  durationMs: number;
  attributes: Record<string, string | number>;
  /** The request failed (5xx, or no response at all). */
  error: boolean;
}

/** Spans waiting beyond this many are dropped rather than held: a dead collector must not grow the proxy. */
const MAX_QUEUED = 4096;

export class SpanExporter {
  exported = 0;
  dropped = 0;
  failedBatches = 0;
  private queue: FinishedSpan[] = [];
  private readonly timer: NodeJS.Timeout;
  private sending?: Promise<void>;
  private failing = false;

  constructor(
    readonly config: TracingConfig['otlp'],
    private readonly log: (level: LogLevelName, msg: string) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), config.flushIntervalMs).unref();
  }

  add(span: FinishedSpan): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.config.maxBatch && !this.sending) void this.flush();
  }

  /** Sends what is queued, one batch at a time; resolves when the queue is empty or a batch failed. */
  flush(): Promise<void> {
    this.sending ??= this.sendAll().finally(() => (this.sending = undefined));
    return this.sending;
  }

  /** Stops the timer and sends what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async sendAll(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.config.maxBatch);
      try {
        const res = await request(this.config.endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(this.payload(batch)),
          headersTimeout: 5000,
          bodyTimeout: 5000,
        });
        const text = await res.body.text();
        if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
        this.exported += batch.length;
        if (this.failing) this.log('info', `span export to ${this.config.endpoint} works again`);
        this.failing = false;
      } catch (error) {
        this.failedBatches++;
        this.dropped += batch.length;
        if (!this.failing) this.log('warn', `span export to ${this.config.endpoint} failed, dropping ${batch.length} spans: ${(error as Error).message}; is the OTLP/HTTP collector up?`);
        this.failing = true;
        return;
      }
    }
  }

  private payload(batch: FinishedSpan[]) {
    return {
      resourceSpans: [
        {
          resource: { attributes: [attribute('service.name', this.config.serviceName)] },
          scopeSpans: [
            {
              scope: { name: 'sluice' },
              spans: batch.map((s) => ({
                traceId: s.span.traceId,
                spanId: s.span.spanId,
                ...(s.span.parentId ? { parentSpanId: s.span.parentId } : {}),
                name: s.name,
                kind: 2, // SPAN_KIND_SERVER: the proxy serves the downstream's request
                startTimeUnixNano: nanos(s.startMs),
                endTimeUnixNano: nanos(s.startMs + s.durationMs),
                attributes: Object.entries(s.attributes).map(([k, v]) => attribute(k, v)),
                status: { code: s.error ? 2 : 0 }, // STATUS_CODE_ERROR or STATUS_CODE_UNSET
              })),
            },
          ],
        },
      ],
    };
  }
}

/** Nanoseconds since the epoch as a decimal string (OTLP/JSON's encoding of fixed64). */
function nanos(ms: number): string {
  return (BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.round((ms % 1) * 1e6))).toString();
}

function attribute(key: string, value: string | number) {
  return { key, value: typeof value === 'number' ? { intValue: String(value) } : { stringValue: value } };
}
