// A plain, ordered list of HTTP header pairs (for local responses, HTTP calls and snapshots of a
// header map) and its proxy-wasm wire format: u32 count, count × (u32 key size, u32 value size),
// then each key and value followed by a NUL, all little-endian.

import { decodeUtf8 } from "./memory";

/** One header: name (lower-case) and value. */
export class Header {
  constructor(public name: string, public value: string) {}
}

/** An ordered list of headers; names are stored lower-case, lookups ignore case. */
export class Headers {
  readonly list: Header[] = [];

  get length(): i32 {
    return this.list.length;
  }

  /** The i-th header. */
  at(index: i32): Header {
    return this.list[index];
  }

  /** Appends a header (keeps any existing ones of that name). Chainable. */
  add(name: string, value: string): Headers {
    this.list.push(new Header(name.toLowerCase(), value));
    return this;
  }

  /** Sets a header to one value: replaces the first of that name, drops the others, or appends. */
  set(name: string, value: string): Headers {
    const key = name.toLowerCase();
    let found = false;
    for (let i = 0; i < this.list.length; i++) {
      if (this.list[i].name != key) continue;
      if (!found) {
        this.list[i].value = value;
        found = true;
      } else {
        this.list.splice(i, 1);
        i--;
      }
    }
    if (!found) this.list.push(new Header(key, value));
    return this;
  }

  /** The first value of a header, or null. */
  get(name: string): string | null {
    const key = name.toLowerCase();
    for (let i = 0; i < this.list.length; i++) {
      if (this.list[i].name == key) return this.list[i].value;
    }
    return null;
  }

  /** Every value of a header, in order. */
  getAll(name: string): string[] {
    const key = name.toLowerCase();
    const out = new Array<string>();
    for (let i = 0; i < this.list.length; i++) {
      if (this.list[i].name == key) out.push(this.list[i].value);
    }
    return out;
  }

  has(name: string): bool {
    return this.get(name) !== null;
  }

  /** Removes every header of that name. Chainable. */
  remove(name: string): Headers {
    const key = name.toLowerCase();
    for (let i = this.list.length - 1; i >= 0; i--) {
      if (this.list[i].name == key) this.list.splice(i, 1);
    }
    return this;
  }
}

/** Serializes headers to the proxy-wasm pairs format. An empty list is a 4-byte zero count. */
export function serializeHeaders(headers: Headers | null): ArrayBuffer {
  const list = headers !== null ? headers.list : new Array<Header>(0);
  const count = list.length;
  let size = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    size += String.UTF8.byteLength(list[i].name) + String.UTF8.byteLength(list[i].value) + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, <u32>count);
  let data = base + 4 + <usize>count * 8;
  for (let i = 0; i < count; i++) {
    const header = list[i];
    const sizes = base + 4 + <usize>i * 8;
    const keySize = String.UTF8.encodeUnsafe(changetype<usize>(header.name), header.name.length, data);
    store<u32>(sizes, <u32>keySize);
    data += keySize;
    store<u8>(data++, 0);
    const valueSize = String.UTF8.encodeUnsafe(changetype<usize>(header.value), header.value.length, data);
    store<u32>(sizes + 4, <u32>valueSize);
    data += valueSize;
    store<u8>(data++, 0);
  }
  return out;
}

/**
 * Parses the pairs format at [ptr, ptr+size). Returns null when it is malformed (a count or a size
 * that runs past the end); an empty region or a lone NUL byte is an empty list, as the spec allows.
 */
export function deserializeHeaders(ptr: usize, size: usize): Headers | null {
  const headers = new Headers();
  if (size <= 1) return headers;
  if (size < 4) return null;
  const end = ptr + size;
  const count = <usize>load<u32>(ptr);
  if (count > size / 8 || ptr + 4 + count * 8 > end) return null;
  let data = ptr + 4 + count * 8;
  for (let i: usize = 0; i < count; i++) {
    const keySize = <usize>load<u32>(ptr + 4 + i * 8);
    const valueSize = <usize>load<u32>(ptr + 8 + i * 8);
    // Each string is followed by a NUL; compared by subtraction so huge sizes cannot wrap around.
    if (keySize >= end - data) return null;
    const name = decodeUtf8(data, keySize);
    data += keySize + 1;
    if (valueSize >= end - data) return null;
    const value = decodeUtf8(data, valueSize);
    data += valueSize + 1;
    // Names come from the host already lower-case; push directly to keep duplicates and order.
    headers.list.push(new Header(name, value));
  }
  return headers;
}
