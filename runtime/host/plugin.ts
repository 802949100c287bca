// A plugin: its compiled module, its spec and the VM that serves new streams. It applies the fail
// strategy across VMs: a failed VM is never reused; FAIL_CLOSE waits out a backoff before trying a
// fresh VM, FAIL_RELOAD and FAIL_OPEN start one for the next stream; a plugin that keeps failing
// is quarantined for a backoff that grows while failures continue.

import { compileModule, type CompiledModule } from '../engine/index.ts';
import type { HostEnvironment } from './environment.ts';
import { pluginSpec, type PluginOptions, type PluginSpec } from './plugin-spec.ts';
import { Vm, type CallbackTiming, type VmFailure } from './vm.ts';

export { TIMING_SAMPLE_EVERY } from './vm.ts';

export type PluginState = 'active' | 'quarantined' | 'unavailable';

export interface PluginStats {
  /** VMs started, including the first. */
  vmsStarted: number;
  failures: number;
  quarantines: number;
  streams: number;
  lastFailure?: VmFailure & { at: number };
}

export class Plugin {
  readonly stats: PluginStats = { vmsStarted: 0, failures: 0, quarantines: 0, streams: 0 };
  /** Calls and sampled time per exported callback, across the plugin's VMs. */
  readonly timings = new Map<string, CallbackTiming>();
  /** What its first VM's start-up suggests is wrong although the filter started (shown in /filters). */
  warnings: readonly string[] = [];
  private current?: Vm;
  private quarantinedUntil = 0;
  private lastQuarantineEnd = -Infinity;
  private backoffLevel = 0;
  private recentFailures: number[] = [];
  private closed = false;

  private constructor(
    readonly spec: PluginSpec,
    private readonly module: CompiledModule | undefined,
    readonly env: HostEnvironment,
    /** Why the plugin has no module to run, for a plugin made by Plugin.unavailable(). */
    readonly unavailable?: string,
  ) {}

  /**
   * A plugin with no module to run (node mode: the controller never validated a version of the
   * filter), `reason` saying why. It starts no VM; every stream applies its fail strategy, as
   * for a quarantined plugin: FAIL_OPEN skips it, the others answer 503 naming it and `reason`.
   */
  static unavailable(options: PluginOptions, reason: string, env: HostEnvironment): Plugin {
    const plugin = new Plugin(pluginSpec(options), undefined, env, reason);
    env.log({ plugin: plugin.name, level: plugin.spec.failStrategy === 'FAIL_OPEN' ? 3 : 4, message: `filter unavailable: ${reason}; ${plugin.spec.failStrategy === 'FAIL_OPEN' ? 'its streams skip it (FAIL_OPEN)' : `its streams are refused (failStrategy ${plugin.spec.failStrategy})`}` });
    return plugin;
  }

  /** The compiled module (none for an unavailable plugin). */
  get compiled(): CompiledModule {
    if (!this.module) throw new Error(`filter ${this.name} is unavailable (${this.unavailable}); it has no module`);
    return this.module;
  }

  /** Compiles (cached by digest) and starts the first VM; throws a SluiceError when the filter refuses to start or configure. */
  static async load(module: Uint8Array | CompiledModule, options: PluginOptions, env: HostEnvironment): Promise<Plugin> {
    const spec = pluginSpec(options);
    const compiled = module instanceof Uint8Array ? await compileModule(module, { memoryLimitBytes: spec.limits.memoryBytes }) : module;
    const plugin = new Plugin(spec, compiled, env);
    plugin.current = plugin.startVm();
    // Said once per plugin: every VM of it would say the same.
    plugin.warnings = plugin.current.warnings;
    for (const message of plugin.warnings) env.log({ plugin: plugin.name, level: 3, message });
    return plugin;
  }

  get name(): string {
    return this.spec.name;
  }

  get digest(): string {
    return this.module?.digest ?? '';
  }

  get state(): PluginState {
    if (this.unavailable !== undefined) return 'unavailable';
    return this.quarantinedUntil > this.env.now() ? 'quarantined' : 'active';
  }

  /** The VM of the plugin's current instance, when there is a healthy one. */
  /** The callbacks the filter was called in, with their counts and sampled time. */
  get callbackTimings(): Array<[string, CallbackTiming]> {
    return [...this.timings].filter(([, t]) => t.calls > 0);
  }

  get vm(): Vm | undefined {
    return this.current && !this.current.failed ? this.current : undefined;
  }

  /** The VM a new stream should use, or undefined while the plugin is quarantined, or when it is unavailable. */
  vmForStream(): Vm | undefined {
    if (this.closed || this.unavailable !== undefined) return undefined;
    if (this.current && !this.current.failed) return this.current;
    const now = this.env.now();
    if (this.quarantinedUntil > now) return undefined;
    if (this.quarantinedUntil !== 0) {
      this.lastQuarantineEnd = this.quarantinedUntil;
      this.quarantinedUntil = 0;
    }
    try {
      this.current = this.startVm();
      return this.current;
    } catch (error) {
      this.env.log({ plugin: this.name, level: 4, message: `starting a fresh VM failed: ${(error as Error).message}` });
      this.recordFailure({ kind: 'start', message: (error as Error).message, callback: 'start-up' }, true);
      return undefined;
    }
  }

  private startVm(): Vm {
    const vm = new Vm(this.spec, this.compiled, this.env, { failed: (failedVm, failure) => this.vmFailed(failedVm, failure), timings: this.timings });
    this.stats.vmsStarted++;
    vm.start();
    return vm;
  }

  private vmFailed(vm: Vm, failure: VmFailure): void {
    if (vm !== this.current) return;
    this.recordFailure(failure, this.spec.failStrategy === 'FAIL_CLOSE');
  }

  private recordFailure(failure: VmFailure, quarantineNow: boolean): void {
    const now = this.env.now();
    this.stats.failures++;
    this.stats.lastFailure = { ...failure, at: now };
    const q = this.spec.quarantine;
    this.recentFailures = this.recentFailures.filter((t) => now - t < q.windowMs);
    this.recentFailures.push(now);
    if (quarantineNow || this.recentFailures.length >= q.failures) this.quarantine(now);
  }

  private quarantine(now: number): void {
    const q = this.spec.quarantine;
    // Backoff grows while quarantines follow each other within the failure window.
    this.backoffLevel = now - this.lastQuarantineEnd < q.windowMs ? this.backoffLevel + 1 : 0;
    const period = Math.min(q.maxBackoffMs, q.backoffMs * 2 ** this.backoffLevel);
    this.quarantinedUntil = now + period;
    this.recentFailures = [];
    this.stats.quarantines++;
    this.env.log({ plugin: this.name, level: 4, message: `filter quarantined for ${period} ms after failures; last: ${this.stats.lastFailure?.message}` });
  }

  /** Stops the plugin: no new streams; the root context is shut down once in-flight streams are gone. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const vm = this.current;
    if (!vm) return;
    vm.closed = true;
    // Streams still open finish on this VM; poll until they are gone, then shut the root context down.
    const shutdown = (): void => (vm.contexts.size === 0 ? vm.shutdown() : void setTimeout(shutdown, 50).unref());
    shutdown();
  }
}
