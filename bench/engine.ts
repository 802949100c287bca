// Measures what the engine costs: the time-budget instrumentation (instrumented vs raw Wasm on the
// same workloads), instrumentation and compile time, instantiate time and memory per VM.
// Standalone: node --import=tsx bench/engine.ts

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import asc from 'assemblyscript/asc';
import binaryen from 'binaryen';
import { compileModule, instantiate, type GuestInstance } from '../runtime/engine/index.ts';
import { instrument } from '../runtime/engine/instrument.ts';

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  note?: string;
}

const root = fileURLToPath(new URL('..', import.meta.url));
type Fn = (...args: number[]) => number;

function wat(text: string): Uint8Array {
  const m = binaryen.parseText(text);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Runs `raw` and `instrumented` alternately (after warm-up, so both are tiered up) and returns the median ratio. */
function ratio(raw: () => void, instrumented: () => void, reps: number): { ratio: number; rawMs: number; instrumentedMs: number } {
  for (let i = 0; i < 5; i++) (raw(), instrumented());
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
  return { ratio: median(b) / median(a), rawMs: median(a), instrumentedMs: median(b) };
}

async function budgetOverhead(): Promise<BenchResult[]> {
  const bytes = wat(readFileSync(join(root, 'test/fixtures/engine/workloads.wat'), 'utf8'));
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
      note: `raw ${r.rawMs.toFixed(2)} ms, instrumented ${r.instrumentedMs.toFixed(2)} ms (median of ${reps})`,
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

async function assemblyScriptOverhead(): Promise<BenchResult[]> {
  const { binary, error } = await asc.compileString(AS_WORKLOAD, { optimizeLevel: 3, runtime: 'incremental', exportStart: '_initialize' });
  if (error || !binary) throw new Error(`asc failed: ${error?.message}`);
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
      note: `raw ${r.rawMs.toFixed(3)} ms, instrumented ${r.instrumentedMs.toFixed(3)} ms (median of 31)`,
    };
  });
}

/** A module of typical filter size (~45 KB): many small functions with loops and calls, plus data. */
function syntheticModule(): Uint8Array {
  const fns: string[] = [];
  for (let i = 0; i < 300; i++) {
    const callee = i > 0 ? `(local.set $acc (i32.add (local.get $acc) (call $f${i - 1} (local.get $i) (i32.const ${i}))))` : '';
    fns.push(`(func $f${i} (export "f${i}") (param $a i32) (param $b i32) (result i32) (local $i i32) (local $acc i32)
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.and (local.get $b) (i32.const 7))))
        (local.set $acc (i32.xor (i32.mul (local.get $acc) (i32.const 16777619)) (i32.load8_u offset=${i} (local.get $i))))
        (if (i32.eqz (i32.and (local.get $acc) (i32.const ${i % 13}))) (then ${callee}))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (i32.add (local.get $acc) (local.get $a)))`);
  }
  const data = 'x'.repeat(8192);
  return wat(`(module (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
    (memory (export "memory") 2) (data (i32.const 1024) "${data}") ${fns.join('\n')})`);
}

function typicalModule(): { bytes: Uint8Array; source: string } {
  const found: string[] = [];
  const walk = (dir: string) => {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.wasm') && statSync(p).size >= 20_000) found.push(p);
    }
  };
  walk(join(root, 'build'));
  found.sort((a, b) => statSync(b).size - statSync(a).size);
  if (found.length > 0) return { bytes: readFileSync(found[0]), source: found[0].slice(root.length) };
  return { bytes: syntheticModule(), source: 'synthetic WAT (300 functions with loops + 8 KiB data)' };
}

async function perVm(): Promise<BenchResult[]> {
  const { bytes, source } = typicalModule();
  const results: BenchResult[] = [];

  const instr: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    instrument(bytes, 64 << 20);
    instr.push(performance.now() - t);
  }
  const instrumented = instrument(bytes, 64 << 20);
  const t0 = performance.now();
  await WebAssembly.compile(instrumented as BufferSource);
  const compileMs = performance.now() - t0;
  const compiled = await compileModule(bytes);
  results.push({ name: 'instrument (binaryen) a typical module', value: +median(instr).toFixed(2), unit: 'ms', note: `${bytes.length} B -> ${instrumented.length} B, ${source}; median of 10, first ${instr[0].toFixed(0)} ms` });
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

export async function benchEngine(): Promise<BenchResult[]> {
  return [...(await budgetOverhead()), ...(await assemblyScriptOverhead()), ...(await perVm())];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await benchEngine();
  const w = Math.max(...results.map((r) => r.name.length));
  for (const r of results) console.log(`${r.name.padEnd(w)}  ${String(r.value).padStart(9)} ${r.unit.padEnd(6)} ${r.note ?? ''}`);
}
