// Counters, gauges and histograms the host exports (`proxy_define_metric` and friends). A metric is
// defined on first use and its id cached, so creating one at the top level of a filter is fine.
// A metric that cannot be defined is reported once and then ignored: telemetry never stops a filter.

import { proxy_define_metric, proxy_get_metric, proxy_increment_metric, proxy_record_metric } from "./abi";
import { warnHostCall } from "./errors";
import { RETURN_SIZE, RETURN_U64 } from "./memory";
import { MetricType, Status } from "./types";

/** Shared by the three kinds: lazy definition and the cached id. */
export class Metric {
  private metricId: u32 = 0;
  private state: i32 = 0; // 0 not defined yet, 1 defined, -1 definition failed

  constructor(readonly name: string, readonly metricType: MetricType) {}

  /** The host's id for this metric, defining it on first use; 0 when it could not be defined. */
  get id(): u32 {
    this.defined();
    return this.metricId;
  }

  /** Defines the metric on first use; false when the host refused it. */
  protected defined(): bool {
    if (this.state == 0) {
      const name = String.UTF8.encode(this.name);
      store<u32>(RETURN_SIZE, 0);
      const status = <Status>proxy_define_metric(this.metricType, changetype<usize>(name), name.byteLength, RETURN_SIZE);
      if (status == Status.Ok) {
        this.metricId = load<u32>(RETURN_SIZE);
        this.state = 1;
      } else {
        warnHostCall("proxy_define_metric", status, "metric '" + this.name + "'; it will not be recorded");
        this.state = -1;
      }
    }
    return this.state == 1;
  }

  protected incrementBy(delta: i64): void {
    if (!this.defined()) return;
    const status = <Status>proxy_increment_metric(this.metricId, delta);
    if (status != Status.Ok) warnHostCall("proxy_increment_metric", status, "metric '" + this.name + "'");
  }

  protected recordValue(value: u64): void {
    if (!this.defined()) return;
    const status = <Status>proxy_record_metric(this.metricId, value);
    if (status != Status.Ok) warnHostCall("proxy_record_metric", status, "metric '" + this.name + "'");
  }

  protected readValue(): u64 {
    if (!this.defined()) return 0;
    store<u64>(RETURN_U64, 0);
    const status = <Status>proxy_get_metric(this.metricId, RETURN_U64);
    if (status != Status.Ok) {
      warnHostCall("proxy_get_metric", status, "metric '" + this.name + "'");
      return 0;
    }
    return load<u64>(RETURN_U64);
  }
}

/** A monotonically increasing count: `requests.increment()`. */
export class Counter extends Metric {
  constructor(name: string) {
    super(name, MetricType.Counter);
  }

  increment(delta: u64 = 1): void {
    this.incrementBy(<i64>delta);
  }

  get(): u64 {
    return this.readValue();
  }
}

/** A value that goes up and down: `inFlight.add(1)`, `inFlight.add(-1)`, `queueDepth.set(n)`. */
export class Gauge extends Metric {
  constructor(name: string) {
    super(name, MetricType.Gauge);
  }

  set(value: i64): void {
    this.recordValue(<u64>value);
  }

  add(delta: i64): void {
    this.incrementBy(delta);
  }

  get(): i64 {
    return <i64>this.readValue();
  }
}

/** A distribution of observations (latencies, sizes): `latencyMs.record(12)`. */
export class Histogram extends Metric {
  constructor(name: string) {
    super(name, MetricType.Histogram);
  }

  record(value: u64): void {
    this.recordValue(value);
  }
}
