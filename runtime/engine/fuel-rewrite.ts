// Adds fuel checks to a module's code by rewriting its binary, so that no call can run long
// without passing one: every loop turn and every entry into a function that calls others is
// counted. Nothing in the module moves: the checks' state and their way out to the host are
// appended, never inserted (one table, one global, one type, and one local at the end of a
// function's locals), so no function, global, table, type or local index changes.
//
// The fuel is a mutable i32 global; a check that takes fuel is
//   fuel -= n; if (fuel < 0) { fuel = call_indirect[refill table](); if (fuel < 0) unreachable }
// The refill table holds one host function (engine.ts puts it there before the guest runs) that
// returns new fuel, or throws BudgetExceededError once the call is over its time budget. It
// returns -1 only when the guest caught that error (Wasm exceptions can), and the trap that
// follows cannot be caught. The module's start function is exported instead of started, so that
// it runs only once the table is filled.
//
// Where the checks go (unbounded work needs a loop, or calls: recursion or a fan-out of calls):
// - Loop headers count down a local of the function, set to LOOP_CHUNK at entry, and take
//   LOOP_CHUNK fuel each time it runs out: a loop turn costs a decrement and a branch on a
//   register instead of a load, a store and a compare of the global (bench/engine.ts: a tight
//   i32 sum went from ~3x raw to ~2.1x, a byte copy from ~3.3x to ~2.1x; V8 still does not
//   unroll a loop with a call in it, even a cold one, so tight loops stay ~2x). Up to
//   LOOP_CHUNK - 1 turns per call go uncounted; the call itself is counted by its caller (a loop
//   turn or a function entry), so the time per unit of fuel stays bounded.
// - Entries of functions that contain a call instruction take 1 fuel. A function without calls
//   (a leaf) runs its straight-line code and its (counted) loops, then returns: it cannot run
//   long by itself, and its callers are counted, so its entry is not (most of AssemblyScript's
//   small runtime and library helpers are leaves).

import { WasmReader, leb, sectionsOf, type Section } from './wasm-binary.ts';

export const FUEL_TABLE_EXPORT = 'sluice:fuel';
export const START_EXPORT = 'sluice:start';
/** Loop turns per fuel check of the global; also the fuel each such check takes. */
export const LOOP_CHUNK = 32;

const S = { custom: 0, type: 1, import: 2, function: 3, table: 4, memory: 5, global: 6, export: 7, start: 8, element: 9, code: 10, data: 11, dataCount: 12, tag: 13 };
/** Where each section id goes in a module (the tag section sits between memory and global). */
const ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

export class RewriteError extends Error {}

/** Returns `bytes` with fuel checks; throws RewriteError for a module it cannot safely rewrite. */
export function addFuelChecks(bytes: Uint8Array): Uint8Array {
  const sections = sectionsOf(bytes);
  const find = (id: number) => sections.find((s) => s.id === id);
  const counts = importCounts(bytes, find(S.import));
  const types = typeParams(bytes, find(S.type));
  const typeIndex = types.length;
  const tableIndex = counts.tables + countOf(bytes, find(S.table));
  const globalIndex = counts.globals + countOf(bytes, find(S.global));
  const startFunction = find(S.start) ? new WasmReader(bytes, find(S.start)!.start).u32() : undefined;

  for (const name of [FUEL_TABLE_EXPORT, START_EXPORT]) {
    if (exportNames(bytes, find(S.export)).includes(name)) throw new RewriteError(`it exports "${name}", a name reserved for Sluice's engine`);
  }

  const fuel = { global: globalIndex, type: typeIndex, table: tableIndex };
  const replacements = new Map<number, Uint8Array | number[] | null>([
    [S.type, appendToVector(bytes, find(S.type), [0x60, 0x00, 0x01, 0x7f])], // () -> i32
    [S.table, appendToVector(bytes, find(S.table), [0x70, 0x00, 0x01])], // funcref, min 1
    [S.global, appendToVector(bytes, find(S.global), [0x7f, 0x01, 0x41, 0x00, 0x0b])], // mut i32 = 0
    [
      S.export,
      appendToVector(bytes, find(S.export), [
        ...exportEntry(FUEL_TABLE_EXPORT, 0x01, tableIndex),
        ...(startFunction === undefined ? [] : exportEntry(START_EXPORT, 0x00, startFunction)),
      ], startFunction === undefined ? 1 : 2),
    ],
    [S.start, null],
  ]);
  const code = find(S.code);
  if (code) {
    const params = functionTypes(bytes, find(S.function)).map((t) => {
      if (types[t] === undefined) throw new RewriteError(`a function has type ${t}, which is not a function type`);
      return types[t]!;
    });
    replacements.set(S.code, rewriteCode(bytes, code, fuel, params));
  }

  const parts: Array<Uint8Array | number[]> = [bytes.subarray(0, 8)];
  const emit = (id: number, payload: Uint8Array | number[]) => parts.push([id, ...leb(payload.length)], payload);
  const done = new Set<number>();
  const emitMissingBefore = (rank: number) => {
    for (const [id, payload] of replacements) {
      if (done.has(id) || ORDER[id] >= rank || find(id)) continue;
      if (payload) emit(id, payload);
      done.add(id);
    }
  };
  for (const s of sections) {
    if (s.id !== S.custom) emitMissingBefore(ORDER[s.id] ?? 99);
    if (replacements.has(s.id)) {
      const payload = replacements.get(s.id);
      if (payload) emit(s.id, payload);
      done.add(s.id);
    } else {
      parts.push(bytes.subarray(s.headerStart, s.end));
    }
  }
  emitMissingBefore(99);
  return concat(parts);
}

interface Fuel {
  global: number;
  type: number;
  table: number;
}

/** `fuel -= charge; if (fuel < 0) { fuel = refill(); if (fuel < 0) unreachable }` */
function takeFuel({ global, type, table }: Fuel, charge: number): number[] {
  const get = [0x23, ...leb(global)];
  const set = [0x24, ...leb(global)];
  return [
    ...get, ...i32Const(charge), 0x6b, ...set, // fuel -= charge
    ...get, 0x41, 0x00, 0x48, 0x04, 0x40, // if (fuel < 0)
    0x41, 0x00, 0x11, ...leb(type), ...leb(table), ...set, // fuel = refill()
    ...get, 0x41, 0x00, 0x48, 0x04, 0x40, 0x00, 0x0b, // if (fuel < 0) unreachable
    0x0b,
  ];
}

/**
 * `if (--turns == 0) { turns = LOOP_CHUNK; fuel -= LOOP_CHUNK ... }` with `turns` the local
 * `counter`, written as `block (br_if 0 (--turns)) ... end`: measured a little faster in V8 than
 * `if (i32.eqz (--turns))` (tight loops ~2.1x raw instead of ~2.3-3x), the hot path being one
 * decrement and one branch on a register.
 */
function loopCheck(fuel: Fuel, counter: number): number[] {
  const local = leb(counter);
  return [
    0x02, 0x40, 0x20, ...local, 0x41, 0x01, 0x6b, 0x22, ...local, 0x0d, 0x00, // block; br_if 0 (--turns != 0)
    ...i32Const(LOOP_CHUNK), 0x21, ...local, // turns = LOOP_CHUNK
    ...takeFuel(fuel, LOOP_CHUNK),
    0x0b,
  ];
}

/** Opcodes of the instructions that call a function: call, call_indirect, their return_ and _ref forms. */
const CALLS = new Set([0x10, 0x11, 0x12, 0x13, 0x14, 0x15]);

/**
 * The code section with the checks in. `params[i]` is the number of parameters of the module's
 * i-th function (the i-th body), which the loop counter's local index follows.
 */
function rewriteCode(bytes: Uint8Array, section: Section, fuel: Fuel, params: number[]): Uint8Array {
  const r = new WasmReader(bytes, section.start);
  const count = r.u32();
  if (count !== params.length) throw new RewriteError(`it has ${params.length} functions but ${count} function bodies`);
  const out = new ByteWriter(section.end - section.start + count * 16);
  out.push(leb(count));
  const entryCheck = takeFuel(fuel, 1);
  const body = new ByteWriter(1024);
  const loops: number[] = [];
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const groups = r.u32();
    const groupsStart = r.pos;
    let locals = params[i];
    for (let g = 0; g < groups; g++) {
      locals += r.u32();
      skipValueType(r);
    }
    const codeStart = r.pos;
    loops.length = 0;
    let calls = false;
    while (r.pos < end) {
      const op = r.byte();
      if (op === 0x03) {
        skipBlockType(r);
        loops.push(r.pos);
      } else {
        if (CALLS.has(op)) calls = true;
        skipImmediates(r, op);
      }
    }
    if (r.pos !== end) throw new RewriteError(`function body ${i} does not end where its size says`);

    body.length = 0;
    // Locals: the original groups, plus one i32 (the loop counter) if the function has loops.
    body.push(leb(groups + (loops.length > 0 ? 1 : 0)));
    body.copy(bytes, groupsStart, codeStart);
    if (loops.length > 0) body.push([0x01, 0x7f]);
    if (calls) body.push(entryCheck);
    let copied = codeStart;
    if (loops.length > 0) {
      const counter = locals; // the appended local's index: after the parameters and every local
      body.push([...i32Const(LOOP_CHUNK), 0x21, ...leb(counter)]);
      const check = loopCheck(fuel, counter);
      for (const at of loops) {
        body.copy(bytes, copied, at);
        body.push(check);
        copied = at;
      }
    }
    body.copy(bytes, copied, end);
    out.push(leb(body.length));
    out.copy(body.bytes, 0, body.length);
  }
  return out.bytes.subarray(0, out.length);
}

/** A growable byte buffer (number[] pushes were most of the rewriting time). */
class ByteWriter {
  bytes: Uint8Array;
  length = 0;
  constructor(capacity: number) {
    this.bytes = new Uint8Array(Math.max(capacity, 16));
  }
  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const bigger = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
  }
  push(values: ArrayLike<number>): void {
    this.reserve(values.length);
    for (let i = 0; i < values.length; i++) this.bytes[this.length++] = values[i];
  }
  copy(from: Uint8Array, start: number, end: number): void {
    this.reserve(end - start);
    this.bytes.set(from.subarray(start, end), this.length);
    this.length += end - start;
  }
}

/** `i32.const n` (signed LEB128). */
function i32Const(n: number): number[] {
  const out = [0x41];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
}

function pushRange(out: number[], from: ArrayLike<number>, start: number, end: number): void {
  for (let i = start; i < end; i++) out.push(from[i]);
}

/** Skips one value type: a single byte, or a (ref null? heaptype) pair. */
function skipValueType(r: WasmReader): void {
  const t = r.byte();
  if (t === 0x63 || t === 0x64) r.skipLeb();
}

/** Block types are 0x40, a value type, or a type index (s33). */
function skipBlockType(r: WasmReader): void {
  const t = r.peek();
  if (t === 0x63 || t === 0x64) {
    r.byte();
    r.skipLeb();
  } else {
    r.skipLeb();
  }
}

function skipMemarg(r: WasmReader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory: memory index follows
  r.skipLeb(); // offset (u32, or u64 for memory64)
}

/** Skips the immediates of the instruction whose opcode was just read. */
function skipImmediates(r: WasmReader, op: number): void {
  if (op >= 0x45 && op <= 0xc4) return; // numeric, comparison, conversion, sign extension
  if (op >= 0x28 && op <= 0x3e) return skipMemarg(r);
  switch (op) {
    case 0x00: case 0x01: case 0x05: case 0x0b: case 0x0f: case 0x19: case 0x1a: case 0x1b: case 0x0a: case 0xd1: case 0xd3: case 0xd4:
      return; // unreachable nop else end return catch_all drop select throw_ref ref.is_null ref.eq ref.as_non_null
    case 0x02: case 0x04: case 0x06:
      return skipBlockType(r); // block if try
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x10: case 0x12: case 0x14: case 0x15: case 0x18:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0x40: case 0xd2: case 0xd5: case 0xd6:
      r.u32(); // one index: catch throw rethrow br br_if call return_call call_ref return_call_ref delegate locals globals tables memory.size/grow ref.func br_on_(non_)null
      return;
    case 0x0e: {
      const n = r.u32(); // br_table
      for (let i = 0; i <= n; i++) r.u32();
      return;
    }
    case 0x11: case 0x13:
      r.u32(); // call_indirect, return_call_indirect: type, table
      r.u32();
      return;
    case 0x1c: {
      const n = r.u32(); // typed select
      for (let i = 0; i < n; i++) skipValueType(r);
      return;
    }
    case 0x1f: {
      skipBlockType(r); // try_table
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const kind = r.byte();
        if (kind === 0x00 || kind === 0x01) r.u32(); // catch / catch_ref: tag
        r.u32(); // label
      }
      return;
    }
    case 0x41: case 0x42:
      return r.skipLeb(); // i32.const, i64.const
    case 0x43:
      r.pos += 4;
      return;
    case 0x44:
      r.pos += 8;
      return;
    case 0xd0:
      return r.skipLeb(); // ref.null heaptype
    case 0xfc:
      return skipMiscOp(r, r.u32());
    case 0xfd:
      return skipSimdOp(r, r.u32());
    case 0xfe:
      return skipAtomicOp(r, r.u32());
  }
  throw new RewriteError(`it uses instruction 0x${op.toString(16).padStart(2, '0')} (at byte ${r.pos - 1}), which Sluice's instrumenter does not know (Wasm GC and stringref are not supported)`);
}

function skipMiscOp(r: WasmReader, sub: number): void {
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: case 10: case 12: case 14:
      r.u32(); // memory.init, memory.copy, table.init, table.copy: two indices
      r.u32();
      return;
    case 9: case 11: case 13: case 15: case 16: case 17:
      r.u32(); // data.drop memory.fill elem.drop table.grow table.size table.fill
      return;
  }
  throw new RewriteError(`it uses instruction 0xfc ${sub}, which Sluice's instrumenter does not know`);
}

function skipSimdOp(r: WasmReader, sub: number): void {
  if (sub <= 11) return skipMemarg(r); // loads and stores
  if (sub === 12 || sub === 13) {
    r.pos += 16; // v128.const, i8x16.shuffle
    return;
  }
  if (sub >= 21 && sub <= 34) {
    r.pos += 1; // extract/replace lane
    return;
  }
  if (sub >= 84 && sub <= 91) {
    skipMemarg(r); // load/store lane
    r.pos += 1;
    return;
  }
  if (sub === 92 || sub === 93) return skipMemarg(r); // load zero
  // Every other SIMD instruction has no immediates.
}

function skipAtomicOp(r: WasmReader, sub: number): void {
  if (sub === 0x03) {
    r.pos += 1; // atomic.fence
    return;
  }
  skipMemarg(r);
}

function importCounts(bytes: Uint8Array, section: Section | undefined): { tables: number; globals: number } {
  const counts = { tables: 0, globals: 0 };
  if (!section) return counts;
  const r = new WasmReader(bytes, section.start);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.skip(r.u32()); // module
    r.skip(r.u32()); // name
    const kind = r.byte();
    if (kind === 0x00) r.u32();
    else if (kind === 0x01) {
      skipValueType(r);
      skipLimits(r);
      counts.tables++;
    } else if (kind === 0x02) skipLimits(r);
    else if (kind === 0x03) {
      skipValueType(r);
      r.byte();
      counts.globals++;
    } else if (kind === 0x04) {
      r.byte();
      r.u32();
    } else throw new RewriteError(`it has an import of unknown kind ${kind}`);
  }
  return counts;
}

function skipLimits(r: WasmReader): void {
  const flags = r.byte();
  r.skipLeb();
  if (flags & 1) r.skipLeb();
}

function countOf(bytes: Uint8Array, section: Section | undefined): number {
  return section ? new WasmReader(bytes, section.start).u32() : 0;
}

/**
 * The parameter count of every type of the type section, by type index (undefined for struct and
 * array types). A rec group holds several types: counting entries instead of types (as an earlier
 * version did) gives the appended type the wrong index in modules with Wasm GC type groups.
 */
function typeParams(bytes: Uint8Array, section: Section | undefined): Array<number | undefined> {
  const types: Array<number | undefined> = [];
  if (!section) return types;
  const r = new WasmReader(bytes, section.start);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    if (r.peek() === 0x4e) {
      r.byte(); // rec
      const m = r.u32();
      for (let j = 0; j < m; j++) types.push(readSubType(r));
    } else {
      types.push(readSubType(r));
    }
  }
  return types;
}

/** Reads one (sub)type; returns its parameter count if it is a function type. */
function readSubType(r: WasmReader): number | undefined {
  if (r.peek() === 0x50 || r.peek() === 0x4f) {
    r.byte(); // sub, sub final
    const supers = r.u32();
    for (let i = 0; i < supers; i++) r.u32();
  }
  const form = r.byte();
  if (form === 0x60) {
    const params = r.u32();
    for (let i = 0; i < params; i++) skipValueType(r);
    const results = r.u32();
    for (let i = 0; i < results; i++) skipValueType(r);
    return params;
  }
  if (form === 0x5f || form === 0x5e) {
    const fields = form === 0x5f ? r.u32() : 1;
    for (let i = 0; i < fields; i++) {
      skipValueType(r); // storage type: a value type or a packed i8/i16 (one byte)
      r.byte(); // mutability
    }
    return undefined;
  }
  throw new RewriteError(`its type section has a type of unknown form 0x${form.toString(16)}`);
}

/** The type index of each function the module defines, in order. */
function functionTypes(bytes: Uint8Array, section: Section | undefined): number[] {
  if (!section) return [];
  const r = new WasmReader(bytes, section.start);
  const n = r.u32();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(r.u32());
  return out;
}

function exportNames(bytes: Uint8Array, section: Section | undefined): string[] {
  if (!section) return [];
  const r = new WasmReader(bytes, section.start);
  const n = r.u32();
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = r.u32();
    names.push(Buffer.from(bytes.subarray(r.pos, r.pos + len)).toString('utf8'));
    r.pos += len;
    r.byte();
    r.u32();
  }
  return names;
}

function exportEntry(name: string, kind: number, index: number): number[] {
  const utf8 = [...Buffer.from(name, 'utf8')];
  return [...leb(utf8.length), ...utf8, kind, ...leb(index)];
}

/** A vector section's payload with `entries` (already encoded, `added` of them) appended. */
function appendToVector(bytes: Uint8Array, section: Section | undefined, entries: number[], added = 1): number[] {
  if (!section) return [...leb(added), ...entries];
  const r = new WasmReader(bytes, section.start);
  const count = r.u32();
  const out = [...leb(count + added)];
  pushRange(out, bytes, r.pos, section.end);
  out.push(...entries);
  return out;
}

function concat(parts: Array<Uint8Array | number[]>): Uint8Array {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
