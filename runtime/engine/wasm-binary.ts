// Just enough of the Wasm binary format to read and cap memory limits, find where constant-offset
// data segments end and drop whole sections (names, start), plus the reader fuel-rewrite.ts uses.

const SECTION_MEMORY = 5;
const SECTION_START = 8;
const SECTION_DATA = 11;

export interface MemoryLimits {
  flags: number;
  initial: number;
  max?: number;
}

export interface Section {
  id: number;
  headerStart: number;
  start: number;
  end: number;
}

export class WasmReader {
  constructor(readonly bytes: Uint8Array, public pos = 0) {}
  byte(): number {
    if (this.pos >= this.bytes.length) throw new RangeError('unexpected end of module');
    return this.bytes[this.pos++];
  }
  peek(): number {
    if (this.pos >= this.bytes.length) throw new RangeError('unexpected end of module');
    return this.bytes[this.pos];
  }
  /** Skips n bytes (read the count first: `pos += u32()` would add to the position before the read). */
  skip(n: number): void {
    this.pos += n;
  }
  /** Skips one LEB128 number of any width (u32, s33, u64). */
  skipLeb(): void {
    while (this.byte() & 0x80);
  }
  u32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new RangeError('LEB128 number too long');
  }
  s32(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.byte();
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80 && shift < 35);
    return shift < 32 && b & 0x40 ? result | (-1 << shift) : result;
  }
}

export function sectionsOf(bytes: Uint8Array): Section[] {
  const r = new WasmReader(bytes, 8);
  const out: Section[] = [];
  while (r.pos < bytes.length) {
    const headerStart = r.pos;
    const id = r.byte();
    const size = r.u32();
    out.push({ id, headerStart, start: r.pos, end: r.pos + size });
    r.pos += size;
  }
  return out;
}

/** The limits of each memory the module defines (imported memories are not listed). */
export function definedMemories(bytes: Uint8Array): MemoryLimits[] {
  const s = sectionsOf(bytes).find((x) => x.id === SECTION_MEMORY);
  if (!s) return [];
  const r = new WasmReader(bytes, s.start);
  const count = r.u32();
  const out: MemoryLimits[] = [];
  for (let i = 0; i < count; i++) {
    const flags = r.byte();
    const initial = r.u32();
    out.push(flags & 1 ? { flags, initial, max: r.u32() } : { flags, initial });
    if (flags & 0x08) r.u32(); // custom page size; the caller refuses these
  }
  return out;
}

/**
 * End offsets (in bytes) of the active data segments of memory 0 whose offset is an `i32.const`.
 * Stops at the first segment whose offset expression is anything else (V8 still checks those
 * when it instantiates).
 */
export function constantDataSegmentEnds(bytes: Uint8Array): number[] {
  const s = sectionsOf(bytes).find((x) => x.id === SECTION_DATA);
  if (!s) return [];
  const r = new WasmReader(bytes, s.start);
  const count = r.u32();
  const ends: number[] = [];
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags === 1) {
      r.skip(r.u32()); // passive
      continue;
    }
    const memory = flags === 2 ? r.u32() : 0;
    if (r.byte() !== 0x41) return ends; // not i32.const
    const offset = r.s32() >>> 0;
    if (r.byte() !== 0x0b) return ends;
    const size = r.u32();
    r.pos += size;
    if (memory === 0) ends.push(offset + size);
  }
  return ends;
}

export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** Returns the module with the maximum of its one defined memory set to `maxPages`. */
export function withMemoryMax(bytes: Uint8Array, maxPages: number): Uint8Array {
  const s = sectionsOf(bytes).find((x) => x.id === SECTION_MEMORY);
  if (!s) return bytes;
  const [memory, ...rest] = definedMemories(bytes);
  if (!memory || rest.length > 0) throw new RangeError('expected exactly one defined memory');
  // Keep the shared bit; set "has max".
  const payload = [1, (memory.flags & 0x02) | 0x01, ...leb(memory.initial), ...leb(maxPages)];
  const section = [SECTION_MEMORY, ...leb(payload.length), ...payload];
  const out = new Uint8Array(bytes.length - (s.end - s.headerStart) + section.length);
  out.set(bytes.subarray(0, s.headerStart), 0);
  out.set(section, s.headerStart);
  out.set(bytes.subarray(s.end), s.headerStart + section.length);
  return out;
}

function isNameSection(bytes: Uint8Array, s: Section): boolean {
  if (s.id !== 0) return false;
  const r = new WasmReader(bytes, s.start);
  const len = r.u32();
  return new TextDecoder().decode(bytes.subarray(r.pos, r.pos + len)) === 'name';
}

/** Whether the module carries a "name" custom section (function and local names). */
export function hasNameSection(bytes: Uint8Array): boolean {
  return sectionsOf(bytes).some((s) => isNameSection(bytes, s));
}

/** Returns the module without its "name" custom section. */
export function withoutNameSection(bytes: Uint8Array): Uint8Array {
  return without(bytes, (s) => isNameSection(bytes, s));
}

/** Returns the module without its start section (the start function stays, uncalled). */
export function withoutStartSection(bytes: Uint8Array): Uint8Array {
  return without(bytes, (s) => s.id === SECTION_START);
}

function without(bytes: Uint8Array, drop: (s: Section) => boolean): Uint8Array {
  const parts = [bytes.subarray(0, 8)];
  for (const s of sectionsOf(bytes)) if (!drop(s)) parts.push(bytes.subarray(s.headerStart, s.end));
  return Buffer.concat(parts);
}
