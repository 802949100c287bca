// Moving bytes across the ABI: the allocator the host calls, the scratch slots host functions
// write their results to, and conversions between AssemblyScript values and UTF-8 bytes.

/** Scratch slots the host writes "return" values into (pointer, size, cas/flags, u64). */
// Why static slots: host calls never nest, so one set is enough and saves an allocation per call.
const SCRATCH: usize = memory.data(24, 8);
export const RETURN_PTR: usize = SCRATCH;
export const RETURN_SIZE: usize = SCRATCH + 4;
export const RETURN_EXTRA: usize = SCRATCH + 8;
export const RETURN_U64: usize = SCRATCH + 16;

// TLSF cannot hand out blocks this large; answering 0 lets the host fail the call cleanly.
const MAX_ALLOCATION: usize = 1 << 30;

// Results arena. The host copies every result (a header value, a property, a body) into memory it
// gets from `proxy_on_memory_allocate`, and the SDK copies it out into a managed value at once,
// before the next host call. So small results are bump-allocated in a static area, which is reset
// by `clearReturned()` before each host call that returns data: no TLSF allocation, no free.
// Results that do not fit (bodies, big maps) come from the heap and are freed after use.
const ARENA_SIZE: usize = 1024;
const ARENA: usize = memory.data(<i32>ARENA_SIZE, 16);
let arenaTop: usize = ARENA;

/**
 * The allocator the host calls (through `proxy_on_memory_allocate`) to copy data into the module.
 * Blocks are raw memory, not GC objects: the SDK copies them into managed values and frees them.
 */
export function allocateForHost(size: usize): usize {
  const top = arenaTop;
  const aligned = (size + 7) & ~<usize>7;
  if (aligned <= ARENA + ARENA_SIZE - top && size > 0) {
    arenaTop = top + aligned;
    return top;
  }
  if (size >= MAX_ALLOCATION) return 0;
  return heap.alloc(size);
}

/** Frees a block the host allocated for a result (the pointer in RETURN_PTR). */
// @ts-ignore: decorator
@inline
export function freeReturned(ptr: usize): void {
  // Arena blocks are released all at once by the next clearReturned().
  if (ptr - ARENA >= ARENA_SIZE && ptr != 0) heap.free(ptr);
}

/** The bytes the last host call returned through RETURN_PTR/RETURN_SIZE, copied out and freed. */
export function takeReturnedBytes(): ArrayBuffer {
  const ptr = <usize>load<u32>(RETURN_PTR);
  const size = <i32>load<u32>(RETURN_SIZE);
  const out = new ArrayBuffer(size);
  if (size > 0) memory.copy(changetype<usize>(out), ptr, <usize>size);
  freeReturned(ptr);
  return out;
}

/** The UTF-8 text the last host call returned through RETURN_PTR/RETURN_SIZE, decoded and freed. */
export function takeReturnedString(): string {
  const ptr = <usize>load<u32>(RETURN_PTR);
  const size = <usize>load<u32>(RETURN_SIZE);
  const out = decodeUtf8(ptr, size);
  freeReturned(ptr);
  return out;
}

/**
 * Clears the result slots before a host call, so a call that fails writes no stale pointer we
 * free, and empties the results arena (nothing in it is still needed: results are consumed at once).
 */
// @ts-ignore: decorator
@inline
export function clearReturned(): void {
  store<u64>(SCRATCH, 0);
  store<u64>(SCRATCH + 8, 0);
  store<u64>(SCRATCH + 16, 0);
  arenaTop = ARENA;
}

// Encoding area. Strings passed to the host (header names and values, mostly) are encoded here
// instead of into a fresh ArrayBuffer per call; longer ones get a heap block freed after the call.
const ENCODE_SIZE: usize = 1024;
const ENCODE_AREA: usize = memory.data(<i32>ENCODE_SIZE, 16);
let encodeBlock: usize = 0;

/**
 * Room for `maxBytes` of arguments, valid until `releaseEncoded()` (call it after the host call).
 * A string of n UTF-16 units needs at most 3n bytes of UTF-8.
 */
// @ts-ignore: decorator
@inline
export function encodeArea(maxBytes: usize): usize {
  if (maxBytes <= ENCODE_SIZE) return ENCODE_AREA;
  return encodeBlockOf(maxBytes);
}

function encodeBlockOf(maxBytes: usize): usize {
  releaseEncoded();
  encodeBlock = heap.alloc(maxBytes);
  return encodeBlock;
}

/** Frees the block `encodeArea` took from the heap, if it did. */
// @ts-ignore: decorator
@inline
export function releaseEncoded(): void {
  if (encodeBlock != 0) {
    heap.free(encodeBlock);
    encodeBlock = 0;
  }
}

// Recently encoded strings. Filters pass the same strings again and again (header names, constant
// values, configured values), so the bytes of short ones are kept, by the string's address, and
// handed to the host without encoding them anew. The cache holds a reference to each string it
// keeps, so an address in it cannot be reused by another string: an address match is the same,
// immutable string. 32 slots of 32 bytes: strings of up to 32 bytes of UTF-8.
const ENCODED_SLOTS: usize = 32;
const ENCODED_ROOM: usize = 32;
const ENCODED_AREA: usize = memory.data(<i32>(ENCODED_SLOTS * ENCODED_ROOM), 16);
const ENCODED_SIZES: usize = memory.data(<i32>(ENCODED_SLOTS * 4), 4);
const encodedStrings = new StaticArray<string | null>(<i32>ENCODED_SLOTS);

/** A slot number no string maps to, for `utf8Of`'s `busySlot`. */
export const NO_SLOT: usize = ENCODED_SLOTS;

/** Size of the bytes the last `utf8Of` returned. */
export let utf8Size: usize = 0;

// @ts-ignore: decorator
@inline
export function encodedSlot(text: usize): usize {
  return ((text >> 4) ^ (text >> 10)) & (ENCODED_SLOTS - 1);
}

/**
 * The address of the UTF-8 bytes of the string at `text` (their size in `utf8Size`), valid until
 * the next `utf8Of` that could reuse its slot: from the cache, or encoded into it, or (a long
 * string, or one whose slot is `busySlot`, still in use for another argument) encoded at `dest`,
 * which must have room for 3 bytes per UTF-16 unit.
 */
// @ts-ignore: decorator
@inline
export function utf8Of(text: usize, dest: usize, busySlot: usize): usize {
  const slot = encodedSlot(text);
  // A raw load: reading the entry as a string would cost a shadow-stack slot.
  if (load<usize>(changetype<usize>(encodedStrings) + (slot << alignof<usize>())) == text) {
    utf8Size = <usize>load<u32>(ENCODED_SIZES + (slot << 2));
    return ENCODED_AREA + slot * ENCODED_ROOM;
  }
  return encodeIntoCache(text, slot, dest, busySlot);
}

function encodeIntoCache(text: usize, slot: usize, dest: usize, busySlot: usize): usize {
  const units = <usize>(load<u32>(text - 4) >> 1);
  const size = encodeUtf8Units(text, units, dest);
  utf8Size = size;
  if (size > ENCODED_ROOM || slot == busySlot) return dest;
  const at = ENCODED_AREA + slot * ENCODED_ROOM;
  memory.copy(at, dest, size);
  store<u32>(ENCODED_SIZES + (slot << 2), <u32>size);
  unchecked(encodedStrings[<i32>slot] = changetype<string>(text));
  return at;
}

/**
 * Writes the UTF-8 of the `units` UTF-16 units at `src` (a string's address) to `dest` (room for
 * 3 bytes per unit) and returns its size. Same bytes as String.UTF8.encode (lone surrogates as
 * WTF-8). Takes addresses, not a string: a managed argument would cost a shadow-stack slot per
 * call. ASCII (nearly every header) is converted 4 units at a time.
 */
export function encodeUtf8Units(src: usize, units: usize, dest: usize): usize {
  let i: usize = 0;
  while (i + 4 <= units) {
    const v = load<u64>(src + (i << 1));
    if (v & 0xFF80_FF80_FF80_FF80) return i + encodeRest(src + (i << 1), units - i, dest + i);
    store<u32>(dest + i, <u32>((v & 0xFF) | ((v >> 8) & 0xFF00) | ((v >> 16) & 0xFF_0000) | ((v >> 24) & 0xFF00_0000)));
    i += 4;
  }
  if (units - i >= 2) {
    const v = load<u32>(src + (i << 1));
    if (v & 0xFF80_FF80) return i + encodeRest(src + (i << 1), units - i, dest + i);
    store<u16>(dest + i, <u16>((v & 0xFF) | ((v >> 8) & 0xFF00)));
    i += 2;
  }
  if (i < units) {
    const c = <u32>load<u16>(src + (i << 1));
    if (c >= 0x80) return i + encodeRest(src + (i << 1), units - i, dest + i);
    store<u8>(dest + i, <u8>c);
  }
  return units;
}

/** The library's encoder, from the first unit that may not be ASCII (never the low half of a pair). */
function encodeRest(src: usize, units: usize, dest: usize): usize {
  return String.UTF8.encodeUnsafe(src, <i32>units, dest);
}

/**
 * Decodes `size` bytes of UTF-8 at `ptr` into a string; same result as String.UTF8.decodeUnsafe.
 * ASCII (nearly every header) is widened 4 bytes at a time into a string of exactly the right size.
 */
export function decodeUtf8(ptr: usize, size: usize): string {
  if (size == 0) return "";
  const out = __new(size << 1, idof<String>());
  let i: usize = 0;
  while (i + 4 <= size) {
    const b = <u64>load<u32>(ptr + i);
    if (b & 0x8080_8080) return String.UTF8.decodeUnsafe(ptr, size);
    store<u64>(out + (i << 1), (b & 0xFF) | ((b & 0xFF00) << 8) | ((b & 0xFF_0000) << 16) | ((b & 0xFF00_0000) << 24));
    i += 4;
  }
  if (size - i >= 2) {
    const b = <u32>load<u16>(ptr + i);
    if (b & 0x8080) return String.UTF8.decodeUnsafe(ptr, size);
    store<u32>(out + (i << 1), (b & 0xFF) | ((b & 0xFF00) << 8));
    i += 2;
  }
  if (i < size) {
    const c = <u32>load<u8>(ptr + i);
    if (c >= 0x80) return String.UTF8.decodeUnsafe(ptr, size);
    store<u16>(out + (i << 1), <u16>c);
  }
  return changetype<string>(out);
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): ArrayBuffer {
  return String.UTF8.encode(text);
}

/** Address of an ArrayBuffer's bytes, to pass to the host. */
@inline
export function ptrOf(buffer: ArrayBuffer): usize {
  return changetype<usize>(buffer);
}

/**
 * The bytes of a value authors pass as a body, property or queue item: a string (UTF-8),
 * an ArrayBuffer, a Uint8Array, or an Array<u8>. Other types are a compile error.
 */
export function toBytes<T>(data: T): ArrayBuffer {
  if (isString<T>()) {
    return String.UTF8.encode(changetype<string>(data));
  } else if (isReference<T>()) {
    if (isNullable<T>()) {
      if (changetype<usize>(data) == 0) return new ArrayBuffer(0);
    }
    if (data instanceof ArrayBuffer) {
      return changetype<ArrayBuffer>(data);
    } else if (data instanceof Uint8Array) {
      const view = changetype<Uint8Array>(data);
      return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
    } else if (data instanceof Array<u8>) {
      const list = changetype<Array<u8>>(data);
      const out = new ArrayBuffer(list.length);
      for (let i = 0; i < list.length; i++) store<u8>(changetype<usize>(out) + <usize>i, unchecked(list[i]));
      return out;
    }
  }
  ERROR("expected a string, ArrayBuffer, Uint8Array or Array<u8>");
  return new ArrayBuffer(0);
}
