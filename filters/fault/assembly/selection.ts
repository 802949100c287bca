// Which requests get a fault: the exact, evenly spread pick behind a percentage, and Envoy's
// request headers that ask for faults when the filter is header-controlled.

import { HeaderMap } from "../../../sdk/assembly";
import { MILLION, NONE } from "./config";

// Envoy's header-controlled faults (headerControlled: true).
export const DELAY_HEADER = "x-envoy-fault-delay-request";
export const DELAY_PERCENTAGE_HEADER = "x-envoy-fault-delay-request-percentage";
export const ABORT_HEADER = "x-envoy-fault-abort-request";
export const ABORT_GRPC_HEADER = "x-envoy-fault-abort-grpc-request";
export const ABORT_PERCENTAGE_HEADER = "x-envoy-fault-abort-request-percentage";

/**
 * Picks `share` millionths of the requests it is asked about, spread evenly: request n (from 0)
 * is picked when floor((n + 1) × share / 10^6) > floor(n × share / 10^6). Any run of 100
 * consecutive requests at 25 % holds exactly 25 picks (the 4th, 8th, ...).
 */
export class Spread {
  private seen: u64 = 0;

  pick(share: u64): bool {
    const before = this.seen * share / MILLION;
    this.seen++;
    return this.seen * share / MILLION > before;
  }
}

/** A header holding a whole number within [min, max], or NONE (absent or not such a number). */
export function headerInteger(headers: HeaderMap, name: string, min: i64, max: i64): i64 {
  const text = headers.get(name);
  if (text === null || text.length == 0 || text.length > 10) return NONE;
  let n: i64 = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return NONE;
    n = n * 10 + <i64>(c - 0x30);
  }
  return n >= min && n <= max ? n : NONE;
}

/** A percentage header ("25", "12.5") in millionths, or NONE. */
function headerShare(headers: HeaderMap, name: string): i64 {
  const text = headers.get(name);
  if (text === null || text.length == 0 || text.length > 12) return NONE;
  let whole: i64 = 0;
  let fraction: i64 = 0;
  let decimals = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x2e /* . */ && decimals < 0 && i > 0) {
      decimals = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return NONE;
    if (decimals < 0) whole = whole * 10 + <i64>(c - 0x30);
    else if (++decimals <= 4) fraction = fraction * 10 + <i64>(c - 0x30);
    else return NONE;
  }
  if (decimals == 0) return NONE; // "25."
  for (let d = decimals < 0 ? 0 : decimals; d < 4; d++) fraction *= 10;
  const share = whole * 10000 + fraction;
  return share <= <i64>MILLION ? share : NONE;
}

/** A configured share, lowered by the request's percentage header when faults are header-controlled. */
export function shareFor(configured: u64, headerControlled: bool, headers: HeaderMap, header: string): u64 {
  if (!headerControlled) return configured;
  const asked = headerShare(headers, header);
  return asked != NONE && <u64>asked < configured ? <u64>asked : configured;
}
