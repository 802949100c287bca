// Adds fuel checks to a module's code by rewriting its binary: one at every function entry and
// one at every loop header, so that no call can run long without passing one. Nothing else in the
// module moves: the check's state and its way out to the host are appended, never inserted, so no
// function, global, table or type index changes.
//
// Each check is
//   fuel -= 1; if (fuel < 0) { fuel = call_indirect[refill table](); if (fuel < 0) unreachable }
// The refill table holds one host function (engine.ts puts it there before the guest runs) that
// returns new fuel, or throws BudgetExceededError once the call is over its time budget. It
// returns -1 only when the guest caught that error (Wasm exceptions can), and the trap that
// follows cannot be caught. The module's start function is exported instead of started, so that
// it runs only once the table is filled.

import { WasmReader, leb, sectionsOf, type Section } from './wasm-binary.ts';

export const FUEL_TABLE_EXPORT = 'sluice:fuel';
export const START_EXPORT = 'sluice:start';

const S = { custom: 0, type: 1, import: 2, function: 3, table: 4, memory: 5, global: 6, export: 7, start: 8, element: 9, code: 10, data: 11, dataCount: 12, tag: 13 };
/** Where each section id goes in a module (the tag section sits between memory and global). */
const ORDER: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

export class RewriteError extends Error {}

/** Returns `bytes` with fuel checks; throws RewriteError for a module it cannot safely rewrite. */
export function addFuelChecks(bytes: Uint8Array): Uint8Array {
  const sections = sectionsOf(bytes);
  const find = (id: number) => sections.find((s) => s.id === id);
  const counts = importCounts(bytes, find(S.import));
  const typeIndex = countOf(bytes, find(S.type));
  const tableIndex = counts.tables + countOf(bytes, find(S.table));
  const globalIndex = counts.globals + countOf(bytes, find(S.global));
  const startFunction = find(S.start) ? new WasmReader(bytes, find(S.start)!.start).u32() : undefined;

  for (const name of [FUEL_TABLE_EXPORT, START_EXPORT]) {
    if (exportNames(bytes, find(S.export)).includes(name)) throw new RewriteError(`it exports "${name}", a name reserved for Sluice's engine`);
  }

  const check = fuelCheck(globalIndex, typeIndex, tableIndex);
  const replacements = new Map<number, number[] | null>([
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
  if (code) replacements.set(S.code, rewriteCode(bytes, code, check));

  const parts: Array<Uint8Array | number[]> = [bytes.subarray(0, 8)];
  const emit = (id: number, payload: number[]) => parts.push([id, ...leb(payload.length)], payload);
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

/** The check's bytes (see the header comment). */
function fuelCheck(global: number, type: number, table: number): number[] {
  const get = [0x23, ...leb(global)];
  const set = [0x24, ...leb(global)];
  return [
    ...get, 0x41, 0x01, 0x6b, ...set, // fuel -= 1
    ...get, 0x41, 0x00, 0x48, 0x04, 0x40, // if (fuel < 0)
    0x41, 0x00, 0x11, ...leb(type), ...leb(table), ...set, // fuel = refill()
    ...get, 0x41, 0x00, 0x48, 0x04, 0x40, 0x00, 0x0b, // if (fuel < 0) unreachable
    0x0b,
  ];
}

function rewriteCode(bytes: Uint8Array, section: Section, check: number[]): number[] {
  const r = new WasmReader(bytes, section.start);
  const count = r.u32();
  const out: number[] = [...leb(count)];
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const bodyStart = r.pos;
    const groups = r.u32();
    for (let g = 0; g < groups; g++) {
      r.u32();
      skipValueType(r);
    }
    const body: number[] = [];
    pushRange(body, bytes, bodyStart, r.pos);
    body.push(...check);
    let copied = r.pos;
    while (r.pos < end) {
      const op = r.byte();
      if (op === 0x03) {
        skipBlockType(r);
        pushRange(body, bytes, copied, r.pos);
        body.push(...check);
        copied = r.pos;
      } else {
        skipImmediates(r, op);
      }
    }
    if (r.pos !== end) throw new RewriteError(`function body ${i} does not end where its size says`);
    pushRange(body, bytes, copied, end);
    out.push(...leb(body.length));
    pushRange(out, body, 0, body.length);
  }
  return out;
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
