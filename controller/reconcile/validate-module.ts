// Validation before any node sees a version: compile the module and start it in Sluice's own
// host, under the same containment as on a node (time budget, memory ceiling, capabilities),
// running proxy_on_vm_start and proxy_on_configure with the filter's configuration. A refusal
// carries the filter's own log lines.

import { DEFAULT_LIMITS, Plugin, SluiceError, LOG_LEVEL_NAMES, createEnvironment, type PluginOptions } from '../../runtime/index.ts';
import { vmEnvironment, type WasmFilterSpec } from '../crd/index.ts';
import { ControllerError, type ControllerErrorCode } from '../errors.ts';

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** The longest one call into a filter may run during validation (the filter's own callBudgetMs if lower). */
export const VALIDATION_CALL_BUDGET_MS = 2000;
/** The most memory a filter's VM may have during validation (its own memoryBytes if lower). */
export const VALIDATION_MEMORY_BYTES = 256 * 1024 * 1024;

// One validation at a time: each is about a millisecond, and this bounds the memory filters under
// validation can take in the controller to one VM's ceiling.
let queue: Promise<unknown> = Promise.resolve();
function oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

/** The host's plugin options for a WasmFilter spec. */
export function pluginOptions(name: string, spec: WasmFilterSpec): PluginOptions {
  return {
    name,
    rootId: spec.rootId ?? '',
    vmId: spec.vmId ?? '',
    configuration: spec.pluginConfig === undefined ? undefined : typeof spec.pluginConfig === 'string' ? spec.pluginConfig : JSON.stringify(spec.pluginConfig),
    failStrategy: spec.failStrategy ?? 'FAIL_CLOSE',
    limits: spec.limits,
    capabilities: spec.capabilities as PluginOptions['capabilities'],
    // The nodes' VMs see the same variables (node-config.ts renders them as the filter's environment).
    environment: vmEnvironment(spec),
  };
}

const CODE_FOR: Record<string, ControllerErrorCode> = {
  SLUICE_ERR_MODULE_INVALID: 'SLUICE_ERR_FILTER_VALIDATION',
  SLUICE_ERR_MODULE_LINK: 'SLUICE_ERR_FILTER_NOT_PROXY_WASM',
  SLUICE_ERR_ABI_UNSUPPORTED: 'SLUICE_ERR_FILTER_NOT_PROXY_WASM',
  SLUICE_ERR_ABI_MISSING_EXPORT: 'SLUICE_ERR_FILTER_NOT_PROXY_WASM',
  SLUICE_ERR_PLUGIN_START: 'SLUICE_ERR_FILTER_START',
  SLUICE_ERR_PLUGIN_CONFIGURE: 'SLUICE_ERR_FILTER_CONFIG_REFUSED',
  SLUICE_ERR_PLUGIN_CONFIG: 'SLUICE_ERR_FILTER_INVALID',
};

const ADVICE: Partial<Record<ControllerErrorCode, string>> = {
  SLUICE_ERR_FILTER_VALIDATION: 'rebuild the module for wasm32 with one exported memory, or raise spec.limits.memoryBytes',
  SLUICE_ERR_FILTER_NOT_PROXY_WASM: 'build it with a proxy-wasm SDK (the AssemblyScript SDK: `sluice new`)',
  SLUICE_ERR_FILTER_START: 'the filter\'s own log lines, if it wrote any, are in this message; the last good version stays in force',
  SLUICE_ERR_FILTER_CONFIG_REFUSED: 'fix spec.pluginConfig as the filter log lines say; the last good version stays in force',
  SLUICE_ERR_FILTER_INVALID: 'fix the WasmFilter spec',
};

export interface Validated {
  durationMs: number;
  /** What the filter logged while starting (info and above). */
  logs: string[];
}

/** Starts the module as a plugin and shuts it down again; throws a ControllerError saying why it is refused. */
export function validateModule(bytes: Uint8Array, name: string, spec: WasmFilterSpec): Promise<Validated> {
  return oneAtATime(() => validate(bytes, name, spec));
}

async function validate(bytes: Uint8Array, name: string, spec: WasmFilterSpec): Promise<Validated> {
  if (bytes.length < 8 || WASM_MAGIC.some((b, i) => bytes[i] !== b)) {
    const head = Buffer.from(bytes.subarray(0, 16)).toString('hex');
    throw new ControllerError('SLUICE_ERR_FILTER_NOT_WASM', `the module is not WebAssembly (${bytes.length} bytes starting ${head || '(empty)'}, not \\0asm); point the source at the compiled .wasm file`);
  }
  const logs: string[] = [];
  const env = createEnvironment({
    logLevel: 2,
    log: (e) => void logs.push(`${LOG_LEVEL_NAMES[e.level] ?? e.level}: ${e.message}`),
    // A filter under validation reaches nothing: no clusters, no HTTP calls.
    hasCluster: () => false,
  });
  const started = performance.now();
  let plugin: Plugin | undefined;
  const options = pluginOptions(name, spec);
  // Validation runs on the controller's event loop: a call may take the filter's own budget, but
  // never more than VALIDATION_CALL_BUDGET_MS, so one filter cannot stall the controller long
  // enough to lose its Lease (renew deadline: 10 s by default).
  const budget = Math.min(spec.limits?.callBudgetMs ?? DEFAULT_LIMITS.callBudgetMs, VALIDATION_CALL_BUDGET_MS);
  // Likewise memory: a filter that grows to gigabytes at start must not take the controller down.
  const memory = Math.min(spec.limits?.memoryBytes ?? DEFAULT_LIMITS.memoryBytes, VALIDATION_MEMORY_BYTES);
  options.limits = { ...options.limits, callBudgetMs: budget, memoryBytes: memory };
  try {
    plugin = await Plugin.load(bytes, options, env);
    return { durationMs: performance.now() - started, logs };
  } catch (error) {
    const code = error instanceof SluiceError ? CODE_FOR[error.code] : undefined;
    if (!code) throw new ControllerError('SLUICE_ERR_FILTER_VALIDATION', `validation failed: ${(error as Error).message}`, { cause: error });
    const advice = ADVICE[code];
    const capped = [
      budget < (spec.limits?.callBudgetMs ?? 0) ? ` (validation gives each call at most ${VALIDATION_CALL_BUDGET_MS} ms, whatever callBudgetMs says)` : '',
      memory < (spec.limits?.memoryBytes ?? 0) ? ` (validation gives the VM at most ${VALIDATION_MEMORY_BYTES} bytes of memory, whatever memoryBytes says)` : '',
    ].join('');
    throw new ControllerError(code, `${(error as Error).message}${capped}${advice ? `; ${advice}` : ''}`, { cause: error });
  } finally {
    plugin?.close();
  }
}
