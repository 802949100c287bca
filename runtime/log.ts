// The runtime's one log: a JSON line per event, `{"time","level",...}`, and the process-wide level
// below which lines are dropped (`sluice run --log-level`). The proxy's own lines go to stderr;
// filters' proxy_log lines (judged against the filter's own level first) to stdout below warn and
// to stderr from warn, beside the access log.

import { LOG_LEVEL_NAMES } from './abi/constants.ts';

export type LogLevelName = (typeof LOG_LEVEL_NAMES)[number];

/** The level `sluice run` starts with, as Envoy's `--log-level info`. */
export const DEFAULT_LOG_LEVEL: LogLevelName = 'info';

let threshold = LOG_LEVEL_NAMES.indexOf(DEFAULT_LOG_LEVEL);

/** The ABI number (0 trace … 5 critical) of a level name, or undefined when it is not one. */
export function logLevelNumber(name: string): number | undefined {
  const n = LOG_LEVEL_NAMES.indexOf(name as LogLevelName);
  return n < 0 ? undefined : n;
}

/** Sets the process's level: lines below it are dropped. */
export function setLogLevel(level: LogLevelName): void {
  threshold = LOG_LEVEL_NAMES.indexOf(level);
}

/** The process's level as the ABI numbers it (what proxy_get_log_level returns to a filter without its own). */
export function logLevel(): number {
  return threshold;
}

/** Logs `msg` at `level` unless the process's level is above it. */
export function log(level: LogLevelName, msg: string, fields: Record<string, unknown> = {}): void {
  if (LOG_LEVEL_NAMES.indexOf(level) < threshold) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

/** A filter's line (or the host's about a filter), already judged against the filter's own level (runtime/host/vm.ts). */
export function filterLog(level: number, plugin: string, msg: string): void {
  const line = `${JSON.stringify({ time: new Date().toISOString(), level: LOG_LEVEL_NAMES[level] ?? level, plugin, msg })}\n`;
  if (level >= 3) process.stderr.write(line);
  else process.stdout.write(line);
}
