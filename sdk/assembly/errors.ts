// How the SDK reports a host call that did not succeed: a message naming the host function and
// the status it returned (`proxy_get_header_map_value returned BAD_ARGUMENT(2)`), then either a
// warning (the caller can go on) or a trap (the SDK's state can no longer be trusted).

import { log } from "./log";
import { Status, statusName } from "./types";

/** `<hostFunction> returned <STATUS(n)>[ (<detail>)]`. */
export function hostCallMessage(hostFunction: string, status: Status, detail: string = ""): string {
  let message = hostFunction + " returned " + statusName(status);
  if (detail.length > 0) message += " (" + detail + ")";
  return message;
}

/** Logs a failed host call at warn level and hands the status back to the caller. */
export function warnHostCall(hostFunction: string, status: Status, detail: string = ""): Status {
  log.warn(hostCallMessage(hostFunction, status, detail));
  return status;
}

/**
 * Stops the filter: logs the failed host call at critical level (through abort) and traps. The
 * host then applies the plugin's fail strategy. Used only where carrying on would be a lie.
 */
export function failHostCall(hostFunction: string, status: Status, detail: string = ""): void {
  panic(hostCallMessage(hostFunction, status, detail));
}

/** Stops the filter with a message: logged at critical level, then a trap. */
export function panic(message: string): void {
  // `throw` compiles to a call of abort(), which the SDK routes to proxy_log + unreachable.
  throw new Error(message);
}
