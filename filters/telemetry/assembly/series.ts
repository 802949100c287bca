// The request counter and duration histogram of each label combination, cached so that a request
// costs a few map lookups. The ABI's metrics have no labels, so they travel in the metric name:
// `telemetry_requests_total{method="GET",response_code="200"}` (Sluice's /stats/prometheus
// splits it), or Istio's `method=.=GET;.;response_code=.=200;.;telemetry_requests_total` (for
// Envoy's tag extraction).

import { Counter, Histogram, log } from "../../../sdk/assembly";
import { LabelEncoding } from "./config";

/** The value of every label of the series that takes new combinations once `maxSeries` is reached. */
export const OVERFLOW = "overflow";

export class Series {
  constructor(readonly requests: Counter, readonly duration: Histogram) {}
}

/** One level of the label tree: a child per value of the next label. */
class LabelNode {
  readonly children: Map<string, LabelNode> = new Map<string, LabelNode>();
  series: Series | null = null;
}

/** The metric's name with these labels, in the chosen encoding. */
export function labelledName(encoding: LabelEncoding, names: string[], values: string[], metric: string): string {
  if (names.length == 0) return metric;
  let out = "";
  if (encoding == LabelEncoding.Istio) {
    // `;.;` ends a value: a `;` inside one becomes `_`.
    for (let i = 0; i < names.length; i++) out += names[i] + "=.=" + values[i].replaceAll(";", "_") + ";.;";
    return out + metric;
  }
  for (let i = 0; i < names.length; i++) {
    if (i > 0) out += ",";
    out += names[i] + "=\"" + escapeLabelValue(values[i]) + "\"";
  }
  return metric + "{" + out + "}";
}

/** Prometheus text format: backslash, double quote and line feed escaped. */
function escapeLabelValue(value: string): string {
  if (!value.includes("\\") && !value.includes("\"") && !value.includes("\n")) return value;
  return value.replaceAll("\\", "\\\\").replaceAll("\"", "\\\"").replaceAll("\n", "\\n");
}

export class SeriesCache {
  private readonly root: LabelNode = new LabelNode();
  private count: i32 = 0;
  private overflowSeries: Series | null = null;

  constructor(
    readonly encoding: LabelEncoding,
    readonly labelNames: string[],
    readonly requestsName: string,
    readonly durationName: string,
    readonly maxSeries: i32,
  ) {}

  /** The series of these label values (one per label, in order), created on first use. */
  find(values: string[]): Series {
    let node = this.root;
    const n = values.length;
    for (let i = 0; i < n; i++) {
      const value = values[i];
      const children = node.children;
      if (children.has(value)) {
        node = children.get(value);
        continue;
      }
      // A new combination: refuse it before growing the tree when the limit is reached.
      if (this.count >= this.maxSeries) return this.overflow();
      for (; i < n; i++) {
        const next = new LabelNode();
        node.children.set(values[i], next);
        node = next;
      }
    }
    let series = node.series;
    if (series === null) {
      series = this.create(values);
      node.series = series;
      this.count++;
    }
    return series;
  }

  private create(values: string[]): Series {
    const names = this.labelNames;
    return new Series(
      new Counter(labelledName(this.encoding, names, values, this.requestsName)),
      new Histogram(labelledName(this.encoding, names, values, this.durationName)),
    );
  }

  private overflow(): Series {
    let series = this.overflowSeries;
    if (series === null) {
      const values = new Array<string>(this.labelNames.length).fill(OVERFLOW);
      series = this.create(values);
      this.overflowSeries = series;
      log.warn("telemetry: metrics.maxSeries (" + this.maxSeries.toString() + ") label combinations reached; further new combinations are counted under the series whose labels are all '" + OVERFLOW + "'");
    }
    return series;
  }
}
