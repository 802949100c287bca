// Bounds-checked access to a guest's linear memory: reading strings, bytes and header pairs the
// guest passes in, and copying results out through the guest's own allocator.
//
// Memory may grow during any guest call, which detaches the old ArrayBuffer: views are re-made
// whenever they are found detached, never kept across a guest call by callers.

import { Buffer } from 'node:buffer';
import { Status } from './constants.ts';

export interface MemorySource {
  readonly buffer: ArrayBuffer;
}

export type Allocator = (size: number) => number;

export class GuestMemory {
  // Made on first use, not here: the Vm builds its GuestMemory (for the import object) before
  // the instance, and so the memory, exists.
  private buf: Buffer = Buffer.alloc(0);
  private view: DataView = new DataView(new ArrayBuffer(0));

  constructor(
    private readonly source: MemorySource,
    /** Calls the guest's allocator (proxy_on_memory_allocate or malloc); 0 means it failed. */
    private readonly allocator: Allocator | undefined,
  ) {}

  /** The current bytes of guest memory (valid until the next guest call). */
  // Growing a (non-shared) memory detaches its old ArrayBuffer, whose views then have length 0:
  // checking that is much cheaper than asking the memory for its buffer on every access.
  get bytes(): Buffer {
    if (this.buf.byteLength === 0) this.refresh();
    return this.buf;
  }

  private get dv(): DataView {
    if (this.view.byteLength === 0) this.refresh();
    return this.view;
  }

  private refresh(): void {
    this.buf = Buffer.from(this.source.buffer);
    this.view = new DataView(this.source.buffer);
  }

  get canAllocate(): boolean {
    return this.allocator !== undefined;
  }

  inBounds(ptr: number, len: number): boolean {
    return ptr + len <= this.bytes.byteLength;
  }

  /** UTF-8 text at [ptr, ptr+len), or undefined when the range is outside memory. */
  string(ptr: number, len: number): string | undefined {
    const b = this.bytes;
    if (ptr + len > b.byteLength) return undefined;
    // Buffer's decoder gives a flat string: one built by += in JS is a rope, which costs far more
    // when it is then used as a Map key (header names, shared-data keys, property paths).
    // utf8Slice is what toString('utf8') calls, without its argument handling (about 15% of it).
    return (b as Buffer & { utf8Slice(start: number, end: number): string }).utf8Slice(ptr, ptr + len);
  }

  /**
   * A copy of [ptr, ptr+len), or undefined when the range is outside memory. The copy lives in
   * Node's Buffer pool (a fresh small ArrayBuffer costs about 1 µs, a pooled one a quarter of
   * that): its `.buffer` is shared, so keep the bytes with their own copy if they are long-lived.
   */
  copy(ptr: number, len: number): Uint8Array | undefined {
    const b = this.bytes;
    if (ptr + len > b.byteLength) return undefined;
    const out = Buffer.allocUnsafe(len);
    b.copy(out, 0, ptr, ptr + len);
    return out;
  }

  u32(ptr: number): number | undefined {
    if (ptr + 4 > this.bytes.byteLength) return undefined;
    return this.dv.getUint32(ptr, true);
  }

  putU32(ptr: number, value: number): boolean {
    if (ptr + 4 > this.bytes.byteLength) return false;
    this.dv.setUint32(ptr, value >>> 0, true);
    return true;
  }

  putU64(ptr: number, value: bigint): boolean {
    if (ptr + 8 > this.bytes.byteLength) return false;
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, value), true);
    return true;
  }

  /**
   * Copies `data` into a fresh guest allocation and writes its address and size at
   * `ptrPtr`/`sizePtr`. Empty data is reported as address 0, size 0, as Envoy does.
   */
  copyOut(data: Uint8Array | string, ptrPtr: number, sizePtr: number): Status {
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (ptrPtr + 4 > this.bytes.byteLength || sizePtr + 4 > this.bytes.byteLength) return Status.InvalidMemoryAccess;
    let ptr = 0;
    if (size > 0) {
      ptr = this.allocate(size);
      if (ptr === 0) return Status.InvalidMemoryAccess;
      // The allocator may have grown memory: take fresh views.
      const b = this.bytes;
      if (typeof data === 'string') b.write(data, ptr, 'utf8');
      else b.set(data, ptr);
    }
    const dv = this.dv;
    dv.setUint32(ptrPtr, ptr, true);
    dv.setUint32(sizePtr, size, true);
    return Status.Ok;
  }

  /**
   * Writes address 0 and size 0 at `ptrPtr`/`sizePtr` when both are inside memory: a call that
   * answers with no data (NOT_FOUND, EMPTY) leaves no stale pointer for an SDK that reads the
   * slots whatever the status.
   */
  clearOut(ptrPtr: number, sizePtr: number): void {
    if (ptrPtr + 4 > this.bytes.byteLength || sizePtr + 4 > this.bytes.byteLength) return;
    const dv = this.dv;
    dv.setUint32(ptrPtr, 0, true);
    dv.setUint32(sizePtr, 0, true);
  }

  /** Allocates `size` bytes in the guest; 0 when there is no allocator or the result is out of range. */
  allocate(size: number): number {
    if (!this.allocator) return 0;
    const ptr = this.allocator(size) >>> 0;
    return ptr !== 0 && this.inBounds(ptr, size) ? ptr : 0;
  }

  /**
   * Reads a serialized header map: u32 count, count × (u32 key len, u32 value len), then each key
   * and value followed by NUL. Undefined when it is malformed or out of bounds.
   */
  pairs(ptr: number, len: number): Array<[string, string]> | undefined {
    if (len === 0) return [];
    const b = this.bytes;
    if (ptr + len > b.byteLength || len < 4) return undefined;
    const end = ptr + len;
    const dv = this.dv;
    const count = dv.getUint32(ptr, true);
    let sizes = ptr + 4;
    let data = sizes + count * 8;
    if (count > len || data > end) return undefined;
    const out: Array<[string, string]> = [];
    for (let i = 0; i < count; i++, sizes += 8) {
      const klen = dv.getUint32(sizes, true);
      const vlen = dv.getUint32(sizes + 4, true);
      if (data + klen + vlen + 2 > end) return undefined;
      const key = b.toString('utf8', data, data + klen);
      data += klen + 1;
      const value = b.toString('utf8', data, data + vlen);
      data += vlen + 1;
      out.push([key, value]);
    }
    return out;
  }

  /**
   * Serializes pairs into a fresh guest allocation (see `pairs`) and reports it like copyOut. No
   * pairs is address 0, size 0, as Envoy answers for an empty map (not a 4-byte zero count).
   */
  copyPairsOut(pairs: Iterable<readonly [string, string]>, ptrPtr: number, sizePtr: number): Status {
    const encoded = encodePairs(pairs);
    return this.copyOut(encoded.byteLength === 4 ? EMPTY : encoded, ptrPtr, sizePtr);
  }
}

const EMPTY = new Uint8Array(0);

/** The proxy-wasm header-pairs serialization of `pairs`. */
export function encodePairs(pairs: Iterable<readonly [string, string]>): Uint8Array {
  const list = Array.isArray(pairs) ? (pairs as Array<readonly [string, string]>) : [...pairs];
  let size = 4 + list.length * 8;
  const lens = new Array<number>(list.length * 2);
  for (let i = 0; i < list.length; i++) {
    lens[2 * i] = Buffer.byteLength(list[i][0]);
    lens[2 * i + 1] = Buffer.byteLength(list[i][1]);
    size += lens[2 * i] + lens[2 * i + 1] + 2;
  }
  const out = Buffer.alloc(size);
  out.writeUInt32LE(list.length, 0);
  let off = 4 + list.length * 8;
  for (let i = 0; i < list.length; i++) {
    out.writeUInt32LE(lens[2 * i], 4 + i * 8);
    out.writeUInt32LE(lens[2 * i + 1], 8 + i * 8);
    off += out.write(list[i][0], off, 'utf8') + 1;
    off += out.write(list[i][1], off, 'utf8') + 1;
  }
  return out;
}
