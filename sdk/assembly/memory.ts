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

/**
 * The allocator the host calls (through `proxy_on_memory_allocate`) to copy data into the module.
 * Blocks are raw heap memory, not GC objects: the SDK copies them into managed values and frees them.
 */
export function allocateForHost(size: usize): usize {
  if (size >= MAX_ALLOCATION) return 0;
  return heap.alloc(size);
}

/** Frees a block the host allocated for a result (the pointer in RETURN_PTR). */
function freeReturned(ptr: usize): void {
  if (ptr != 0) heap.free(ptr);
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
  const out = size > 0 ? String.UTF8.decodeUnsafe(ptr, size) : "";
  freeReturned(ptr);
  return out;
}

/** Clears the result slots before a host call, so a call that fails writes no stale pointer we free. */
export function clearReturned(): void {
  store<u64>(SCRATCH, 0);
  store<u64>(SCRATCH + 8, 0);
  store<u64>(SCRATCH + 16, 0);
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
