// The module's abort(): AssemblyScript calls it on `throw`, failed assertions and out-of-bounds
// access. asc routes abort here (`--use abort=sdk/assembly/abort/sluiceAbort`), so the module
// imports no `env.abort` and runs in any proxy-wasm host: it logs at critical level, then traps.

import { proxy_log } from "./abi";
import { LogLevel } from "./types";

// The message is assembled in static memory: abort may be called because allocation failed, and
// allocating here would abort again, recursively.
const CAPACITY: usize = 2048;
const BUFFER: usize = memory.data(2048);

/** Appends UTF-8 of `text` at `at`, truncated to what fits; returns the new end. */
function put(at: usize, text: string): usize {
  // A UTF-16 unit takes at most 3 UTF-8 bytes: only encode what surely fits.
  const room = <i32>((BUFFER + CAPACITY - at) / 3);
  const units = min(text.length, room);
  return at + String.UTF8.encodeUnsafe(changetype<usize>(text), units, at);
}

function putNumber(at: usize, value: u32): usize {
  if (BUFFER + CAPACITY - at < 10) return at;
  let digits = 1;
  for (let v = value; v >= 10; v /= 10) digits++;
  let end = at + <usize>digits;
  let v = value;
  for (let i = end; i > at; i--) {
    store<u8>(i - 1, <u8>(0x30 + v % 10));
    v /= 10;
  }
  return end;
}

// Not exported: the build names it by its internal path, and an export would become a Wasm export.
function sluiceAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let at = put(BUFFER, "filter aborted: ");
  at = put(at, message !== null ? message : "(no message)");
  if (fileName !== null) {
    at = put(at, " at ");
    at = put(at, fileName);
    at = put(at, ":");
    at = putNumber(at, line);
    at = put(at, ":");
    at = putNumber(at, column);
  }
  proxy_log(LogLevel.Critical, BUFFER, at - BUFFER);
  unreachable();
}
