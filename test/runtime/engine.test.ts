// The Wasm engine against real compiled modules (WAT fixtures in test/fixtures/engine, assembled
// into build/fixtures/engine by scripts/build-fixtures.js, which `npm test` runs first): time
// budget, memory ceiling, linking, failure classification, compile cache.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import {
  BudgetExceededError,
  compileModule,
  describeGuestFailure,
  EngineError,
  instantiate,
  type GuestInstance,
} from '../../runtime/engine/index.ts';

type Fn = (...args: number[]) => number;
const PAGE = 65536;

/** The assembled test/fixtures/engine/<name>.wat (run `node scripts/build-fixtures.js` if it is missing). */
function wasm(name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(`../../build/fixtures/engine/${name}.wasm`, import.meta.url)));
}

function fns(guest: GuestInstance): Record<string, Fn> {
  return guest.exports as Record<string, Fn>;
}

/** Enters the guest as the host does (beginCall first) and reports what happened and how long it took. */
function enter(guest: GuestInstance, name: string, ...args: number[]): { value?: number; error?: unknown; ms: number } {
  const started = performance.now();
  guest.beginCall();
  try {
    return { value: fns(guest)[name](...args), ms: performance.now() - started };
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
}

const hostImports = {
  env: {
    host_throws: () => {
      throw new Error('boom from the host');
    },
  },
};

// ---- time budget ---------------------------------------------------------------------------

test('an infinite loop is stopped with BudgetExceededError after about its budget', async (t) => {
  const compiled = await compileModule(wasm('misbehave'));
  const other = instantiate(compiled, hostImports, { callBudgetMs: 1000 });
  const guest = instantiate(compiled, hostImports, { callBudgetMs: 50 });

  const spun = enter(guest, 'spin');
  t.true(spun.error instanceof BudgetExceededError);
  t.true(spun.ms >= 50, `stopped after ${spun.ms} ms`);
  t.true(spun.ms < 500, `stopped after ${spun.ms} ms`);
  t.true(guest.budgetExceeded);
  t.deepEqual(describeGuestFailure(spun.error), { kind: 'budget', message: (spun.error as Error).message });
  t.regex((spun.error as Error).message, /over its 50 ms budget/);

  // Other instances of the module are unaffected, fresh ones work, and the stopped one can be entered again.
  t.is(enter(other, 'answer').value, 42);
  t.is(enter(instantiate(compiled, hostImports, { callBudgetMs: 50 }), 'answer').value, 42);
  t.is(enter(guest, 'answer').value, 42);
  t.false(guest.budgetExceeded);
});

test('exponential fan-out without any loop is stopped too (function entries are metered)', async (t) => {
  const guest = instantiate(await compileModule(wasm('misbehave')), hostImports, { callBudgetMs: 50 });
  const fanned = enter(guest, 'fan', 64);
  t.true(fanned.error instanceof BudgetExceededError);
  t.true(fanned.ms < 500, `stopped after ${fanned.ms} ms`);
});

test('a guest that catches the budget error is trapped, and the trap is reported as a budget overrun', async (t) => {
  const guest = instantiate(await compileModule(wasm('misbehave')), hostImports, { callBudgetMs: 50 });
  const swallowed = enter(guest, 'swallow');
  t.true(swallowed.error instanceof WebAssembly.RuntimeError);
  t.true(swallowed.ms < 500, `stopped after ${swallowed.ms} ms`);
  t.is(describeGuestFailure(swallowed.error, guest).kind, 'budget');
  t.is(describeGuestFailure(swallowed.error).kind, 'trap');
});

test('a start function that never returns is stopped during instantiate', async (t) => {
  const compiled = await compileModule(wasm('start-spin'));
  const started = performance.now();
  t.throws(() => instantiate(compiled, {}, { callBudgetMs: 50 }), { instanceOf: BudgetExceededError });
  t.true(performance.now() - started < 500);
});

test('a Wasm start function runs during instantiate, after onInstance, so host functions can read memory', async (t) => {
  const compiled = await compileModule(wasm('start-memory'));
  t.deepEqual([...compiled.exports], ['memory']);
  let guest: GuestInstance | undefined;
  const logged: string[] = [];
  const log = (ptr: number, len: number) => logged.push(new TextDecoder().decode(new Uint8Array(guest!.memory.buffer, ptr, len)));
  const returned = instantiate(compiled, { env: { log } }, { callBudgetMs: 50, onInstance: (g) => (guest = g) });
  t.true(returned === guest);
  t.deepEqual(logged, ['started']);
  t.deepEqual(Object.keys(returned.exports), ['memory']);
});

test('a loop of 1e6 iterations returns the right value within a 1000 ms budget', async (t) => {
  const guest = instantiate(await compileModule(wasm('workloads')), {}, { callBudgetMs: 1000 });
  const n = 1_000_000;
  const expected = Number(BigInt.asIntN(32, BigInt(n) * BigInt(n - 1) / 2n));
  t.deepEqual(enter(guest, 'sum', n).value, expected);
  t.is(enter(guest, 'fib', 20).value, 6765);
});

test('the budget is per call: beginCall starts a new one, without it the calls share one', async (t) => {
  // A generous budget: one short call must not be pushed over it by a busy machine.
  const guest = instantiate(await compileModule(wasm('workloads')), {}, { callBudgetMs: 200 });
  // Many short calls that together take far longer than the budget.
  const started = performance.now();
  let calls = 0;
  while (performance.now() - started < 600) {
    const r = enter(guest, 'sum', 1_000_000);
    if (r.error) return t.fail(`call ${calls} failed: ${String(r.error)}`);
    calls++;
  }
  t.true(calls > 1);
  // The same calls without beginCall count against one budget.
  guest.beginCall();
  const sum = fns(guest).sum;
  const error = t.throws(() => {
    for (const until = performance.now() + 5000; performance.now() < until; ) sum(1_000_000);
  });
  t.true(error instanceof BudgetExceededError);
});

// ---- memory ceiling ------------------------------------------------------------------------

test('memory.grow past the ceiling returns -1, and data segments survive instrumentation', async (t) => {
  const guest = instantiate(await compileModule(wasm('memory'), { memoryLimitBytes: 4 * PAGE }), {}, { callBudgetMs: 50 });
  t.is(new TextDecoder().decode(new Uint8Array(guest.memory.buffer, 16, 6)), 'sluice');
  t.is(enter(guest, 'grow', 3).value, 1);
  t.is(enter(guest, 'grow', 1).value, -1);
  t.is(enter(guest, 'size').value, 4);
  t.is(guest.memory.buffer.byteLength, 4 * PAGE);
});

test('a declared maximum below the ceiling is kept; the default ceiling is 64 MiB', async (t) => {
  const small = wasm('memory-max');
  const guest = instantiate(await compileModule(small, { memoryLimitBytes: 4 * PAGE }), {}, { callBudgetMs: 50 });
  t.is(enter(guest, 'grow', 1).value, 1);
  t.is(enter(guest, 'grow', 1).value, -1);
  const big = instantiate(await compileModule(wasm('memory')), {}, { callBudgetMs: 50 });
  t.is(enter(big, 'grow', 1024).value, -1); // 1 + 1024 pages > 64 MiB
});

test('a module whose initial memory or data exceeds the ceiling is refused', async (t) => {
  const tooBig = await t.throwsAsync(compileModule(wasm('memory-too-big'), { memoryLimitBytes: 4 * PAGE }), {
    instanceOf: EngineError,
  });
  t.is(tooBig.code, 'SLUICE_ERR_MODULE_INVALID');
  t.regex(tooBig.message, /starts with 0\.5 MiB of memory, more than the VM memory limit of 0\.25 MiB; raise the plugin's memory limit/);

  const dataOut = await t.throwsAsync(compileModule(wasm('data-beyond-memory')), {
    instanceOf: EngineError,
  });
  t.is(dataOut.code, 'SLUICE_ERR_MODULE_INVALID');
  t.regex(dataOut.message, /a data segment ends at byte 65540, beyond the module's initial memory of 65536 bytes/);
});

test('modules without a memory of their own exported as "memory" are refused', async (t) => {
  const imported = await t.throwsAsync(compileModule(wasm('memory-imported')), { instanceOf: EngineError });
  t.is(imported.code, 'SLUICE_ERR_MODULE_INVALID');
  t.regex(imported.message, /an imported memory is not supported/);
  const unexported = await t.throwsAsync(compileModule(wasm('memory-unexported')), { instanceOf: EngineError });
  t.is(unexported.code, 'SLUICE_ERR_MODULE_INVALID');
  t.regex(unexported.message, /does not export its memory as "memory"/);
});

// ---- failures ------------------------------------------------------------------------------

test('describeGuestFailure classifies traps, bad memory accesses, stack overflows and host errors', async (t) => {
  const guest = instantiate(await compileModule(wasm('misbehave')), hostImports, { callBudgetMs: 1000 });
  const kinds = ['trap', 'oob', 'recurse', 'call_host'].map((name) => {
    const { error } = enter(guest, name, 0);
    return describeGuestFailure(error).kind;
  });
  t.deepEqual(kinds, ['trap', 'memory', 'stack', 'host']);
  t.regex(describeGuestFailure(enter(guest, 'trap').error).message, /unreachable executed/);
  t.regex(describeGuestFailure(enter(guest, 'call_host').error).message, /boom from the host/);
});

// ---- linking -------------------------------------------------------------------------------

test('function imports nobody provides link to stubs that report and trap when called', async (t) => {
  const compiled = await compileModule(wasm('imports'));
  t.deepEqual(compiled.imports, [
    { module: 'env', name: 'known', kind: 'function' },
    { module: 'env', name: 'unknown_fn', kind: 'function' },
    { module: 'wasi_snapshot_preview1', name: 'fd_seek', kind: 'function' },
  ]);
  t.deepEqual([...compiled.exports].sort(), ['call_known', 'call_unknown', 'memory', 'version']);

  const missing: string[] = [];
  const guest = instantiate(compiled, { env: { known: (x: number) => x * 2 } }, {
    callBudgetMs: 50,
    onMissingImport: (module, name) => missing.push(`${module}.${name}`),
  });
  t.is(enter(guest, 'call_known', 21).value, 42);
  t.deepEqual(missing, []);
  const { error } = enter(guest, 'call_unknown');
  t.true(error instanceof WebAssembly.RuntimeError);
  t.deepEqual(missing, ['env.unknown_fn']);
  t.deepEqual(describeGuestFailure(error), {
    kind: 'trap',
    message: 'the filter trapped: env.unknown_fn was called, but Sluice does not provide it',
  });
});

test('a non-function import nobody provides fails to link with SLUICE_ERR_MODULE_LINK', async (t) => {
  const compiled = await compileModule(wasm('import-global'));
  const error = t.throws(() => instantiate(compiled, {}, { callBudgetMs: 50 }), { instanceOf: EngineError });
  t.is(error.code, 'SLUICE_ERR_MODULE_LINK');
  t.regex(error.message, /imports the global env\.limit, which Sluice does not provide/);
  const linked = instantiate(compiled, { env: { limit: 7 as unknown as Function } }, { callBudgetMs: 50 });
  t.is(enter(linked, 'get').value, 7);
  const wrongKind = t.throws(() => instantiate(compiled, { env: { limit: new WebAssembly.Memory({ initial: 1 }) as unknown as Function } }, { callBudgetMs: 50 }), {
    instanceOf: EngineError,
  });
  t.is(wrongKind.code, 'SLUICE_ERR_MODULE_LINK');
});

test('a module may not export the names the engine reserves for its fuel table and start function', async (t) => {
  for (const [fixture, name] of [['reserved-export', 'sluice:fuel'], ['reserved-export-start', 'sluice:start']]) {
    const error = await t.throwsAsync(compileModule(wasm(fixture)), { instanceOf: EngineError });
    t.is(error.code, 'SLUICE_ERR_MODULE_INVALID');
    t.regex(error.message, new RegExp(`it exports "${name}", a name reserved for Sluice's engine`));
  }
});

test('the engine\'s own exports (fuel table, moved start function) are hidden, and it adds no imports', async (t) => {
  const compiled = await compileModule(wasm('start-memory'));
  t.deepEqual(compiled.imports, [{ module: 'env', name: 'log', kind: 'function' }]);
  t.deepEqual(WebAssembly.Module.exports(compiled.module).map((e) => `${e.kind} ${e.name}`), ['memory memory', 'table sluice:fuel', 'function sluice:start']);
  const guest = instantiate(compiled, { env: { log: () => {} } }, { callBudgetMs: 50 });
  t.deepEqual(Object.keys(guest.exports), ['memory']);
});

test('function names survive instrumentation, even names the instrumentation itself uses', async (t) => {
  const guest = instantiate(await compileModule(wasm('names')), {}, { callBudgetMs: 50 });
  t.is(enter(guest, 'log_execution', 1).value, 2);
  t.regex(String((enter(guest, 'explode').error as Error).stack), /at explode \(/);
});

// ---- compiling -----------------------------------------------------------------------------

test('bytes that are not a module give SLUICE_ERR_MODULE_INVALID, every time', async (t) => {
  for (const bytes of [new Uint8Array([1, 2, 3]), new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1])]) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await t.throwsAsync(compileModule(bytes), { instanceOf: EngineError });
      t.is(error.code, 'SLUICE_ERR_MODULE_INVALID');
      t.regex(error.message, /are not a valid WebAssembly module: .+; check that the filter was built to \.wasm/);
    }
  }
  await t.throwsAsync(compileModule(wasm('memory'), { memoryLimitBytes: 100 }), { instanceOf: RangeError });
});

test('the digest is the sha256 of the original bytes, and the cache returns the same compiled module', async (t) => {
  const bytes = wasm('workloads');
  const compiled = await compileModule(bytes);
  t.is(compiled.digest, createHash('sha256').update(bytes).digest('hex'));
  t.is(compiled.memoryLimitBytes, 64 * 1024 * 1024);
  t.is(await compileModule(bytes), compiled);
  t.is(await compileModule(Uint8Array.from(bytes)), compiled);
  t.is(await compileModule(bytes, { memoryLimitBytes: 64 * 1024 * 1024 }), compiled);
  const smaller = await compileModule(bytes, { memoryLimitBytes: 32 * 1024 * 1024 });
  t.not(smaller, compiled);
  t.is(smaller.digest, compiled.digest);
});
