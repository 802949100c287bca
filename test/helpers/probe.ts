// Drives test/fixtures/abi/probe.wat: records every callback the host makes into it, lets a test
// run code inside any callback (through the probe's "hook" foreign function), call any host
// function with any arguments through the probe's `call_<name>` trampolines, and read and write
// guest memory.
//
// The trampolines are reached through `vm.guestExports`, guest memory through `vm.mem`.

import { Buffer } from 'node:buffer';
import { FilterHarness, type FilterSource, type HarnessOptions } from '../../sdk/harness/index.ts';
import type { Vm } from '../../runtime/host/vm.ts';
import { fixture } from './fixtures.ts';

/** Callback ids the probe passes to "hook", by position. */
export const CALLBACKS = [
  '_initialize',
  'proxy_on_context_create',
  'proxy_on_vm_start',
  'proxy_on_configure',
  'proxy_on_tick',
  'proxy_on_done',
  'proxy_on_log',
  'proxy_on_delete',
  'proxy_on_new_connection',
  'proxy_on_downstream_data',
  'proxy_on_downstream_connection_close',
  'proxy_on_upstream_data',
  'proxy_on_upstream_connection_close',
  'proxy_on_request_headers',
  'proxy_on_request_body',
  'proxy_on_request_trailers',
  'proxy_on_request_metadata',
  'proxy_on_response_headers',
  'proxy_on_response_body',
  'proxy_on_response_trailers',
  'proxy_on_response_metadata',
  'proxy_on_http_call_response',
  'proxy_on_grpc_receive_initial_metadata',
  'proxy_on_grpc_receive',
  'proxy_on_grpc_receive_trailing_metadata',
  'proxy_on_grpc_close',
  'proxy_on_queue_ready',
  'proxy_on_foreign_function',
] as const;
export type CallbackName = (typeof CALLBACKS)[number];

/** An address past the end of any probe memory: every access through it is out of bounds. */
export const WILD = 0xfffffff0;
/** `u32::MAX`, what SDKs pass as "to the end" / "append". */
export const ALL = 0xffffffff;

export interface ProbeEvent {
  plugin: string;
  callback: CallbackName;
  args: number[];
}

/** What a handler hooked into a callback did: its value, or the error it threw. */
export class Captured<T> {
  ran = false;
  private value?: T;
  private error?: unknown;

  settle(fn: () => T): void {
    this.ran = true;
    try {
      this.value = fn();
    } catch (error) {
      this.error = error;
      // proc_exit and allocator traps must end the guest call, as they would without the probe.
      if ((error as Error)?.name === 'GuestAbort') throw error;
    }
  }

  /** The handler's value; rethrows what it threw; throws when it never ran. */
  get result(): T {
    if (!this.ran) throw new Error('the hooked callback never ran');
    if (this.error !== undefined) throw this.error;
    return this.value as T;
  }
}

interface Pending {
  plugin?: string;
  captured: Captured<unknown>;
  fn: (args: number[]) => unknown;
}

export interface ProbeOptions extends HarnessOptions {
  /** Extra foreign functions besides "hook". */
  foreignFunctions?: HarnessOptions['foreignFunctions'];
  /** Runs before the plugin loads: set start-up return values here (`returning`). */
  before?: (probe: Probe) => void;
  /** The probe's bytes, changed (another ABI marker, say); default: the built probe. */
  module?: Uint8Array;
}

/** The function id `inRoot` passes to proxy_on_foreign_function. */
export const ROOT_CALL_ID = 77;

export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Probe {
  readonly events: ProbeEvent[] = [];
  /** Values callbacks return, keyed `callback/plugin` (plugin `*` for all); absent: the probe's defaults. */
  private readonly returns = new Map<string, number>();
  private readonly pending = new Map<CallbackName, Pending[]>();
  harness!: FilterHarness;

  /** Loads the probe once (name "probe") or as a chain of probes with the given names. */
  static async load(options: ProbeOptions = {}, names: string[] = [options.name ?? 'probe']): Promise<Probe> {
    const probe = new Probe();
    const { before, module = fixture('abi/probe'), ...rest } = options;
    options = rest;
    before?.(probe);
    const foreignFunctions = { ...options.foreignFunctions, hook: (args: Uint8Array, plugin?: string) => probe.hook(args, plugin ?? '') };
    // A generous budget: hooked tests do a lot of host-side work inside one guest call.
    const limits = { callBudgetMs: 10_000, ...options.limits };
    const filters: FilterSource[] = names.map((name) => ({ ...options, name, limits, foreignFunctions, module }));
    probe.harness = await FilterHarness.chain(filters, { ...options, foreignFunctions: foreignFunctions as HarnessOptions['foreignFunctions'] });
    return probe;
  }

  // ---- Callbacks --------------------------------------------------------------------------

  private hook(bytes: Uint8Array, plugin: string): Uint8Array {
    const words: number[] = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i + 4 <= bytes.byteLength; i += 4) words.push(view.getUint32(i, true));
    const callback = CALLBACKS[words[0]];
    const args = words.slice(1);
    this.events.push({ plugin, callback, args });
    const queue = this.pending.get(callback);
    const index = queue?.findIndex((p) => p.plugin === undefined || p.plugin === plugin) ?? -1;
    if (queue && index >= 0) {
      const [p] = queue.splice(index, 1);
      p.captured.settle(() => p.fn(args));
    }
    const ret = this.returns.get(`${callback}/${plugin}`) ?? this.returns.get(`${callback}/*`);
    if (ret === undefined) return new Uint8Array(0);
    const out = Buffer.alloc(4);
    out.writeUInt32LE(ret >>> 0);
    return out;
  }

  /** Runs `fn` inside the next call of `callback` (of `plugin`, or any); returns what it captured. */
  once<T>(callback: CallbackName, fn: (args: number[]) => T, plugin?: string): Captured<T> {
    const captured = new Captured<T>();
    let queue = this.pending.get(callback);
    if (!queue) this.pending.set(callback, (queue = []));
    queue.push({ plugin, captured: captured as Captured<unknown>, fn });
    return captured;
  }

  /** Makes `callback` return `value` from now on (for `plugin`, or every plugin). */
  returning(callback: CallbackName, value: number | undefined, plugin = '*'): void {
    if (value === undefined) this.returns.delete(`${callback}/${plugin}`);
    else this.returns.set(`${callback}/${plugin}`, value);
  }

  /** Runs `fn` inside proxy_on_foreign_function on the root context (the host's own way into it). */
  inRoot<T>(fn: (args: number[]) => T, argsData: string | Uint8Array = ''): T {
    const captured = this.once('proxy_on_foreign_function', fn);
    this.harness.callForeign(ROOT_CALL_ID, argsData);
    return captured.result;
  }

  /** The events as `callback(args)` strings, optionally only those of some callbacks, prefixed by plugin when asked. */
  log(opts: { only?: CallbackName[]; except?: CallbackName[]; plugins?: boolean } = {}): string[] {
    return this.events
      .filter((e) => (!opts.only || opts.only.includes(e.callback)) && !opts.except?.includes(e.callback))
      .map((e) => `${opts.plugins ? `${e.plugin}:` : ''}${e.callback}(${e.args.join(',')})`);
  }

  // ---- The guest --------------------------------------------------------------------------

  get h(): FilterHarness {
    return this.harness;
  }

  /** The healthy VM of plugin `index`. */
  vm(index = 0): Vm {
    const vm = this.harness.plugins[index].vm;
    if (!vm) throw new Error(`plugin ${index} has no healthy VM`);
    return vm;
  }

  /** Calls host function `name` (e.g. "proxy_log", "fd_write") through the probe's trampoline. */
  call(name: string, ...args: Array<number | bigint>): number {
    const fn = this.vm().guestExports[`call_${name}`] as ((...a: unknown[]) => number) | undefined;
    if (!fn) throw new Error(`the probe has no trampoline for ${name}`);
    return fn(...args);
  }

  /** Sets the probe allocator's behaviour: 'ok', 'null' (returns 0), 'wild' (out of bounds), 'trap'. */
  allocMode(mode: 'ok' | 'null' | 'wild' | 'trap'): void {
    this.export('probe_set_alloc_mode')(['ok', 'null', 'wild', 'trap'].indexOf(mode));
  }

  get allocCount(): number {
    return this.export('probe_alloc_count')();
  }

  private export(name: string): (...a: number[]) => number {
    return this.vm().guestExports[name] as (...a: number[]) => number;
  }

  /** Allocates `size` bytes with the guest's allocator (at least 1). */
  alloc(size: number): number {
    const ptr = this.vm().mem.allocate(Math.max(size, 1));
    if (ptr === 0) throw new Error('the probe allocator failed');
    return ptr;
  }

  /** Copies `data` into fresh guest memory; returns [pointer, length]. */
  put(data: string | Uint8Array): [number, number] {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const ptr = this.alloc(bytes.byteLength);
    this.vm().mem.bytes.set(bytes, ptr);
    return [ptr, bytes.byteLength];
  }

  /** Allocates two zeroed u32 slots for a returned (pointer, size) pair; returns their addresses. */
  slots(): [number, number] {
    const ptr = this.alloc(8);
    this.vm().mem.bytes.fill(0, ptr, ptr + 8);
    return [ptr, ptr + 4];
  }

  /** A zeroed scratch area of `size` bytes. */
  zeroed(size: number): number {
    const ptr = this.alloc(size);
    this.vm().mem.bytes.fill(0, ptr, ptr + size);
    return ptr;
  }

  u32(ptr: number): number {
    return this.vm().mem.bytes.readUInt32LE(ptr);
  }

  u64(ptr: number): bigint {
    return this.vm().mem.bytes.readBigUInt64LE(ptr);
  }

  bytes(ptr: number, len: number): Buffer {
    return Buffer.from(this.vm().mem.bytes.subarray(ptr, ptr + len));
  }

  /** What the host wrote back through a (pointer, size) slot pair. */
  out([pp, sp]: [number, number]): { ptr: number; size: number; text: string; bytes: Buffer } {
    const ptr = this.u32(pp);
    const size = this.u32(sp);
    const bytes = size === 0 ? Buffer.alloc(0) : this.bytes(ptr, size);
    return { ptr, size, text: bytes.toString('utf8'), bytes };
  }

  /** Log lines of the harness, "level: message". */
  logLines(minLevel = 0): string[] {
    return this.harness.logLines(minLevel);
  }
}

/** The proxy-wasm header-pairs serialization, written out independently of the runtime's encoder. */
export function pairsBytes(pairs: Array<[string, string]>): Buffer {
  const head = Buffer.alloc(4 + pairs.length * 8);
  head.writeUInt32LE(pairs.length, 0);
  const data: Buffer[] = [];
  pairs.forEach(([k, v], i) => {
    const kb = Buffer.from(k);
    const vb = Buffer.from(v);
    head.writeUInt32LE(kb.length, 4 + i * 8);
    head.writeUInt32LE(vb.length, 8 + i * 8);
    data.push(kb, Buffer.of(0), vb, Buffer.of(0));
  });
  return Buffer.concat([head, ...data]);
}

/** int64 little-endian, as properties encode integers. */
export function int64le(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(n));
  return b;
}

/** proxy_status_t under the spec's names (the runtime's own `Status` uses camel-case keys). */
export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10,
  UNIMPLEMENTED: 12,
} as const;

export const GET = { ':method': 'GET', ':path': '/p?q=1', ':authority': 'example.test', ':scheme': 'http' };
