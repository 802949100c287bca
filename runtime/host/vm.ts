// The life of one instance of a plugin's module: instantiate (refused capabilities linked as
// stubs), start and configure, calls into the guest, failure, and shutdown. Every entry into the
// guest goes through `enter`, which sets the effective context, arms the time budget and turns a
// trap into a VM failure. What the host functions act on is the VM's AbiContext (abi-context.ts).

import { ABI_MARKERS, type AbiVersion } from '../abi/constants.ts';
import { GuestAbort, hostFunctions, type Capability } from '../abi/host-functions.ts';
import { GuestMemory } from '../abi/memory.ts';
import { toolchainFunctions, wasiFunctions } from '../abi/wasi.ts';
import { instantiate, describeGuestFailure, type CompiledModule, type GuestInstance } from '../engine/index.ts';
import { SluiceError } from '../errors.ts';
import { AbiContext } from './abi-context.ts';
import type { HostEnvironment } from './environment.ts';
import type { FilterContext } from './filter-context.ts';
import { ContextTable } from './context-table.ts';
import type { PluginCapabilities, PluginSpec } from './plugin-spec.ts';

type GuestFn = ((...args: number[]) => number) & { arity: number; timing: CallbackTiming };

/** Calls into one exported function, and the time of the sampled ones. */
export interface CallbackTiming {
  calls: number;
  timed: number;
  timedMs: number;
}

/** One call in this many is timed: reading the clock around every call would cost more than many filters do. */
export const TIMING_SAMPLE_EVERY = 16;


/** Returned by a callback whose guest call failed (trap, budget, abort). */
export const FAILED = -1;

export interface VmFailure {
  kind: string;
  message: string;
  callback: string;
}

export interface VmEvents {
  /** The VM failed in a guest call; it is dead from now on. */
  failed(vm: Vm, failure: VmFailure): void;
  /** Where calls per export are counted and timed; shared by a plugin's successive VMs. */
  timings?: Map<string, CallbackTiming>;
}

export interface RootContextState {
  readonly id: number;
}

/** The capabilities a plugin is refused: their host functions are linked as stubs. */
export function refusedCapabilities(caps: Readonly<PluginCapabilities>): Set<Capability> {
  const refused = new Set<Capability>(['grpc_call']);
  if (caps.httpCalls === false) refused.add('http_call');
  if (!caps.sharedData) refused.add('shared_data');
  if (!caps.sharedQueues) refused.add('shared_queue');
  if (!caps.foreignFunctions) refused.add('foreign_function');
  return refused;
}

export class Vm {
  readonly abiVersion: AbiVersion;
  readonly mem: GuestMemory;
  readonly rootContextId: number;
  failed?: VmFailure;
  /** Live stream contexts by id. */
  readonly contexts = new ContextTable<FilterContext>();

  /** What the host functions act on. */
  readonly abi: AbiContext;
  readonly root: RootContextState;
  /** Set by the plugin when this VM is replaced or the plugin removed. */
  closed = false;
  /** What start-up suggests is wrong although the module started (see `checkStart`). */
  readonly warnings: string[] = [];

  private readonly guest: GuestInstance;
  private readonly fns: Record<string, GuestFn | undefined>;
  private nextContextId = 1;
  /** The stream context whose callback the filter chain is running now (it handles that context's actions itself). */
  private inStream?: FilterContext;
  private depth = 0;

  constructor(
    readonly spec: PluginSpec,
    compiled: CompiledModule,
    readonly env: HostEnvironment,
    private readonly events: VmEvents,
  ) {
    const version = ABI_MARKERS.find(([name]) => compiled.exports.has(name));
    if (!version) {
      throw new SluiceError(
        'SLUICE_ERR_ABI_UNSUPPORTED',
        `filter "${spec.name}": the module exports none of ${ABI_MARKERS.map(([n]) => n).join(', ')}; ` +
          'build it with a proxy-wasm SDK (ABI 0.1.0, 0.2.0 or 0.2.1)',
      );
    }
    this.abiVersion = version[1];
    this.root = { id: this.nextContextId++ };
    this.rootContextId = this.root.id;
    const self = this;
    // The import object is built before the instance exists; memory and allocator resolve lazily.
    let guest: GuestInstance | undefined;
    this.mem = new GuestMemory(
      { get buffer() { return guest!.memory.buffer; } },
      compiled.exports.has('proxy_on_memory_allocate') || compiled.exports.has('malloc') ? (size) => self.allocate(size) : undefined,
    );
    const abi = (this.abi = new AbiContext(this));
    const wasi = wasiFunctions(abi, spec.environment);
    const imports = {
      env: { ...toolchainFunctions(abi), ...hostFunctions(abi, refusedCapabilities(spec.capabilities)) },
      wasi_snapshot_preview1: wasi,
      wasi_unstable: wasi,
    };
    try {
      guest = instantiate(compiled, imports as Record<string, Record<string, Function>>, {
        callBudgetMs: spec.limits.callBudgetMs,
        onMissingImport: (module, name) => abi.log(4, `called ${module}.${name}, which Sluice does not provide`),
        // A Wasm start function may call host functions, which need the memory: hand it over first.
        onInstance: (g) => {
          guest = g;
        },
      });
    } catch (error) {
      throw new SluiceError('SLUICE_ERR_PLUGIN_START', `filter "${spec.name}": instantiating the module failed: ${(error as Error).message}`, { cause: error });
    }
    this.guest = guest;
    const fns: Record<string, GuestFn | undefined> = {};
    for (const [name, value] of Object.entries(guest.exports)) {
      if (typeof value !== 'function') continue;
      // Read once: `length` of an exported Wasm function is a slow property on every call.
      let timing = events.timings?.get(name);
      if (!timing) events.timings?.set(name, (timing = { calls: 0, timed: 0, timedMs: 0 }));
      fns[name] = Object.assign(value, { arity: value.length, timing }) as GuestFn;
    }
    this.fns = fns;
  }

  /** Runs start-up, creates the root context, then proxy_on_vm_start and proxy_on_configure. */
  start(): void {
    const abi = this.abi;
    abi.startLog = [];
    abi.startSeen = { rootId: false, configuration: false };
    try {
      this.startUp();
      this.checkStart(abi.startSeen);
    } finally {
      abi.startLog = undefined;
      abi.startSeen = undefined;
    }
  }

  /**
   * A module whose SDK picks its root context by root id may find none for the configured id and
   * then do nothing at all, without refusing to start: the C++ SDK builds a default root context
   * that accepts any configuration and passes every stream. What the host can see is a module
   * that was given a configuration and never read it.
   */
  private checkStart(seen: { rootId: boolean; configuration: boolean }): void {
    const size = this.spec.configuration.byteLength;
    if (size === 0 || seen.configuration) return;
    const unread = `filter "${this.spec.name}": the module never read its configuration (${size} bytes) while starting`;
    const rootId = this.spec.rootId;
    let advice = '; it may ignore it';
    if (seen.rootId && rootId === '') {
      advice = ', and it read its root id (""): its SDK may have no root context registered under the empty id and then does nothing. ' +
        'Set rootId to the id the module registers its root context under';
    } else if (seen.rootId) {
      advice = `, and it read its root id ("${rootId}"): its SDK may have no root context registered under that id and then does nothing. ` +
        'Check rootId: C++ SDK modules usually register under "" (leave rootId out), AssemblyScript ones under the id they pass to their registration';
    }
    this.warnings.push(unread + advice);
  }

  private startUp(): void {
    const name = this.spec.name;
    const startFn = this.fns._initialize ?? this.fns._start;
    if (startFn) this.must(this.enter(this.root, startFn, 'start-up'), 'start-up (_initialize/_start)');
    if (this.fns._initialize && this.fns.main) this.must(this.enter(this.root, this.fns.main, 'main', 0, 0), 'main');
    if (!this.mem.canAllocate) {
      throw new SluiceError('SLUICE_ERR_ABI_MISSING_EXPORT', `filter "${name}": the module exports neither proxy_on_memory_allocate nor malloc, so the host cannot hand it data`);
    }
    this.must(this.call(this.root, 'proxy_on_context_create', this.root.id, 0), 'proxy_on_context_create');
    // A callback the module does not export counts as success, as in Envoy: no proxy_on_vm_start
    // means the VM started, no proxy_on_configure means the configuration is accepted.
    if (this.has('proxy_on_vm_start')) {
      const vmStart = this.call(this.root, 'proxy_on_vm_start', this.root.id, this.spec.vmConfiguration.byteLength);
      this.must(vmStart, 'proxy_on_vm_start');
      if (vmStart === 0) throw new SluiceError('SLUICE_ERR_PLUGIN_START', `filter "${name}": proxy_on_vm_start returned false${this.startLogText()}`);
    }
    if (this.has('proxy_on_configure')) {
      const configured = this.call(this.root, 'proxy_on_configure', this.root.id, this.spec.configuration.byteLength);
      this.must(configured, 'proxy_on_configure');
      if (configured === 0) {
        throw new SluiceError('SLUICE_ERR_PLUGIN_CONFIGURE', `filter "${name}": proxy_on_configure rejected the configuration${this.startLogText()}`);
      }
    }
  }

  private must(result: number, what: string): void {
    if (result === FAILED) {
      throw new SluiceError('SLUICE_ERR_PLUGIN_START', `filter "${this.spec.name}": ${what} failed: ${this.failed?.message}${this.startLogText()}`);
    }
  }

  /** What the filter logged at warn or above while starting, for the error that says why it did not start. */
  private startLogText(): string {
    const lines = this.abi.startLog ?? [];
    return lines.length === 0 ? ' (the filter logged no warning or error saying why)' : `: ${lines.join('; ')}`;
  }

  // ---- Entering the guest -------------------------------------------------------------------

  /** Calls an exported callback by name; missing callbacks answer 0. */
  call(ctx: FilterContext | RootContextState, name: string, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    if (this.failed) return FAILED;
    const fn = this.fns[name];
    return fn ? this.enter(ctx, fn, name, a, b, c, d, e) : 0;
  }

  /** Whether the module exports a callback. */
  has(name: string): boolean {
    return this.fns[name] !== undefined;
  }

  private enter(ctx: FilterContext | RootContextState, fn: GuestFn, name: string, a = 0, b = 0, c = 0, d = 0, e = 0): number {
    if (this.failed) return FAILED;
    const outer = this.depth === 0;
    const abi = this.abi;
    const saved = abi.effective;
    abi.effective = ctx;
    this.depth++;
    // Re-entrant calls (a foreign function calling back in) run under the outer call's budget.
    if (outer) this.guest.beginCall();
    const timing = fn.timing;
    const timed = outer && ++timing.calls % TIMING_SAMPLE_EVERY === 0;
    const started = timed ? performance.now() : 0;
    try {
      // Exactly as many arguments as the export takes: V8 calls Wasm through a slow generic
      // wrapper when the count differs.
      switch (fn.arity) {
        case 0:
          return fn() | 0;
        case 1:
          return fn(a) | 0;
        case 2:
          return fn(a, b) | 0;
        case 3:
          return fn(a, b, c) | 0;
        case 4:
          return fn(a, b, c, d) | 0;
        default:
          return fn(a, b, c, d, e) | 0;
      }
    } catch (error) {
      this.fail(error, name);
      return FAILED;
    } finally {
      this.depth--;
      abi.effective = saved;
      if (timed) {
        timing.timed++;
        timing.timedMs += performance.now() - started;
      }
      if (outer) this.afterCall();
    }
  }

  /** Runs a stream callback for the filter chain, which handles that context's own actions itself. */
  streamCall(ctx: FilterContext, name: string, a = 0, b = 0, c = 0): number {
    if (this.failed) return FAILED;
    const fn = this.fns[name];
    if (!fn) return 0;
    this.inStream = ctx;
    try {
      return this.enter(ctx, fn, name, ctx.id, a, b, c);
    } finally {
      this.inStream = undefined;
    }
  }

  private allocate(size: number): number {
    const fn = this.fns.proxy_on_memory_allocate ?? this.fns.malloc!;
    try {
      return fn(size);
    } catch (error) {
      // A trap in the allocator ends the whole outer guest call.
      throw new GuestAbort(`the filter's allocator failed: ${(error as Error).message}`, { cause: error });
    }
  }

  private fail(error: unknown, callback: string): void {
    // A GuestAbort without a cause is the filter ending itself (abort, proc_exit); with one, a
    // failure inside a nested guest call (the allocator) that ended the outer call.
    const selfAbort = error instanceof GuestAbort && !error.cause;
    let described: { kind: string; message: string };
    if (selfAbort) described = { kind: 'abort', message: (error as Error).message };
    else if (error instanceof GuestAbort) described = { kind: describeGuestFailure(error.cause, this.guest).kind, message: error.message };
    else described = describeGuestFailure(error, this.guest);
    this.failed = { kind: described.kind, message: `${described.message} (in ${callback})`, callback };
    this.abi.stopTick();
    this.env.log({ plugin: this.spec.name, level: 4, message: `filter failed in ${callback}: ${this.failed.message}` });
    this.events.failed(this, this.failed);
    for (const ctx of this.contexts.values()) this.abi.touched.add(ctx);
  }

  private afterCall(): void {
    const touched = this.abi.touched;
    if (touched.size === 0) return;
    const woken = [...touched];
    touched.clear();
    // Actions a filter took on other streams (after an HTTP call, a tick, a queue) take effect
    // once the guest call that took them has returned.
    for (const ctx of woken) if (ctx !== this.inStream || this.failed) this.env.defer(() => ctx.wake());
  }

  // ---- Stream contexts ----------------------------------------------------------------------

  /** Creates a stream context (proxy_on_context_create(id, root)); FAILED when the VM failed. */
  createContext(ctx: FilterContext): number {
    this.contexts.add(ctx);
    return this.call(ctx, 'proxy_on_context_create', ctx.id, this.root.id);
  }

  newContextId(): number {
    return this.nextContextId++;
  }

  /** proxy_on_log, proxy_on_done, proxy_on_delete happen in that order through `endContext`. */
  endContext(ctx: FilterContext, log: boolean): void {
    if (log) this.call(ctx, 'proxy_on_log', ctx.id);
    this.call(ctx, 'proxy_on_done', ctx.id);
    this.call(ctx, 'proxy_on_delete', ctx.id);
    this.contexts.delete(ctx);
  }

  /** Hands a host-initiated foreign function call to the root context (proxy_on_foreign_function). */
  callForeign(functionId: number, args: Uint8Array): number {
    return this.abi.withForeignArgs(args, () => this.callRoot('proxy_on_foreign_function', functionId, args.byteLength));
  }

  /** Calls a root context callback: its first argument is the root context's id. */
  callRoot(name: string, a = 0, b = 0, c = 0, d = 0): number {
    return this.call(this.root, name, this.root.id, a, b, c, d);
  }

  /** Shuts the root context down: proxy_on_done (waiting for proxy_done if it says false), then proxy_on_delete. */
  shutdown(): void {
    this.abi.stopTick();
    if (this.failed) return;
    // A root without proxy_on_done is done at once: there is nobody to call proxy_done later.
    const done = this.has('proxy_on_done') ? this.call(this.root, 'proxy_on_done', this.root.id) : 1;
    if (done === 0 && !this.failed) {
      this.abi.awaitDone();
      return;
    }
    this.call(this.root, 'proxy_on_delete', this.root.id);
  }

  /** The guest's raw exports, for tests that call into a module directly (test/helpers/probe.ts). */
  get guestExports(): Record<string, unknown> {
    return this.guest.exports;
  }

  get memoryBytes(): number {
    return this.guest.memory.buffer.byteLength;
  }

}
