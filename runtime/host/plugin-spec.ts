// A plugin's definition: module + configuration + root id + fail strategy + limits + capabilities.
// Defaults live here and nowhere else; `pluginSpec` validates, fills in and freezes.

import { SluiceError } from '../errors.ts';

export type FailStrategy = 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
export const FAIL_STRATEGIES: readonly FailStrategy[] = ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD'];

export interface PluginLimits {
  /** Wall-clock budget of one call into the filter. */
  callBudgetMs: number;
  /** Ceiling of the VM's linear memory. */
  memoryBytes: number;
  /** Largest body a filter may buffer; beyond it the request gets 413 (the response 500). */
  bodyBytes: number;
}

export interface PluginCapabilities {
  /** proxy_http_call: true for any configured cluster, a list to allow only those clusters, false for none. */
  httpCalls: boolean | readonly string[];
  sharedData: boolean;
  sharedQueues: boolean;
  foreignFunctions: boolean;
}

export interface QuarantinePolicy {
  /** Failures within `windowMs` that quarantine a plugin. */
  failures: number;
  windowMs: number;
  /** First quarantine period; it doubles on each quarantine that follows closely, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
}

export interface PluginSpec {
  readonly name: string;
  readonly rootId: string;
  readonly vmId: string;
  readonly configuration: Uint8Array;
  readonly vmConfiguration: Uint8Array;
  readonly failStrategy: FailStrategy;
  readonly limits: Readonly<PluginLimits>;
  readonly capabilities: Readonly<PluginCapabilities>;
  readonly quarantine: Readonly<QuarantinePolicy>;
  /** What WASI environ_get serves the plugin's VMs, in this order: these variables and nothing else. */
  readonly environment: Readonly<Record<string, string>>;
  /** The plugin's own log level (0 trace … 5 critical): what proxy_get_log_level returns to it and below which its lines are dropped. Absent: the host's. */
  readonly logLevel?: number;
}

export interface PluginOptions {
  name: string;
  rootId?: string;
  vmId?: string;
  /** What proxy_on_configure reads: a string as-is, bytes as-is, anything else as JSON. */
  configuration?: unknown;
  vmConfiguration?: unknown;
  failStrategy?: FailStrategy;
  limits?: Partial<PluginLimits>;
  capabilities?: Partial<PluginCapabilities>;
  quarantine?: Partial<QuarantinePolicy>;
  /** Environment variables the filter reads through WASI (Istio's vmConfig.env); default none. */
  environment?: Readonly<Record<string, string>>;
  logLevel?: number;
}

/** A variable name the environment takes: a letter or "_", then letters, digits and "_" (as the WasmFilter CRD). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const DEFAULT_LIMITS: PluginLimits = { callBudgetMs: 50, memoryBytes: 64 * 1024 * 1024, bodyBytes: 1024 * 1024 };
export const DEFAULT_CAPABILITIES: PluginCapabilities = { httpCalls: true, sharedData: true, sharedQueues: true, foreignFunctions: true };
export const DEFAULT_QUARANTINE: QuarantinePolicy = { failures: 5, windowMs: 60_000, backoffMs: 5_000, maxBackoffMs: 300_000 };

export function pluginSpec(options: PluginOptions): PluginSpec {
  const bad = (what: string) => {
    throw new SluiceError('SLUICE_ERR_PLUGIN_CONFIG', `filter "${options.name}": ${what}`);
  };
  if (typeof options.name !== 'string' || options.name === '') bad('name must be a non-empty string');
  const failStrategy = options.failStrategy ?? 'FAIL_CLOSE';
  if (!FAIL_STRATEGIES.includes(failStrategy)) bad(`failStrategy "${failStrategy}" is not one of ${FAIL_STRATEGIES.join(', ')}`);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  for (const [k, v] of Object.entries(limits)) if (!Number.isFinite(v) || v <= 0) bad(`limits.${k} must be a positive number, got ${v}`);
  const quarantine = { ...DEFAULT_QUARANTINE, ...options.quarantine };
  for (const [k, v] of Object.entries(quarantine)) if (!Number.isFinite(v) || v <= 0) bad(`quarantine.${k} must be a positive number, got ${v}`);
  const logLevel = options.logLevel;
  if (logLevel !== undefined && !(Number.isInteger(logLevel) && logLevel >= 0 && logLevel <= 5)) bad(`logLevel must be 0 (trace) to 5 (critical), got ${logLevel}`);
  const environment = { ...options.environment };
  for (const [k, v] of Object.entries(environment)) {
    if (!ENV_NAME.test(k)) bad(`environment variable name ${JSON.stringify(k)} is not a letter or "_" followed by letters, digits and "_"`);
    if (typeof v !== 'string' || v.includes('\0')) bad(`environment variable ${k} must be a string without NUL characters`);
  }
  return Object.freeze({
    name: options.name,
    rootId: options.rootId ?? '',
    vmId: options.vmId ?? '',
    configuration: toBytes(options.configuration),
    vmConfiguration: toBytes(options.vmConfiguration),
    failStrategy,
    limits: Object.freeze(limits),
    capabilities: Object.freeze({ ...DEFAULT_CAPABILITIES, ...options.capabilities }),
    quarantine: Object.freeze(quarantine),
    environment: Object.freeze(environment),
    ...(logLevel === undefined ? {} : { logLevel }),
  });
}

function toBytes(value: unknown): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  return new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
}
