// Request telemetry and the Prometheus text for /stats/prometheus: Istio's standard request
// metrics (istio_requests_total and the duration and size histograms, with Istio's label names),
// the metrics filters define through the ABI, and each filter's health.
//
// Hand-written rather than prom-client: filters define metrics at run time with Envoy's
// semantics (a histogram arrives already bucketed), and the hot path is one Map lookup.

import { HISTOGRAM_BUCKETS, type MetricStore } from '../host/metrics.ts';
import { TIMING_SAMPLE_EVERY, type Plugin } from '../host/plugin.ts';
import type { PeerLabels } from './peer-labels.ts';
import type { SpanExporter } from './span-export.ts';
import type { Cluster } from './upstreams.ts';

const DURATION_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000];

class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }
  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

interface Series {
  labels: string;
  requests: number;
  duration: Histogram;
  requestBytes: Histogram;
  responseBytes: Histogram;
}

/** Most istio_* request (and TCP) series with workload labels; past it new pairs are counted without them. */
export const MAX_SERIES = 10_000;

export class Telemetry {
  private readonly series = new Map<string, Series>();
  /** Requests and connections counted without their workload labels because of MAX_SERIES. */
  private seriesOverflow = 0;

  constructor(
    private readonly metrics: MetricStore,
    private readonly plugins: () => readonly Plugin[],
    private readonly clusters: () => readonly Cluster[] = () => [],
    private readonly spans: () => SpanExporter | undefined = () => undefined,
  ) {}

  private readonly tcp = new Map<string, { labels: string; opened: number; closed: number; received: number; sent: number }>();

  tcpOpened(listener: string, cluster: string, peers?: PeerLabels): void {
    this.tcpSeries(listener, cluster, peers).opened++;
  }

  /** `received`: bytes from the client; `sent`: bytes to it. */
  tcpClosed(listener: string, cluster: string, received: number, sent: number, peers?: PeerLabels): void {
    const s = this.tcpSeries(listener, cluster, peers);
    s.closed++;
    s.received += received;
    s.sent += sent;
  }

  private tcpSeries(listener: string, cluster: string, peers: PeerLabels | undefined) {
    let key = `${listener}\u0000${cluster}`;
    if (peers) {
      if (this.tcp.size >= MAX_SERIES && !this.tcp.has(`${key}\u0000${peers.key}`)) {
        this.seriesOverflow++;
        peers = undefined;
      } else key = `${key}\u0000${peers.key}`;
    }
    let s = this.tcp.get(key);
    if (!s) {
      s = { labels: `${peers ? peers.text : 'reporter="source"'},destination_service="${escape(cluster)}",sluice_listener="${escape(listener)}"`, opened: 0, closed: 0, received: 0, sent: 0 };
      this.tcp.set(key, s);
    }
    return s;
  }

  /**
   * `protocol`: `grpc`, or the request's HTTP version (`1.0`, `1.1`, `2.0`). `peers`: the workload
   * labels of captured traffic (reporter, source_*, destination_*); without them the reporter is
   * `source`.
   */
  request(listener: string, protocol: string, e: { status: number; requestBytes: number; responseBytes: number; cluster: string }, ms: number, peers?: PeerLabels): void {
    // The series is keyed by the label, not the version: HTTP/1.0 and HTTP/1.1 are one series.
    const label = requestProtocolLabel(protocol);
    let key = `${listener}\u0000${label}\u0000${e.status}\u0000${e.cluster}`;
    if (peers) {
      // Workload pairs multiply series: past the cap a new pair is counted without them.
      if (this.series.size >= MAX_SERIES && !this.series.has(`${key}\u0000${peers.key}`)) {
        this.seriesOverflow++;
        peers = undefined;
      } else key = `${key}\u0000${peers.key}`;
    }
    let s = this.series.get(key);
    if (!s) {
      const labels = [
        ...(peers ? [] : [['reporter', 'source']]),
        ['request_protocol', label],
        ['response_code', String(e.status)],
        ['destination_service', e.cluster || 'unknown'],
        ['sluice_listener', listener],
      ];
      const text = labels.map(([k, v]) => `${k}="${escape(v)}"`).join(',');
      s = {
        labels: peers ? `${peers.text},${text}` : text,
        requests: 0,
        duration: new Histogram(DURATION_BUCKETS),
        requestBytes: new Histogram(SIZE_BUCKETS),
        responseBytes: new Histogram(SIZE_BUCKETS),
      };
      this.series.set(key, s);
    }
    s.requests++;
    s.duration.observe(ms);
    s.requestBytes.observe(e.requestBytes);
    s.responseBytes.observe(e.responseBytes);
  }

  /** Per listener: streams whose deadline passed, and HTTP/2 connections closed for rapid reset. */
  private readonly downstream = new Map<string, { labels: string; route: number; idle: number; rapidReset: number }>();

  /** A stream's route timeout or stream idle timeout passed. */
  streamTimedOut(listener: string, timeout: 'route' | 'idle'): void {
    this.downstreamSeries(listener)[timeout]++;
  }

  /** An HTTP/2 connection was closed with GOAWAY ENHANCE_YOUR_CALM for resetting its streams in a loop. */
  rapidReset(listener: string): void {
    this.downstreamSeries(listener).rapidReset++;
  }

  private downstreamSeries(listener: string) {
    let s = this.downstream.get(listener);
    if (!s) {
      s = { labels: `sluice_listener="${escape(listener)}"`, route: 0, idle: 0, rapidReset: 0 };
      this.downstream.set(listener, s);
    }
    return s;
  }

  /** Requests served so far, over every listener. */
  get requestsTotal(): number {
    let n = 0;
    for (const s of this.series.values()) n += s.requests;
    return n;
  }

  /** The Prometheus text exposition of everything. */
  render(): string {
    const out: string[] = [];
    const all = [...this.series.values()];
    out.push('# TYPE istio_requests_total counter');
    for (const s of all) out.push(`istio_requests_total{${s.labels}} ${s.requests}`);
    histogram(out, 'istio_request_duration_milliseconds', all.map((s) => [s.labels, s.duration]));
    histogram(out, 'istio_request_bytes', all.map((s) => [s.labels, s.requestBytes]));
    histogram(out, 'istio_response_bytes', all.map((s) => [s.labels, s.responseBytes]));

    const tcp = [...this.tcp.values()];
    const tcpStat = (name: string, value: (s: (typeof tcp)[number]) => number) => {
      out.push(`# TYPE ${name} counter`);
      for (const s of tcp) out.push(`${name}{${s.labels}} ${value(s)}`);
    };
    tcpStat('istio_tcp_connections_opened_total', (s) => s.opened);
    tcpStat('istio_tcp_connections_closed_total', (s) => s.closed);
    tcpStat('istio_tcp_received_bytes_total', (s) => s.received);
    tcpStat('istio_tcp_sent_bytes_total', (s) => s.sent);

    if (this.seriesOverflow > 0) labelled(out, 'sluice_telemetry_series_overflow_total', 'counter', `Requests and TCP connections counted without their workload labels: the istio_* metrics hold ${MAX_SERIES} series at most.`, [['', this.seriesOverflow]]);

    const downstream = [...this.downstream.values()];
    if (downstream.length > 0) {
      labelled(out, 'sluice_downstream_rq_timeout_total', 'counter', 'Streams whose route timeout (from arrival, filter pauses included) or stream idle timeout passed.', downstream.flatMap((d) => [[`${d.labels},timeout="route"`, d.route], [`${d.labels},timeout="idle"`, d.idle]] as Array<[string, number]>));
      labelled(out, 'sluice_downstream_cx_rapid_reset_total', 'counter', 'HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for resetting their streams in a loop.', downstream.map((d) => [d.labels, d.rapidReset]));
    }

    const plugins = this.plugins();
    const stat = (name: string, type: string, help: string, value: (p: Plugin) => number) =>
      labelled(out, name, type, help, plugins.map((p) => [`filter="${escape(p.name)}"`, value(p)]));
    stat('sluice_filter_streams_total', 'counter', 'Streams the filter saw.', (p) => p.stats.streams);
    stat('sluice_filter_failures_total', 'counter', 'VM failures (traps, budget overruns, aborts).', (p) => p.stats.failures);
    stat('sluice_filter_quarantines_total', 'counter', 'Times the filter was quarantined.', (p) => p.stats.quarantines);
    stat('sluice_filter_vms_started_total', 'counter', 'VMs started, including the first.', (p) => p.stats.vmsStarted);
    stat('sluice_filter_quarantined', 'gauge', '1 while the filter is quarantined.', (p) => (p.state === 'quarantined' ? 1 : 0));
    stat('sluice_filter_memory_bytes', 'gauge', 'Linear memory of the filter\'s current VM.', (p) => p.vm?.memoryBytes ?? 0);

    const clusters = this.clusters();
    const clusterStat = (name: string, type: string, help: string, value: (c: Cluster) => number) =>
      labelled(out, name, type, help, clusters.map((c) => [`cluster="${escape(c.name)}"`, value(c)]));
    clusterStat('sluice_cluster_upstream_rq_active', 'gauge', 'Requests in flight to the cluster.', (c) => c.retryBudget.active);
    clusterStat('sluice_cluster_upstream_rq_retry_total', 'counter', 'Retries made.', (c) => c.retryBudget.retries);
    clusterStat('sluice_cluster_upstream_rq_retry_overflow_total', 'counter', 'Retries refused by the retry budget.', (c) => c.retryBudget.overflows);
    clusterStat('sluice_cluster_outlier_ejections_total', 'counter', 'Endpoints ejected by outlier detection.', (c) => c.ejectionsTotal);
    clusterStat('sluice_cluster_outlier_ejected', 'gauge', 'Endpoints ejected now.', (c) => c.ejected);
    clusterStat('sluice_cluster_circuit_breaker_open_total', 'counter', 'Requests refused by a circuit breaker.', (c) => c.circuitBreakerTrips);
    const failures = clusters.flatMap((c) => [...c.failures].map(([code, n]) => [`cluster="${escape(c.name)}",code="${code}"`, n] as [string, number]));
    if (failures.length > 0) labelled(out, 'sluice_cluster_upstream_rq_failures_total', 'counter', 'Tries that got no response, by why (docs/errors.md: SLUICE_ERR_UPSTREAM_*).', failures);

    const spans = this.spans();
    if (spans) {
      labelled(out, 'sluice_tracing_spans_exported_total', 'counter', 'Spans the OTLP collector accepted.', [['', spans.exported]]);
      labelled(out, 'sluice_tracing_spans_dropped_total', 'counter', 'Spans dropped: the queue was full or the collector failed.', [['', spans.dropped]]);
    }

    const timings = plugins.flatMap((p) => p.callbackTimings.map(([callback, t]) => [`filter="${escape(p.name)}",callback="${callback}"`, t] as const));
    labelled(out, 'sluice_filter_callback_calls_total', 'counter', 'Calls into the filter, by callback.', timings.map(([labels, t]) => [labels, t.calls]));
    labelled(out, 'sluice_filter_callback_seconds_total', 'counter', `Time spent in the filter, by callback (measured on 1 call in ${TIMING_SAMPLE_EVERY}, scaled to all calls).`, timings.map(([labels, t]) => [labels, t.timed === 0 ? 0 : (t.timedMs / t.timed) * t.calls / 1000]));

    // Metrics filters defined through proxy_define_metric, under their own names. A name may
    // carry Prometheus labels (`requests_total{method="GET"}`): series of one name share a TYPE line.
    const typed = new Set<string>();
    for (const m of this.metrics.all()) {
      const { base, labels } = splitMetricName(m.name);
      if (m.buckets) {
        const h = new Histogram(HISTOGRAM_BUCKETS);
        h.counts.splice(0, h.counts.length, ...m.buckets);
        h.sum = m.sum!;
        h.count = m.count!;
        histogram(out, base, [[labels, h]], typed);
      } else {
        if (!typed.has(base)) out.push(`# TYPE ${base} ${m.type === 0 ? 'counter' : 'gauge'}`);
        typed.add(base);
        out.push(labels ? `${base}{${labels}} ${m.value}` : `${base} ${m.value}`);
      }
    }
    return out.join('\n') + '\n';
  }
}

/** The request_protocol label (docs/proxy.md, as the telemetry filter's): `grpc`, `http2` or `http`. */
function requestProtocolLabel(protocol: string): 'grpc' | 'http2' | 'http' {
  return protocol === 'grpc' ? 'grpc' : protocol === '2.0' ? 'http2' : 'http';
}

/** One metric with a series per label set. */
function labelled(out: string[], name: string, type: string, help: string, series: Array<[string, number]>): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  for (const [labels, value] of series) out.push(labels ? `${name}{${labels}} ${value}` : `${name} ${value}`);
}

function histogram(out: string[], name: string, series: Array<[string, Histogram]>, typed?: Set<string>): void {
  if (!typed?.has(name)) out.push(`# TYPE ${name} histogram`);
  typed?.add(name);
  for (const [labels, h] of series) {
    const sep = labels ? ',' : '';
    let cumulative = 0;
    h.bounds.forEach((b, i) => {
      cumulative += h.counts[i];
      out.push(`${name}_bucket{${labels}${sep}le="${b}"} ${cumulative}`);
    });
    out.push(`${name}_bucket{${labels}${sep}le="+Inf"} ${h.count}`);
    out.push(`${name}_sum${labels ? `{${labels}}` : ''} ${h.sum}`, `${name}_count${labels ? `{${labels}}` : ''} ${h.count}`);
  }
}

const LABELLED = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\}$/;

/** A filter's metric name as a Prometheus name and labels: `a{b="c"}` as is, anything else with `_` for characters Prometheus does not allow. */
function splitMetricName(name: string): { base: string; labels: string } {
  const m = LABELLED.exec(name);
  if (m) return { base: m[1]!, labels: m[2]!.replace(/,$/, '') };
  return { base: name.replace(/[^a-zA-Z0-9_:]/g, '_'), labels: '' };
}

/** A Prometheus label value, escaped. */
export function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
