// The only code in Sluice that touches `WebAssembly.*`: compiles instrumented modules (cached by
// digest), instantiates them with a per-call time budget, and tells what kind of failure a guest had.

import { createHash } from 'node:crypto';
import { BudgetExceededError, EngineError } from './errors.ts';
import { FUEL_TABLE_EXPORT, START_EXPORT } from './fuel-rewrite.ts';
import { instrument } from './instrument.ts';


export interface EngineOptions {
  /** Per-VM ceiling on linear memory; default 64 MiB. */
  memoryLimitBytes: number;
}

export interface CompiledModule {
  /** sha256 hex of the original bytes. */
  readonly digest: string;
  /** The instrumented, compiled module. */
  readonly module: WebAssembly.Module;
  /** Export names (functions, memory, globals). */
  readonly exports: ReadonlySet<string>;
  /** The module's own imports (without the engine's fuel import). */
  readonly imports: ReadonlyArray<{ module: string; name: string; kind: string }>;
  readonly memoryLimitBytes: number;
  /** Time spent instrumenting and compiling, in ms. */
  readonly compileMs: number;
}

export interface GuestInstance {
  /** Raw exports; callers look up functions by name. */
  readonly exports: Record<string, unknown>;
  /** The exported memory named "memory". */
  readonly memory: WebAssembly.Memory;
  /**
   * Call before every entry into the guest from the host; it starts a new time budget. Not for
   * re-entrant calls made from inside a host function (an allocator call, say): those run under
   * the enclosing call's budget, and a new budget per re-entry would let a guest run forever.
   */
  beginCall(): void;
  /**
   * Whether the current call (since the last beginCall) was stopped for its budget. Normally the
   * call throws BudgetExceededError; a guest that catches it (Wasm exception handling) is stopped
   * by a trap instead, and this tells the two apart.
   */
  readonly budgetExceeded: boolean;
}

export interface InstantiateOptions {
  /** Wall-clock budget of one guest call, in ms; default 50. */
  callBudgetMs?: number;
  /** Called when the guest calls a function import nobody provided (just before it traps). */
  onMissingImport?: (module: string, name: string) => void;
  /**
   * Called with the new instance before its Wasm start function (if any) runs, so that host
   * functions the start function calls can already reach `memory`.
   */
  onInstance?: (guest: GuestInstance) => void;
}

export type GuestFailureKind = 'trap' | 'budget' | 'memory' | 'stack' | 'host';

export const DEFAULT_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_CALL_BUDGET_MS = 50;
/**
 * Fuel (one per loop turn and per entry into a function that calls others; fuel-rewrite.ts)
 * between two looks at the clock: about 20 µs of a tight loop, so the clock (~60 ns) costs
 * nothing measurable (1 000 costs ~8%), and a loop that calls a 1 µs host function each turn
 * still looks every ~10 ms.
 */
export const FUEL_PER_REFILL = 10_000;
const CACHE_SIZE = 32;

const cache = new Map<string, Promise<CompiledModule>>();

/** Validates, instruments and compiles a module; the same bytes and limit give the same object. */
export async function compileModule(bytes: Uint8Array, opts: Partial<EngineOptions> = {}): Promise<CompiledModule> {
  const memoryLimitBytes = opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
  if (!Number.isSafeInteger(memoryLimitBytes) || memoryLimitBytes < 65536) {
    throw new RangeError(`memoryLimitBytes must be an integer of at least 65536 (one Wasm page), got ${memoryLimitBytes}`);
  }
  const digest = createHash('sha256').update(bytes).digest('hex');
  const key = `${digest}/${memoryLimitBytes}`;
  let entry = cache.get(key);
  if (entry) {
    cache.delete(key); // most recently used goes last
  } else {
    entry = compile(bytes, digest, memoryLimitBytes);
    entry.catch(() => cache.delete(key));
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  }
  cache.set(key, entry);
  return entry;
}

async function compile(bytes: Uint8Array, digest: string, memoryLimitBytes: number): Promise<CompiledModule> {
  const started = performance.now();
  // TypeScript's BufferSource excludes SharedArrayBuffer-backed views; V8 takes any view.
  const source = bytes as BufferSource;
  if (!WebAssembly.validate(source)) {
    const reason = await WebAssembly.compile(source).then(() => 'unknown reason', (e: Error) => e.message);
    throw new EngineError(
      'SLUICE_ERR_MODULE_INVALID',
      `the bytes (sha256 ${digest.slice(0, 12)}…) are not a valid WebAssembly module: ${reason}; ` +
        'check that the filter was built to .wasm (not .wat or a JS wrapper) and that the download is complete',
    );
  }
  const module = await WebAssembly.compile(instrument(bytes, memoryLimitBytes) as BufferSource).catch((e: Error) => {
    throw new EngineError('SLUICE_ERR_MODULE_INVALID', `the module does not compile after instrumentation (a Sluice bug, please report it): ${e.message}`, { cause: e });
  });
  const exports = WebAssembly.Module.exports(module).filter((e) => e.name !== START_EXPORT && e.name !== FUEL_TABLE_EXPORT);
  if (!exports.some((e) => e.name === 'memory' && e.kind === 'memory')) {
    throw new EngineError('SLUICE_ERR_MODULE_INVALID', 'the module does not export its memory as "memory"; proxy-wasm hosts need it (AssemblyScript and the Rust/Go/C++ SDKs export it by default)');
  }
  const imports = WebAssembly.Module.imports(module);
  return Object.freeze({
    digest,
    module,
    exports: new Set(exports.map((e) => e.name)),
    imports: Object.freeze(imports.map((i) => Object.freeze({ module: i.module, name: i.name, kind: i.kind }))),
    memoryLimitBytes,
    compileMs: performance.now() - started,
  });
}

/**
 * Links and instantiates a compiled module, synchronously. Its Wasm start function, if any, runs
 * under the call budget after `onInstance`; a trap or budget overrun in it is thrown as is.
 */
export function instantiate(
  compiled: CompiledModule,
  imports: Record<string, Record<string, Function>>,
  opts: InstantiateOptions = {},
): GuestInstance {
  const budgetMs = opts.callBudgetMs ?? DEFAULT_CALL_BUDGET_MS;
  if (!(budgetMs > 0)) throw new RangeError(`callBudgetMs must be a positive number of milliseconds, got ${budgetMs}`);
  // `call` numbers guest calls; the first refill in a call notes when the call started to burn fuel.
  let call = 1;
  let timedCall = 0;
  let startedAt = 0;
  let stoppedCall = 0;
  const outOfFuel = (): number => {
    if (timedCall !== call) {
      timedCall = call;
      startedAt = performance.now();
      return FUEL_PER_REFILL;
    }
    // The guest caught our BudgetExceededError and kept running: trap, which it cannot catch.
    if (stoppedCall === call) return -1;
    const elapsed = performance.now() - startedAt;
    if (elapsed > budgetMs) {
      stoppedCall = call;
      throw new BudgetExceededError(budgetMs, elapsed);
    }
    return FUEL_PER_REFILL;
  };

  const importObject: Record<string, Record<string, unknown>> = {};
  for (const { module, name, kind } of compiled.imports) {
    let value: unknown = imports[module]?.[name];
    if (kind === 'function' && typeof value !== 'function') {
      // Modules import functions they never call (gRPC, fd_seek, ...): link them, fail when called.
      value = () => {
        opts.onMissingImport?.(module, name);
        throw new WebAssembly.RuntimeError(`${module}.${name} was called, but Sluice does not provide it`);
      };
    } else if (value === undefined) {
      throw new EngineError('SLUICE_ERR_MODULE_LINK', `the module imports the ${kind} ${module}.${name}, which Sluice does not provide; only function imports can be left unresolved`);
    }
    (importObject[module] ??= {})[name] = value;
  }

  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(compiled.module, importObject as WebAssembly.Imports);
  } catch (error) {
    if (error instanceof WebAssembly.LinkError) {
      throw new EngineError('SLUICE_ERR_MODULE_LINK', `linking the module failed: ${error.message}; check the signatures of the host functions it imports`, { cause: error });
    }
    throw error;
  }
  // The refill function goes into the table the fuel checks call through, before any guest code runs.
  (instance.exports[FUEL_TABLE_EXPORT] as WebAssembly.Table).set(0, asWasmFunction(outOfFuel));
  // Hide the engine's exports: the fuel table and the start function moved by fuel-rewrite.ts.
  const start = instance.exports[START_EXPORT];
  const exports = Object.fromEntries(Object.entries(instance.exports).filter(([name]) => name !== START_EXPORT && name !== FUEL_TABLE_EXPORT));
  const memory = exports.memory;
  if (!(memory instanceof WebAssembly.Memory)) {
    throw new EngineError('SLUICE_ERR_MODULE_LINK', 'the instance exports no memory named "memory"');
  }
  const guest: GuestInstance = {
    exports,
    memory,
    beginCall() {
      call++;
    },
    get budgetExceeded() {
      return stoppedCall === call;
    },
  };
  opts.onInstance?.(guest);
  if (typeof start === 'function') {
    guest.beginCall();
    start(); // a trap or budget overrun here is thrown as is: the caller classifies it
  }
  return guest;
}

/** `(module (import "h" "f" (func (result i32))) (export "f" (func 0)))`: turns a JS function into a Wasm one, which a table can hold. */
const WRAPPER = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f,
  0x02, 0x07, 0x01, 0x01, 0x68, 0x01, 0x66, 0x00, 0x00,
  0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00,
]);
let wrapperModule: WebAssembly.Module | undefined;

function asWasmFunction(fn: () => number): Function {
  wrapperModule ??= new WebAssembly.Module(WRAPPER);
  return new WebAssembly.Instance(wrapperModule, { h: { f: fn } }).exports.f as Function;
}

/**
 * Tells what kind of failure ended a guest call, with a message for the filter's operator. Pass
 * the guest to recognise a budget stop that the guest tried to catch (it surfaces as a trap).
 */
export function describeGuestFailure(err: unknown, guest?: GuestInstance): { kind: GuestFailureKind; message: string } {
  if (err instanceof BudgetExceededError) return { kind: 'budget', message: err.message };
  if (guest?.budgetExceeded && err instanceof WebAssembly.RuntimeError) {
    return { kind: 'budget', message: 'the guest call ran over its time budget, caught the error that stopped it and was then trapped; look for an unbounded loop in the filter' };
  }
  const message = err instanceof Error ? err.message : String(err);
  // V8 gives traps no codes, only these messages.
  if (err instanceof WebAssembly.RuntimeError) {
    if (/memory access out of bounds/.test(message)) {
      return { kind: 'memory', message: `the filter read or wrote memory out of bounds (a wild pointer or a missing length check): ${message}` };
    }
    if (message === 'unreachable') {
      return { kind: 'trap', message: 'the filter trapped: unreachable executed (a Rust panic, an AssemblyScript abort or a failed assertion; see its log lines)' };
    }
    return { kind: 'trap', message: `the filter trapped: ${message}` };
  }
  if (err instanceof RangeError && /call stack size/.test(message)) {
    return { kind: 'stack', message: 'the filter overflowed the call stack (unbounded recursion?)' };
  }
  if (err instanceof RangeError && /out of memory|cannot allocate/i.test(message)) {
    return { kind: 'memory', message: `the filter's memory could not be allocated: ${message}` };
  }
  return { kind: 'host', message: `a host function failed during the filter call: ${message}` };
}
