// What a plugin's VMs need from their surroundings: logging, clocks and timers, the node-wide
// metric/shared-data/queue stores, HTTP calls to clusters and foreign functions. The proxy and the
// test harness each supply one; `createEnvironment` fills in real-time defaults.

import type { HttpCallRequest } from '../abi/host-functions.ts';
import { filterLog, logLevel } from '../log.ts';
import { MetricStore } from './metrics.ts';
import { SharedData } from './shared-data.ts';
import { SharedQueues } from './shared-queues.ts';

export interface LogEntry {
  plugin: string;
  level: number;
  message: string;
}

export interface HttpCallResponse {
  /** Response headers (with `:status`); empty when the call failed (reset, timeout, no upstream). */
  headers: Array<[string, string]>;
  body: Uint8Array;
  trailers: Array<[string, string]>;
}

export type ForeignFunction = (args: Uint8Array, plugin: string) => Uint8Array | { status: number };

export interface NodeInfo {
  id: string;
  cluster: string;
  metadata: Record<string, string>;
}

export interface HostEnvironment {
  log(entry: LogEntry): void;
  /** Minimum level a filter's proxy_log is emitted at (0 trace ... 5 critical), unless its plugin sets its own. Default: the process's (runtime/log.ts). */
  logLevel: number;
  /** Wall clock, milliseconds since the epoch (fractional allowed). */
  now(): number;
  /** Repeating timer; returns a function that cancels it. */
  every(ms: number, fn: () => void): () => void;
  /** Runs `fn` soon, after the current guest call and its caller returned. */
  defer(fn: () => void): void;
  metrics: MetricStore;
  sharedData: SharedData;
  queues: SharedQueues;
  /** True when `cluster` names a configured upstream cluster. */
  hasCluster(cluster: string): boolean;
  /** Dispatches an HTTP call; `done` is called exactly once, never synchronously. */
  httpCall(plugin: string, request: HttpCallRequest, done: (response: HttpCallResponse) => void): void;
  foreignFunctions: Map<string, ForeignFunction>;
  node: NodeInfo;
}

export function createEnvironment(overrides: Partial<HostEnvironment> = {}): HostEnvironment {
  const defer = overrides.defer ?? ((fn: () => void) => void setImmediate(fn));
  return {
    log: (e) => filterLog(e.level, e.plugin, e.message),
    logLevel: logLevel(),
    now: () => performance.timeOrigin + performance.now(),
    every: (ms, fn) => {
      const t = setInterval(fn, ms);
      t.unref();
      return () => clearInterval(t);
    },
    defer,
    metrics: new MetricStore(),
    sharedData: new SharedData(),
    queues: new SharedQueues(defer),
    hasCluster: () => false,
    httpCall: (_plugin, _request, done) => defer(() => done({ headers: [], body: new Uint8Array(0), trailers: [] })),
    foreignFunctions: new Map(),
    node: { id: 'sluice-local', cluster: 'sluice', metadata: {} },
    ...overrides,
  };
}
