// The fuel-check rewriter (runtime/engine/fuel-rewrite.ts) on modules that stress a byte-level
// rewriter: immediates made of bytes that look like opcodes, every instruction family it must
// step over, imported tables and globals, missing sections, start functions. Each rewritten
// module must validate and, run through the engine, behave exactly like the original run raw.
// Fixtures: test/fixtures/engine/rewrite/*.wat, assembled into build/fixtures/engine/rewrite.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { BudgetExceededError, compileModule, EngineError, instantiate, type GuestInstance } from '../../runtime/engine/index.ts';
import { addFuelChecks, FUEL_TABLE_EXPORT, LOOP_CHUNK, RewriteError, START_EXPORT } from '../../runtime/engine/fuel-rewrite.ts';
import { instrument } from '../../runtime/engine/instrument.ts';
import { leb, sectionsOf } from '../../runtime/engine/wasm-binary.ts';

type Imports = Record<string, Record<string, unknown>>;
type EngineImports = Record<string, Record<string, Function>>;

const root = fileURLToPath(new URL('../../', import.meta.url));

function wasm(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(root, 'build/fixtures/engine/rewrite', `${name}.wasm`)));
}

/** What a call did: its value, or the kind and message of what it threw. */
function outcome(call: () => unknown): { value?: unknown; error?: string } {
  try {
    return { value: call() };
  } catch (error) {
    return { error: `${(error as Error).constructor.name}: ${(error as Error).message}` };
  }
}

interface Pair {
  raw: Record<string, Function>;
  rawMemory: WebAssembly.Memory;
  guest: GuestInstance;
  /** Calls `name` in both and returns both outcomes. */
  both(name: string, ...args: unknown[]): { raw: unknown; ours: unknown };
}

/**
 * The fixture run raw and through the engine, each with its own `imports()`. The rewritten bytes
 * must validate before the engine gets them.
 */
async function pair(t: ExecutionContext, name: string, imports: () => Imports = () => ({}), callBudgetMs = 5000): Promise<Pair> {
  const bytes = wasm(name);
  t.true(WebAssembly.validate(bytes as BufferSource), `${name}: the original is valid`);
  t.true(WebAssembly.validate(addFuelChecks(bytes) as BufferSource), `${name}: the rewritten module is valid`);
  const rawInstance = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource), imports() as WebAssembly.Imports);
  const raw = rawInstance.exports as Record<string, Function>;
  const guest = instantiate(await compileModule(bytes), imports() as EngineImports, { callBudgetMs });
  const ours = guest.exports as Record<string, Function>;
  return {
    raw,
    rawMemory: raw.memory as unknown as WebAssembly.Memory,
    guest,
    both(fn, ...args) {
      const r = outcome(() => raw[fn](...args));
      guest.beginCall();
      return { raw: r, ours: outcome(() => ours[fn](...args)) };
    },
  };
}

/** Runs the calls in order in both and checks that every outcome, and then memory, are the same. */
function same(t: ExecutionContext, p: Pair, calls: Array<[string, ...unknown[]]>): void {
  for (const [fn, ...args] of calls) {
    const { raw, ours } = p.both(fn, ...args);
    t.deepEqual(ours, raw, `${fn}(${args.join(', ')})`);
  }
  t.deepEqual(Object.keys(p.guest.exports).sort(), Object.keys(p.raw).sort());
  t.true(Buffer.from(p.guest.memory.buffer).equals(Buffer.from(p.rawMemory.buffer)), 'memory is the same');
}

/** Each call must be stopped by a 50 ms budget, well before it could finish. */
async function stopped(t: ExecutionContext, name: string, calls: Array<[string, ...number[]]>, imports: () => Imports = () => ({})): Promise<void> {
  const guest = instantiate(await compileModule(wasm(name)), imports() as EngineImports, { callBudgetMs: 50 });
  for (const [fn, ...args] of calls) {
    const started = performance.now();
    guest.beginCall();
    const error = t.throws(() => (guest.exports[fn] as Function)(...args), undefined, `${name}.${fn} is stopped`);
    const ms = performance.now() - started;
    t.true(error instanceof BudgetExceededError, `${name}.${fn}: ${String(error)}`);
    t.true(ms < 1000, `${name}.${fn} stopped after ${ms} ms`);
  }
}

// ---- instruction families ------------------------------------------------------------------

test('SIMD: v128.const and shuffle bytes, lane indices, SIMD loads and stores', async (t) => {
  const p = await pair(t, 'simd');
  same(t, p, [
    ['consts'],
    ...Array.from({ length: 16 }, (_, i): [string, number] => ['shuffle', i]),
    ['lanes', 0x01020304],
    ['lanes', -1],
    ['wide', 7],
    ['loads', 0],
    ['loads', 5],
    ['vsum', 1000],
    ['any_true', 0],
    ['any_true', 0x80],
  ]);
  await stopped(t, 'simd', [['vsum', 0x7fffffff]]);
});

test('bulk memory and tables: passive data, memory.init/copy/fill, data.drop, table.init/copy, elem.drop', async (t) => {
  const p = await pair(t, 'bulk');
  same(t, p, [
    ['init', 0, 0, 13],
    ['checksum', 0, 13],
    ['copy', 200, 0, 13],
    ['copy', 3, 0, 11],
    ['fill', 300, 0x0b, 50],
    ['init', 0, 20, 1],
    ['drop'],
    ['init', 0, 0, 0],
    ['init', 0, 0, 1],
    ['fill', 65530, 1, 10],
    ['checksum', 0, 400],
    ['table_init', 0, 0, 3],
    ['call', 0, 5],
    ['call', 1, 5],
    ['call', 2, 5],
    ['table_copy', 4, 0, 3],
    ['call', 5, 5],
    ['call', 7, 1],
    ['elem_drop'],
    ['table_init', 0, 0, 1],
  ]);
});

test('control flow: br_table, nested loops, if/else, multi-value blocks, a loop buried in blocks', async (t) => {
  const p = await pair(t, 'control');
  same(t, p, [
    ['machine', 0],
    ['machine', 1],
    ['machine', 1000],
    ['nested', 0],
    ['nested', 200],
    ['classify', -5],
    ['classify', 0],
    ['classify', 5],
    ['classify', 5000],
    ['multi', 0],
    ['multi', 10],
    ['buried_spin', 0],
    ['buried_spin', 1],
  ]);
  await stopped(t, 'control', [['buried_spin', 2], ['machine', 0x7fffffff], ['nested', 1_000_000]]);
});

test('reference types: several tables, ref.func, table.get/set/grow/fill, call_indirect, externref, typed select', async (t) => {
  const p = await pair(t, 'refs');
  const kept = { some: 'host object' };
  same(t, p, [
    ['indirect', 0, 5],
    ['indirect', 1, 5],
    ['indirect', 2, 5],
    ['is_null', 1],
    ['set_square', 1],
    ['indirect_more', 1, 7],
    ['indirect_more', 0, 7],
    ['is_null', 0],
    ['is_null', 1],
    ['grow', 2],
    ['size'],
    ['pick', 0],
    ['pick', 1],
    ['clear'],
    ['is_null', 1],
    ['keep', kept],
    ['apply', 1000, 1],
  ]);
  t.is((p.guest.exports.kept as Function)(), kept);
  await stopped(t, 'refs', [['apply', 0x7fffffff, 1]]);
});

test('imported tables and globals: the appended fuel table and global come after them', async (t) => {
  const imports = () => ({
    env: {
      table: new WebAssembly.Table({ element: 'anyfunc', initial: 2 }),
      base: 7,
      counter: new WebAssembly.Global({ value: 'i32', mutable: true }, 100),
      mix: (x: number) => x ^ 0x5a,
      wide: new WebAssembly.Global({ value: 'i64' }, 0x0b03n),
    },
  });
  // Keep the import objects to compare the mutable global afterwards.
  const made: Array<ReturnType<typeof imports>> = [];
  const p = await pair(t, 'imported', () => made[made.push(imports()) - 1]);
  same(t, p, [['run', 0], ['run', 1000], ['own'], ['own64'], ['counter']]);
  const [raw, ours] = made.map((m) => m.env.counter.value);
  t.is(ours, raw);
  t.is(raw, 1100);
  const module = (await compileModule(wasm('imported'))).module;
  const exported = WebAssembly.Module.exports(module).find((e) => e.name === FUEL_TABLE_EXPORT);
  t.deepEqual(exported, { name: FUEL_TABLE_EXPORT, kind: 'table' });
  await stopped(t, 'imported', [['run', 0x7fffffff]], imports);
});

test('atomics: shared memory, atomic RMW/cmpxchg/load/store, fence, notify and wait', async (t) => {
  const p = await pair(t, 'atomics');
  same(t, p, [['rmw', 0], ['rmw', 1000], ['notify'], ['wait']]);
  await stopped(t, 'atomics', [['rmw', 0x7fffffff]]);
});

test('exception handling: try/catch with tags, catch_all, rethrow, delegate, throws out of loops', async (t) => {
  const p = await pair(t, 'eh');
  same(t, p, [
    ['catch', 3],
    ['catch', 20],
    ['loop_catch', 0],
    ['loop_catch', 11],
    ['rethrow', 3],
    ['rethrow', 12],
    ['delegate', 3],
    ['delegate', 20],
    ['uncaught', 3],
  ]);
});

test('exception handling with exnref (try_table, throw_ref): rewritten, and run where V8 supports it', async (t) => {
  const bytes = wasm('eh-try-table');
  const rewritten = addFuelChecks(bytes);
  t.true(rewritten.length > bytes.length);
  if (!WebAssembly.validate(bytes as BufferSource)) {
    t.log(`this V8 (${process.versions.v8}) does not run exnref; only the rewrite was checked`);
    return;
  }
  const p = await pair(t, 'eh-try-table');
  same(t, p, [['catch', 5], ['catch_ref', 5]]);
});

test('tail calls: return_call and return_call_indirect; endless tail recursion is stopped', async (t) => {
  const p = await pair(t, 'tail');
  same(t, p, [['count', 1_000_000, 0], ['count_indirect', 100_000, 0], ['count', 0, 3]]);
  await stopped(t, 'tail', [['forever'], ['count', 0x7fffffff, 0]]);
});

test('constants and immediates whose bytes look like opcodes (LEBs, f32/f64 bit patterns, indices, memargs)', async (t) => {
  const p = await pair(t, 'consts');
  const names = Object.keys(p.raw).filter((n) => /^(f32|f64)_/.test(n));
  t.true(names.length >= 15);
  same(t, p, [
    ...names.map((n): [string] => [n]),
    ['i32s'],
    ['i64s'],
    ...Array.from({ length: 14 }, (_, k): [string, number] => ['i64_each', k]),
    ['immediates', 5, 0, 3],
    ['immediates', 5, 0, 11],
    ['immediates', 9, 3, 0],
    ['immediates', 9, 3, 1],
  ]);
});

// A module no text assembler writes: padded (non-minimal) LEBs for a constant, a local index, a
// local count, a memarg and a label, a loop whose type index takes parameters (as a 5-byte s33),
// a typed select of i32, ref.null, and custom sections between the sections.
function handmade(): Uint8Array {
  const section = (id: number, payload: number[]) => [id, ...leb(payload.length), ...payload];
  const custom = (name: string, ...bytes: number[]) => section(0, [...leb(name.length), ...Buffer.from(name), ...bytes]);
  const body = (code: number[]) => [...leb(code.length), ...code];
  const str = (s: string) => [...leb(s.length), ...Buffer.from(s)];
  const padded = [
    0x01, 0x81, 0x80, 0x80, 0x80, 0x00, 0x7f, // one local i32, its count padded to 5 bytes
    0x41, 0x83, 0x80, 0x80, 0x80, 0x00, // i32.const 3, padded
    0x20, 0x80, 0x80, 0x00, // local.get 0, padded
    0x6a, // i32.add
    0x21, 0x01, // local.set 1
    0x20, 0x00, 0x20, 0x01, // local.get 0, local.get 1
    0x03, 0x81, 0x80, 0x80, 0x80, 0x00, // loop (type 1: i32 i32 -> i32), padded s33
    0x6a, // i32.add
    0x0b, // end
    0x41, 0x0b, // i32.const 11
    0x20, 0x00, // local.get 0
    0x1c, 0x01, 0x7f, // select (result i32)
    0x41, 0x00, // i32.const 0
    0x2d, 0x80, 0x00, 0x83, 0x80, 0x00, // i32.load8_u align=0 offset=3, both padded
    0x6a, // i32.add
    0x02, 0x40, 0x0c, 0x80, 0x00, 0x0b, // block br 0 (padded) end
    0xd0, 0x70, 0xd1, 0x6a, // ref.null func, ref.is_null, i32.add
    0x0b,
  ];
  const spin = [0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b]; // loop br 0 end
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...custom('a', 1),
    ...section(1, [3, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0]),
    ...section(3, [2, 0, 2]),
    ...custom('a', 2),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [3, ...str('memory'), 2, 0, ...str('padded'), 0, 0, ...str('spin'), 0, 1]),
    ...custom('a', 3),
    ...section(10, [2, ...body(padded), ...body(spin)]),
    ...section(11, [1, 0x00, 0x41, 0x00, 0x0b, 4, 1, 2, 3, 0x0b]),
    ...custom('a', 4),
  ]);
}

test('a hand-assembled module: padded LEBs, a loop with parameters, typed select, ref.null, custom sections', async (t) => {
  const bytes = handmade();
  t.true(WebAssembly.validate(bytes as BufferSource));
  const raw = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource)).exports as Record<string, Function>;
  // x = 5: (5 + (3 + 5)) + 11 + 1 = 25; x = 0: 11 + 11 + 1 = 23.
  t.deepEqual([raw.padded(5), raw.padded(0)], [25, 23]);
  const compiled = await compileModule(bytes);
  const guest = instantiate(compiled, {}, { callBudgetMs: 50 });
  t.deepEqual([(guest.exports.padded as Function)(5), (guest.exports.padded as Function)(0)], [25, 23]);
  t.deepEqual(WebAssembly.Module.customSections(compiled.module, 'a').map((b) => new Uint8Array(b)[0]), [1, 2, 3, 4]);
  guest.beginCall();
  t.throws(() => (guest.exports.spin as Function)(), { instanceOf: BudgetExceededError });
});

// ---- module shapes -------------------------------------------------------------------------

/** A Wasm function returning `fuel`, for filling the fuel table by hand (as engine.ts does). */
function refill(fuel: number): Function {
  const sleb = (n: number): number[] => {
    const out: number[] = [];
    for (;;) {
      const b = n & 0x7f;
      n >>= 7;
      if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
      out.push(b | 0x80);
    }
  };
  const code = [0x00, 0x41, ...sleb(fuel), 0x0b];
  const bytes = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type () -> i32
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, // export "f"
    0x0a, ...leb(code.length + 2), 0x01, ...leb(code.length), ...code,
  ]);
  return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.f as Function;
}

test('modules without type, table, global or export sections get them, in the right order', (t) => {
  for (const name of ['empty', 'memory-only']) {
    const rewritten = addFuelChecks(wasm(name));
    t.true(WebAssembly.validate(rewritten as BufferSource), name);
    const module = new WebAssembly.Module(rewritten as BufferSource);
    t.deepEqual(WebAssembly.Module.exports(module), [{ name: FUEL_TABLE_EXPORT, kind: 'table' }], name);
    t.deepEqual(sectionsOf(rewritten).map((s) => s.id), name === 'empty' ? [1, 4, 6, 7] : [1, 4, 5, 6, 7], name);
  }
});

test('a start function in a module without table, global or export sections runs once the table is filled', (t) => {
  const rewritten = addFuelChecks(wasm('start-bare'));
  t.true(WebAssembly.validate(rewritten as BufferSource));
  t.false(sectionsOf(rewritten).some((s) => s.id === 8), 'no start section left');
  const module = new WebAssembly.Module(rewritten as BufferSource);
  t.deepEqual(WebAssembly.Module.exports(module), [
    { name: FUEL_TABLE_EXPORT, kind: 'table' },
    { name: START_EXPORT, kind: 'function' },
  ]);
  const done: number[] = [];
  const instance = new WebAssembly.Instance(module, { env: { done: (n: number) => done.push(n) } });
  t.deepEqual(done, [], 'instantiating does not run the start function');
  // Before the table is filled, the first fuel check traps (a null table entry).
  t.throws(() => (instance.exports[START_EXPORT] as Function)(), { instanceOf: WebAssembly.RuntimeError });
  (instance.exports[FUEL_TABLE_EXPORT] as WebAssembly.Table).set(0, refill(10_000));
  (instance.exports[START_EXPORT] as Function)();
  t.deepEqual(done, [1000]);
  // A refill that returns a negative number traps at the next check.
  const stopped = new WebAssembly.Instance(module, { env: { done: (n: number) => done.push(n) } });
  (stopped.exports[FUEL_TABLE_EXPORT] as WebAssembly.Table).set(0, refill(-1));
  t.throws(() => (stopped.exports[START_EXPORT] as Function)(), { instanceOf: WebAssembly.RuntimeError, message: 'unreachable' });
});

test('the start function runs exactly once, through the engine, with memory and globals as raw', async (t) => {
  const logged: Array<[string, number]> = [];
  const imports = (who: string) => () => ({ env: { log: (n: number) => logged.push([who, n]) } });
  const bytes = wasm('start');
  const raw = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource), imports('raw')()).exports;
  const compiled = await compileModule(bytes);
  t.deepEqual(WebAssembly.Module.exports(compiled.module).map((e) => e.name), ['memory', 'runs', FUEL_TABLE_EXPORT, START_EXPORT]);
  const guest = instantiate(compiled, imports('ours')(), { callBudgetMs: 50 });
  t.deepEqual(logged, [['raw', 1], ['ours', 1]]);
  t.is((guest.exports.runs as Function)(), 1);
  t.true(Buffer.from(guest.memory.buffer).equals(Buffer.from((raw.memory as WebAssembly.Memory).buffer)));
  t.deepEqual(Object.keys(guest.exports).sort(), ['memory', 'runs']);

  // The start function may be a host function the module imports.
  let inits = 0;
  instantiate(await compileModule(wasm('start-import')), { env: { init: () => inits++ } }, { callBudgetMs: 50 });
  t.is(inits, 1);
});

test('reserved export names are refused, so a module cannot be rewritten twice', async (t) => {
  const once = addFuelChecks(wasm('simd'));
  t.throws(() => addFuelChecks(once), { instanceOf: RewriteError, message: `it exports "${FUEL_TABLE_EXPORT}", a name reserved for Sluice's engine` });
  const withStart = addFuelChecks(wasm('start'));
  t.throws(() => addFuelChecks(withStart), { instanceOf: RewriteError });
  const error = await t.throwsAsync(compileModule(once), { instanceOf: EngineError });
  t.is(error.code, 'SLUICE_ERR_MODULE_INVALID');
  t.regex(error.message, /the module cannot run in Sluice: it exports "sluice:fuel", a name reserved/);
});

test('leaf functions (no calls) get no entry check; functions that call do, and loops always count', (t) => {
  // The fuel table is left empty: the first check that takes fuel traps on the null entry.
  const exports = new WebAssembly.Instance(new WebAssembly.Module(addFuelChecks(wasm('control')) as BufferSource)).exports as Record<string, Function>;
  t.is(exports.classify(5), 11, 'a leaf without loops runs without checks');
  // machine(n) passes its loop header n + 1 times.
  const raw = new WebAssembly.Instance(new WebAssembly.Module(wasm('control') as BufferSource)).exports as Record<string, Function>;
  t.is(exports.machine(LOOP_CHUNK - 2), raw.machine(LOOP_CHUNK - 2), 'fewer loop turns than a chunk take no fuel');
  t.throws(() => exports.machine(LOOP_CHUNK - 1), { instanceOf: WebAssembly.RuntimeError }, 'a chunk of loop turns takes fuel');
  const fanout = new WebAssembly.Instance(new WebAssembly.Module(addFuelChecks(wasm('fanout')) as BufferSource)).exports as Record<string, Function>;
  t.is(fanout.leaves(), 0);
  t.throws(() => fanout.fan(0), { instanceOf: WebAssembly.RuntimeError }, 'a function with a call takes fuel at entry');
});

test('the appended type gets the right index after a rec group of several types (Wasm GC type section)', (t) => {
  const section = (id: number, payload: number[]) => [id, ...leb(payload.length), ...payload];
  // (rec (type (func)) (type (func (param i32)))) (func (type 0) (call 0)): two types in one entry.
  const bytes = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x4e, 2, 0x60, 0, 0, 0x60, 1, 0x7f, 0]),
    ...section(3, [1, 0]),
    ...section(10, [1, 4, 0, 0x10, 0, 0x0b]),
  ]);
  const rewritten = addFuelChecks(bytes);
  // The refill call in the entry check: i32.const 0, call_indirect <type> <table 0>.
  const at = rewritten.findIndex((b, i) => b === 0x11 && rewritten[i - 2] === 0x41 && rewritten[i - 1] === 0x00);
  t.true(at > 0);
  t.is(rewritten[at + 1], 2, 'the new type follows both types of the rec group');
  if (WebAssembly.validate(bytes as BufferSource)) t.true(WebAssembly.validate(rewritten as BufferSource));
});

// ---- runaway guests without loops ----------------------------------------------------------

test('unbounded work without any loop is stopped: exponential recursion, an acyclic call chain, call_indirect ping-pong', async (t) => {
  const p = await pair(t, 'fanout');
  same(t, p, [['fan', 10], ['chain_at', 0], ['chain_at', 10], ['ping_pong', 10], ['leaves']]);
  t.is((p.guest.exports.leaves as Function)(), 1 + 1024);
  await stopped(t, 'fanout', [['fan', 64], ['chain'], ['ping_pong', 64]]);
});

// ---- every module we build -----------------------------------------------------------------

function* wasmFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* wasmFiles(path);
    else if (name.endsWith('.wasm')) yield path;
  }
}

test('every module under build/ (filters and fixtures) still validates after rewriting, with the same imports and exports', (t) => {
  let checked = 0;
  let instrumented = 0;
  for (const path of wasmFiles(join(root, 'build'))) {
    const name = path.slice(root.length);
    const bytes = new Uint8Array(readFileSync(path));
    if (!WebAssembly.validate(bytes as BufferSource)) continue; // newer than this V8 (exnref)
    let rewritten: Uint8Array;
    try {
      rewritten = addFuelChecks(bytes);
    } catch (error) {
      // Only the fixtures that take the reserved names may be refused.
      t.true(error instanceof RewriteError && /reserved-export/.test(name), `${name}: ${String(error)}`);
      continue;
    }
    t.true(WebAssembly.validate(rewritten as BufferSource), name);
    const before = new WebAssembly.Module(bytes as BufferSource);
    const after = new WebAssembly.Module(rewritten as BufferSource);
    const hasStart = sectionsOf(bytes).some((s) => s.id === 8);
    t.deepEqual(WebAssembly.Module.imports(after), WebAssembly.Module.imports(before), name);
    t.deepEqual(WebAssembly.Module.exports(after), [
      ...WebAssembly.Module.exports(before),
      { name: FUEL_TABLE_EXPORT, kind: 'table' },
      ...(hasStart ? [{ name: START_EXPORT, kind: 'function' }] : []),
    ], name);
    t.false(sectionsOf(rewritten).some((s) => s.id === 8), `${name}: no start section`);
    checked++;
    try {
      const full = instrument(bytes, 64 << 20);
      t.true(WebAssembly.validate(full as BufferSource), `${name}: instrument()`);
      instrumented++;
    } catch (error) {
      // instrument() also refuses modules without a memory of their own.
      t.true(error instanceof EngineError && /memory/.test((error as Error).message), `${name}: ${String(error)}`);
    }
  }
  t.log(`${checked} modules rewritten, ${instrumented} fully instrumented`);
  t.true(checked >= 30, `only ${checked} modules found under build/; run npm run build`);
  t.true(readdirSync(join(root, 'build/filters')).some((n) => n.endsWith('.wasm')), 'the filters are built');
});
