// The fault filter's configuration: delay, abort, match, headerControlled and maxActiveFaults,
// read and checked once in onConfigure; percentages kept as whole millionths.

import { ConfigReader, HeaderMatch, log, readHeaderMatches } from "../../../sdk/assembly";

/** An integer setting that is not given (or a header that does not hold one). */
export const NONE: i64 = -1;
/** Node's timer limit, the ceiling of every duration in Sluice's configuration. */
export const MAX_MS: i64 = 2147483647;
/** Percentages are counted in millionths: 0.0001 % is the finest share. */
export const MILLION: u64 = 1_000_000;

export class DelayConfig {
  enabled: bool = false;
  /** NONE: only header-controlled delays. */
  fixedDelayMs: i64 = NONE;
  share: u64 = 0;
}

export class AbortConfig {
  enabled: bool = false;
  /** NONE when not configured (grpc-only, or header-controlled only). */
  httpStatus: i64 = NONE;
  grpcStatus: i64 = NONE;
  share: u64 = 0;
  body: string = "fault filter abort";
}

export class FaultConfig {
  delay: DelayConfig = new DelayConfig();
  abort: AbortConfig = new AbortConfig();
  headers: HeaderMatch[] = [];
  headerControlled: bool = false;
  /** Delays in progress at once; NONE: no limit. */
  maxActiveFaults: i64 = NONE;
}

/** A percentage 0–100 in millionths, or NONE when it is not one (or finer than 0.0001 %). */
function toShare(percentage: f64): i64 {
  if (isNaN(percentage) || percentage < 0 || percentage > 100) return NONE;
  const share = percentage * 10000;
  const rounded = Math.round(share);
  if (Math.abs(share - rounded) > 1e-6) return NONE;
  return <i64>rounded;
}

function readShare(section: ConfigReader): u64 {
  if (!section.has("percentage")) {
    section.value("percentage");
    section.fail("percentage", "is required (0 to 100): which share of the matching requests gets the fault");
    return 0;
  }
  const percentage = section.number("percentage", 0);
  const share = toShare(percentage);
  if (share == NONE) {
    section.fail("percentage", "must be a number from 0 to 100 with at most 4 decimals, got " + percentage.toString());
    return 0;
  }
  return <u64>share;
}

export function readConfig(configuration: string): FaultConfig | null {
  const top = ConfigReader.parse(configuration);
  const problems = new Array<string>();
  const config = new FaultConfig();
  config.headerControlled = top.bool("headerControlled", false);
  config.maxActiveFaults = top.integer("maxActiveFaults", NONE, 0, MAX_MS);

  const delay = top.object("delay");
  if (delay.json !== null) {
    config.delay.enabled = true;
    config.delay.fixedDelayMs = delay.integer("fixedDelayMs", NONE, 1, MAX_MS);
    if (!delay.has("fixedDelayMs") && !config.headerControlled) {
      delay.fail("fixedDelayMs", "is required (milliseconds, at least 1) unless headerControlled is true");
    }
    config.delay.share = readShare(delay);
    delay.rejectUnknownFields();
  }

  const abort = top.object("abort");
  if (abort.json !== null) {
    config.abort.enabled = true;
    config.abort.httpStatus = abort.integer("httpStatus", NONE, 200, 599);
    config.abort.grpcStatus = abort.integer("grpcStatus", NONE, 0, 16);
    if (!abort.has("httpStatus") && !abort.has("grpcStatus") && !config.headerControlled) {
      abort.fail("httpStatus", "is required (200 to 599), or grpcStatus, unless headerControlled is true");
    }
    config.abort.body = abort.string("body", config.abort.body);
    if (config.abort.body.includes("\0")) abort.fail("body", "must not contain NUL");
    config.abort.share = readShare(abort);
    abort.rejectUnknownFields();
  }

  const match = top.object("match");
  config.headers = readHeaderMatches(match, "headers", problems);
  match.rejectUnknownFields();
  top.rejectUnknownFields();
  if (top.ok && problems.length == 0 && !config.delay.enabled && !config.abort.enabled) {
    top.fail("delay", "give delay, abort or both: as configured the filter would inject nothing");
  }
  if (!top.ok) problems.unshift(top.error!);
  if (problems.length > 0) {
    log.error("fault: invalid configuration: " + problems.join("; "));
    return null;
  }
  return config;
}

/** A share for log lines: 250000 → "25 %", 125000 → "12.5 %". */
export function percentText(share: u64): string {
  const whole = share / 10000;
  const rest = share % 10000;
  if (rest == 0) return whole.toString() + " %";
  let decimals = rest.toString();
  while (decimals.length < 4) decimals = "0" + decimals;
  while (decimals.endsWith("0")) decimals = decimals.substring(0, decimals.length - 1);
  return whole.toString() + "." + decimals + " %";
}
