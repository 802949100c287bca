// Metrics that filters define through proxy_define_metric, with Envoy's semantics: `increment`
// adds to counters and gauges, `record` adds to a counter, sets a gauge and observes a histogram.

import { MetricType, Status } from '../abi/constants.ts';

/** Envoy's default histogram bucket bounds (milliseconds, or whatever unit the filter records). */
export const HISTOGRAM_BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
] as const;

export interface Metric {
  readonly id: number;
  readonly name: string;
  readonly type: MetricType;
  /** Counter total or gauge value. */
  value: number;
  /** Histograms: observations per bucket of HISTOGRAM_BUCKETS (non-cumulative), plus sum and count. */
  buckets?: number[];
  sum?: number;
  count?: number;
}

export class MetricStore {
  private readonly byName = new Map<string, Metric>();
  private readonly byId: Metric[] = [];

  /** Defines (or finds) a metric; the same name with another type is a BAD_ARGUMENT. */
  define(type: number, name: string): { status: Status; id: number } {
    if (type !== MetricType.Counter && type !== MetricType.Gauge && type !== MetricType.Histogram) {
      return { status: Status.BadArgument, id: 0 };
    }
    const existing = this.byName.get(name);
    if (existing) return existing.type === type ? { status: Status.Ok, id: existing.id } : { status: Status.BadArgument, id: 0 };
    const metric: Metric = { id: this.byId.length + 1, name, type: type as MetricType, value: 0 };
    if (type === MetricType.Histogram) {
      metric.buckets = new Array(HISTOGRAM_BUCKETS.length + 1).fill(0);
      metric.sum = 0;
      metric.count = 0;
    }
    this.byId.push(metric);
    this.byName.set(name, metric);
    return { status: Status.Ok, id: metric.id };
  }

  increment(id: number, offset: number): Status {
    const m = this.byId[id - 1];
    if (!m) return Status.NotFound;
    if (m.type === MetricType.Histogram) return Status.BadArgument;
    if (m.type === MetricType.Counter && offset < 0) return Status.BadArgument;
    m.value += offset;
    return Status.Ok;
  }

  record(id: number, value: number): Status {
    const m = this.byId[id - 1];
    if (!m) return Status.NotFound;
    if (m.type === MetricType.Counter) m.value += value;
    else if (m.type === MetricType.Gauge) m.value = value;
    else observe(m, value);
    return Status.Ok;
  }

  get(id: number): { status: Status; value: number } {
    const m = this.byId[id - 1];
    if (!m) return { status: Status.NotFound, value: 0 };
    if (m.type === MetricType.Histogram) return { status: Status.BadArgument, value: 0 };
    return { status: Status.Ok, value: m.value };
  }

  byMetricName(name: string): Metric | undefined {
    return this.byName.get(name);
  }

  all(): readonly Metric[] {
    return this.byId;
  }
}

function observe(m: Metric, value: number): void {
  let i = 0;
  while (i < HISTOGRAM_BUCKETS.length && value > HISTOGRAM_BUCKETS[i]) i++;
  m.buckets![i]++;
  m.sum! += value;
  m.count!++;
}
