// The controller's Prometheus metrics: counters, gauges and histograms with labels, rendered in
// the text exposition format for /metrics.

type Labels = Record<string, string>;

const labelText = (labels: Labels): string => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  render(): string[];
}

export class Counter implements Family {
  readonly type = 'counter';
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelText(labels);
    const v = this.values.get(k) ?? { labels, value: 0 };
    v.value += by;
    this.values.set(k, v);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  render(): string[] {
    return [...this.values.values()].map((v) => `${this.name}${labelText(v.labels)} ${v.value}`);
  }
}

export class Gauge implements Family {
  readonly type = 'gauge';
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}
  render(): string[] {
    return [`${this.name} ${this.read()}`];
  }
}

export class Histogram implements Family {
  readonly type = 'histogram';
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string[] {
    return [
      ...this.buckets.map((b, i) => `${this.name}_bucket{le="${b}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ControllerMetrics {
  readonly reconciles = new Counter('sluice_controller_reconciles_total', 'Reconciles of WasmFilters, by result: validated, refused (Validated=False), unchanged (nothing to do), deleted, error (retried).');
  readonly errors = new Counter('sluice_controller_reconcile_errors_total', 'Reconciles that failed and will be retried, by reason.');
  readonly statusWrites = new Counter('sluice_controller_status_writes_total', 'WasmFilter status updates written.');
  readonly events = new Counter('sluice_controller_events_total', 'Kubernetes Events emitted, by reason.');
  readonly watchRestarts = new Counter('sluice_controller_watch_restarts_total', 'Watches renewed, by cause: closed (normal end), expired (410 Gone, relisted), error (backoff).');
  readonly csrs = new Counter('sluice_controller_csr_total', 'Workload certificate requests from node agents, by result (signed, refused) and reason of a refusal (invalid, not_authorized, unavailable).');
  readonly reconcileDuration = new Histogram('sluice_controller_reconcile_duration_seconds', 'Time of one reconcile, fetch and validation included.', SECONDS);
  readonly validationDuration = new Histogram('sluice_controller_validation_duration_seconds', 'Time to compile a module and run proxy_on_vm_start and proxy_on_configure.', SECONDS);
  private readonly families: Family[];

  constructor(read: { queueDepth: () => number; inFlight: () => number; filters: () => number; leader: () => boolean }) {
    this.families = [
      this.reconciles,
      this.errors,
      this.statusWrites,
      this.events,
      this.watchRestarts,
      this.csrs,
      this.reconcileDuration,
      this.validationDuration,
      new Gauge('sluice_controller_queue_depth', 'Keys waiting in the work queue.', read.queueDepth),
      new Gauge('sluice_controller_reconciles_in_flight', 'Reconciles running now.', read.inFlight),
      new Gauge('sluice_controller_wasmfilters', 'WasmFilters in the cache.', read.filters),
      new Gauge('sluice_controller_leader', '1 while this replica holds the leader Lease.', () => (read.leader() ? 1 : 0)),
    ];
  }

  render(): string {
    const out: string[] = [];
    for (const f of this.families) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.render());
    }
    return `${out.join('\n')}\n`;
  }
}
