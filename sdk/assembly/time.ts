// Clocks and timers: the host's current time and the root context's tick period.

import { proxy_get_current_time_nanoseconds, proxy_set_tick_period_milliseconds } from "./abi";
import { warnHostCall } from "./errors";
import { RETURN_U64 } from "./memory";
import { Status } from "./types";

/** Wall-clock time in nanoseconds since the Unix epoch (hosts may freeze it during a callback). */
export function currentTimeNanoseconds(): u64 {
  store<u64>(RETURN_U64, 0);
  const status = <Status>proxy_get_current_time_nanoseconds(RETURN_U64);
  if (status != Status.Ok) warnHostCall("proxy_get_current_time_nanoseconds", status);
  return load<u64>(RETURN_U64);
}

/** Wall-clock time in milliseconds since the Unix epoch. */
export function currentTimeMilliseconds(): u64 {
  return currentTimeNanoseconds() / 1_000_000;
}

/** Calls the root context's `onTick` every `milliseconds` (0 stops it). */
export function setTickPeriod(milliseconds: u32): Status {
  const status = <Status>proxy_set_tick_period_milliseconds(milliseconds);
  if (status != Status.Ok) warnHostCall("proxy_set_tick_period_milliseconds", status);
  return status;
}
