// Measures what the engine costs: the time-budget instrumentation (instrumented vs raw Wasm on the
// same workloads), instrumentation and compile time, instantiate time and memory per VM.
// Standalone: node --import=tsx bench/engine.ts (after `npm run build`, which assembles the WAT
// workloads into build/fixtures/engine). Nothing here imports binaryen or asc: under tsx that
// alone costs ~20 s (tsx transforms binaryen's 13 MB); the AssemblyScript workload is compiled
// once by a plain node child process and cached in build/bench.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { compileModule, instantiate, type GuestInstance } from '../runtime/engine/index.ts';
import { instrument } from '../runtime/engine/instrument.ts';
import { printTable, type BenchRow } from './table.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
type Fn = (...args: number[]) => number;

function prebuilt(path: string): Uint8Array {
  const file = join(root, path);
  if (!existsSync(file)) throw new Error(`${path} is missing: run npm run build first`);
  return new Uint8Array(readFileSync(file));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/**
 * Runs `raw` and `instrumented` alternately (after warm-up, so both are tiered up) and returns the
 * median ratio, and the ratio of the fastest runs: on a shared machine tight loops switch between
 * two speeds as other work comes and goes (instrumented ones more), and the minima show the
 * quiet-machine cost.
 */
function ratio(raw: () => void, instrumented: () => void, reps: number): { ratio: number; minRatio: number; rawMs: number; instrumentedMs: number } {
  for (let i = 0; i < 20; i++) (raw(), instrumented()); // both tiered up to TurboFan
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t = performance.now();
    raw();
    a.push(performance.now() - t);
    t = performance.now();
    instrumented();
    b.push(performance.now() - t);
  }
  return { ratio: median(b) / median(a), minRatio: Math.min(...b) / Math.min(...a), rawMs: median(a), instrumentedMs: median(b) };
}

async function budgetOverhead(): Promise<BenchRow[]> {
  const bytes = prebuilt('build/fixtures/engine/workloads.wasm');
  const raw = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource)).exports as Record<string, Fn>;
  const guest = instantiate(await compileModule(bytes), {}, { callBudgetMs: 60_000 });
  const inst = guest.exports as Record<string, Fn>;
  const fill = (mem: WebAssembly.Memory) => {
    const text = new TextEncoder().encode('Content-Type: text/html\r\nX-Request-Id: 0123456789abcdef\r\n');
    const view = new Uint8Array(mem.buffer);
    for (let p = 0; p + text.length <= 1 << 20; p += text.length) view.set(text, p);
  };
  fill(guest.memory);
  fill(raw.memory as unknown as WebAssembly.Memory);
  const call = (g: GuestInstance, f: () => void) => () => (g.beginCall(), f());
  const cases: Array<[string, (x: Record<string, Fn>) => void, number]> = [
    ['loop: sum of 1e7 i32', (x) => x.sum(10_000_000), 30],
    ['calls: recursive fib(25)', (x) => x.fib(25), 30],
    ['bytes: copy 1 MiB byte by byte', (x) => x.copy(0, 1 << 20, 1 << 20), 30],
    ['bytes: scan 1 MiB of headers (lowercase, count ":")', (x) => x.scan(0, 1 << 20), 30],
  ];
  return cases.map(([name, run, reps]) => {
    const r = ratio(() => run(raw), call(guest, () => run(inst)), reps);
    return {
      name: `budget overhead, ${name}`,
      value: +r.ratio.toFixed(3),
      unit: 'x raw',
      note: `raw ${r.rawMs.toFixed(2)} ms, instrumented ${r.instrumentedMs.toFixed(2)} ms (median of ${reps}); fastest runs ${r.minRatio.toFixed(2)}x`,
    };
  });
}

// Filter-like AssemblyScript code (strings, a Map, a hash loop, recursion) compiled as filters are.
const AS_WORKLOAD = `
const headers = new Map<string, string>();
export function fill(n: i32): i32 {
  for (let i = 0; i < n; i++) headers.set("x-header-" + i.toString(), "value-" + (i * 7).toString());
  return headers.size;
}
export function lookup(k: i32): i32 {
  let s = 0;
  for (let i = 0; i < k; i++) { const key = "x-header-" + (i % 20).toString(); if (headers.has(key)) s += headers.get(key).length; }
  return s;
}
export function json(n: i32): i32 {
  let s = "{";
  for (let i = 0; i < n; i++) s += "\\"k" + i.toString() + "\\":" + i.toString() + ",";
  let colons = 0;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) == 58) colons++;
  return colons;
}
export function fnv(p: usize, len: i32): u32 {
  let h: u32 = 2166136261;
  for (let i = 0; i < len; i++) { h ^= load<u8>(p + i); h *= 16777619; }
  return h;
}
export function fib(n: i32): i32 { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
`;

const ASC_OPTIONS = { optimizeLevel: 3, runtime: 'incremental', exportStart: '_initialize' };

/** AS_WORKLOAD compiled by asc in a plain node child process, cached by source and options. */
function assemblyScriptWorkload(): Uint8Array {
  const hash = createHash('sha256').update(AS_WORKLOAD).update(JSON.stringify(ASC_OPTIONS)).digest('hex').slice(0, 12);
  const out = join(root, 'build/bench', `as-workload-${hash}.wasm`);
  if (!existsSync(out)) {
    const script = `
      import asc from 'assemblyscript/asc';
      import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
      import { dirname } from 'node:path';
      const out = ${JSON.stringify(out)};
      const { binary, error } = await asc.compileString(readFileSync(0, 'utf8'), ${JSON.stringify(ASC_OPTIONS)});
      if (error || !binary) throw new Error('asc failed: ' + error?.message);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, binary);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, input: AS_WORKLOAD, encoding: 'utf8' });
    if (child.status !== 0) throw new Error(`compiling the AssemblyScript workload failed: ${child.stderr}`);
  }
  return new Uint8Array(readFileSync(out));
}

async function assemblyScriptOverhead(): Promise<BenchRow[]> {
  const binary = assemblyScriptWorkload();
  const env = { abort: () => { throw new Error('abort'); } };
  const raw = new WebAssembly.Instance(new WebAssembly.Module(binary as BufferSource), { env }).exports as Record<string, Fn>;
  const guest = instantiate(await compileModule(binary), { env }, { callBudgetMs: 60_000 });
  const inst = guest.exports as Record<string, Fn>;
  let buffer = 0;
  for (const [x, memory] of [[raw, raw.memory], [inst, guest.memory]] as const) {
    x._initialize();
    x.fill(50);
    // A 1 MiB buffer for the hash, past the AssemblyScript heap.
    buffer = (memory as unknown as WebAssembly.Memory).grow(16) * 65536;
    new Uint8Array((memory as unknown as WebAssembly.Memory).buffer).fill(7, buffer, buffer + (1 << 20));
  }
  const cases: Array<[string, (x: Record<string, Fn>) => void]> = [
    ['Map<string,string> lookups with string building', (x) => x.lookup(20_000)],
    ['string concatenation + scan', (x) => x.json(2_000)],
    ['FNV-1a over 1 MiB', (x) => x.fnv(buffer, 1 << 20)],
    ['recursive fib(25)', (x) => x.fib(25)],
  ];
  return cases.map(([name, run]) => {
    const r = ratio(() => run(raw), () => (guest.beginCall(), run(inst)), 31);
    return {
      name: `budget overhead, AssemblyScript: ${name}`,
      value: +r.ratio.toFixed(3),
      unit: 'x raw',
      note: `raw ${r.rawMs.toFixed(3)} ms, instrumented ${r.instrumentedMs.toFixed(3)} ms (median of 31); fastest runs ${r.minRatio.toFixed(2)}x`,
    };
  });
}

async function perVm(): Promise<BenchRow[]> {
  // The example filter, a typical AssemblyScript filter (~65 KB, SDK included).
  const source = 'build/filters/hello.wasm';
  const bytes = prebuilt(source);
  const results: BenchRow[] = [];

  const instr: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    instrument(bytes, 64 << 20);
    instr.push(performance.now() - t);
  }
  const instrumented = instrument(bytes, 64 << 20);
  const t0 = performance.now();
  await WebAssembly.compile(instrumented as BufferSource);
  const compileMs = performance.now() - t0;
  const compiled = await compileModule(bytes);
  results.push({ name: `instrument ${source}`, value: +median(instr).toFixed(3), unit: 'ms', note: `${bytes.length} B -> ${instrumented.length} B; median of 50, first ${instr[0].toFixed(2)} ms` });
  results.push({ name: 'WebAssembly.compile of the instrumented module', value: +compileMs.toFixed(2), unit: 'ms', note: 'once per module digest (V8 compiles lazily)' });

  const opts = { callBudgetMs: 50 };
  const raw = new WebAssembly.Module(bytes as BufferSource);
  const rawImports: Record<string, Record<string, () => number>> = {};
  for (const i of WebAssembly.Module.imports(raw)) (rawImports[i.module] ??= {})[i.name] = () => 0;
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < 1050; i++) {
    let t = performance.now();
    instantiate(compiled, {}, opts);
    if (i >= 50) ours.push(performance.now() - t);
    t = performance.now();
    new WebAssembly.Instance(raw, rawImports);
    if (i >= 50) theirs.push(performance.now() - t);
    if (i % 100 === 99) gc(); // each memory reserves guard regions; let V8 release them
  }
  results.push({ name: 'instantiate per VM', value: +(median(ours) * 1000).toFixed(1), unit: 'µs', note: `median of 1000, ${source}` });
  results.push({ name: 'new WebAssembly.Instance, raw module (reference)', value: +(median(theirs) * 1000).toFixed(1), unit: 'µs', note: 'median of 1000, interleaved with the above' });

  // Memory: RSS and V8 heap+external growth while 200 fresh VMs are alive.
  const n = 200;
  gc();
  const before = process.memoryUsage();
  const alive: GuestInstance[] = [];
  for (let i = 0; i < n; i++) alive.push(instantiate(compiled, {}, opts));
  // Touch each VM's memory the way a first request would (committing its pages).
  for (const g of alive) new Uint8Array(g.memory.buffer).fill(1, 0, g.memory.buffer.byteLength);
  gc();
  const after = process.memoryUsage();
  results.push({ name: 'linear memory of a fresh VM', value: alive[0].memory.buffer.byteLength / 1024, unit: 'KiB', note: 'memory.buffer.byteLength (initial pages)' });
  results.push({ name: 'RSS per VM (linear memory touched)', value: +((after.rss - before.rss) / n / 1024).toFixed(1), unit: 'KiB', note: `(RSS after - before) / ${n} live instances` });
  results.push({ name: 'V8 heap + external per VM', value: +((after.heapUsed + after.external - before.heapUsed - before.external) / n / 1024).toFixed(1), unit: 'KiB', note: `${n} live instances, after gc` });
  alive.length = 0;
  return results;
}

export async function benchEngine(): Promise<BenchRow[]> {
  return [...(await budgetOverhead()), ...(await assemblyScriptOverhead()), ...(await perVm())];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  printTable('engine (time budget, instantiate, memory)', await benchEngine());
}
