// A live header map of the current stream (request/response headers or trailers), read and
// changed one header at a time through the host: only the headers a filter touches cross the ABI.

import {
  proxy_add_header_map_value,
  proxy_get_header_map_pairs,
  proxy_get_header_map_size,
  proxy_get_header_map_value,
  proxy_remove_header_map_value,
  proxy_replace_header_map_value,
  proxy_set_header_map_pairs,
} from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { Headers, deserializeHeaders, serializeHeaders } from "./headers";
import { clearReturned, encodeArea, encodedSlot, freeReturned, NO_SLOT, utf8Of, utf8Size, releaseEncoded, RETURN_PTR, RETURN_SIZE, RETURN_U64, takeReturnedString } from "./memory";
import { MapType, mapTypeName, Status } from "./types";

/**
 * A host-backed header map. Valid in the callbacks where the host offers that map (request
 * headers in onRequestHeaders and while the request is paused there, all maps in onLog, ...).
 * Outside them the host answers BAD_ARGUMENT: reads then give null / empty and log a warning.
 */
export class HeaderMap {
  constructor(readonly mapType: MapType) {}

  /** The value of a header, or null when absent. A repeated header gives its first value (use `all()` for every value). */
  get(name: string): string | null {
    return getHeader(this.mapType, changetype<usize>(name));
  }

  has(name: string): bool {
    return this.get(name) !== null;
  }

  /** Sets a header to one value, replacing any it had. */
  set(name: string, value: string): void {
    writeHeader(this.mapType, changetype<usize>(name), changetype<usize>(value), true);
  }

  /** Adds a value to a header (a repeated header when it already has one). */
  add(name: string, value: string): void {
    writeHeader(this.mapType, changetype<usize>(name), changetype<usize>(value), false);
  }

  /** Removes a header (every value of it); removing an absent header is fine. */
  remove(name: string): void {
    removeHeader(this.mapType, changetype<usize>(name));
  }

  /** A snapshot of every header, in order, pseudo-headers included. */
  all(): Headers {
    clearReturned();
    const status = <Status>proxy_get_header_map_pairs(this.mapType, RETURN_PTR, RETURN_SIZE);
    if (status != Status.Ok) {
      this.report("proxy_get_header_map_pairs", status, "");
      return new Headers();
    }
    const ptr = <usize>load<u32>(RETURN_PTR);
    const size = <usize>load<u32>(RETURN_SIZE);
    const headers = deserializeHeaders(ptr, size);
    freeReturned(ptr);
    if (headers === null) {
      failHostCall("proxy_get_header_map_pairs", Status.SerializationFailure, "the host returned malformed " + mapTypeName(this.mapType));
      return new Headers();
    }
    return headers;
  }

  /**
   * Replaces the whole map. Sluice keeps pseudo-headers (`:path`, `:status`, ...) that `headers`
   * leaves out; Envoy drops them, so include them when the filter must also run there.
   */
  replaceAll(headers: Headers): void {
    const bytes = serializeHeaders(headers);
    const status = <Status>proxy_set_header_map_pairs(this.mapType, changetype<usize>(bytes), bytes.byteLength);
    if (status != Status.Ok) this.report("proxy_set_header_map_pairs", status, "");
  }

  /** Size in bytes of the map in the pairs format (what `all()` transfers). */
  serializedSize(): u32 {
    store<u32>(RETURN_U64, 0);
    const status = <Status>proxy_get_header_map_size(this.mapType, RETURN_U64);
    if (status != Status.Ok) {
      this.report("proxy_get_header_map_size", status, "");
      return 0;
    }
    return load<u32>(RETURN_U64);
  }

  private report(hostFunction: string, status: Status, name: string): void {
    reportFailure(hostFunction, status, this.mapType, name);
  }
}

// The single-header operations, on raw string addresses. AssemblyScript's incremental GC keeps a
// shadow stack: every managed value passed to a call is stored there first, and a function with
// such calls sets up a frame for them. The strings here are kept alive by the caller (whose call
// passed them), and only the failure paths turn them back into strings, so the common path passes
// no managed value and these functions need no frame.

/** The length in UTF-16 units of the string at `text` (its runtime header holds the byte size). */
// @ts-ignore: decorator
@inline
function unitsOf(text: usize): usize {
  return <usize>(load<u32>(text - 4) >> 1);
}

function getHeader(mapType: MapType, name: usize): string | null {
  const key = utf8Of(name, encodeArea(unitsOf(name) * 3), NO_SLOT);
  const keySize = utf8Size;
  clearReturned();
  const status = <Status>proxy_get_header_map_value(mapType, key, keySize, RETURN_PTR, RETURN_SIZE);
  releaseEncoded();
  if (status == Status.Ok) return takeHeaderValue(name);
  if (status != Status.NotFound) reportHeaderFailure(GET, status, mapType, name);
  return null;
}

// Recent header values, by the address of the name they were read under. Values repeat a lot
// (`:method`, `:authority`, `content-type`, a user id...), and a string is immutable, so when the
// host returns the bytes of the value last read under that name, the same string is returned again:
// no allocation, no garbage. Only short values are kept (at most VALUE_CACHE_SIZE ×
// MAX_CACHED_VALUE bytes' worth), and only ASCII ones are matched. A collision or a changed value
// just decodes anew.
const VALUE_CACHE_SIZE = 64;
const MAX_CACHED_VALUE: usize = 128;
const valueCache = new StaticArray<string | null>(VALUE_CACHE_SIZE);

/** The header value the last host call returned, decoded (or found again in the cache) and freed. */
function takeHeaderValue(name: usize): string {
  const ptr = <usize>load<u32>(RETURN_PTR);
  const size = <usize>load<u32>(RETURN_SIZE);
  if (size > MAX_CACHED_VALUE) return takeReturnedString();
  const slot = <i32>((name >> 3) ^ (name >> 9)) & (VALUE_CACHE_SIZE - 1);
  const cached = unchecked(valueCache[slot]);
  if (cached !== null && sameAscii(changetype<usize>(cached), ptr, size)) {
    freeReturned(ptr);
    return cached;
  }
  const value = takeReturnedString();
  unchecked(valueCache[slot] = value);
  return value;
}

/** Whether the string at `text` is exactly the `size` ASCII bytes at `ptr`. */
function sameAscii(text: usize, ptr: usize, size: usize): bool {
  if (unitsOf(text) != size) return false;
  let i: usize = 0;
  while (i + 4 <= size) {
    const b = <u64>load<u32>(ptr + i);
    if (b & 0x8080_8080) return false;
    const units = (b & 0xFF) | ((b & 0xFF00) << 8) | ((b & 0xFF_0000) << 16) | ((b & 0xFF00_0000) << 24);
    if (load<u64>(text + (i << 1)) != units) return false;
    i += 4;
  }
  while (i < size) {
    const c = <u32>load<u8>(ptr + i);
    if (c >= 0x80 || <u32>load<u16>(text + (i << 1)) != c) return false;
    i++;
  }
  return true;
}

function writeHeader(mapType: MapType, name: usize, value: usize, replace: bool): void {
  const area = encodeArea((unitsOf(name) + unitsOf(value)) * 3);
  const key = utf8Of(name, area, NO_SLOT);
  const keySize = utf8Size;
  const bytes = utf8Of(value, area + keySize, encodedSlot(name));
  const valueSize = utf8Size;
  const status = replace
    ? <Status>proxy_replace_header_map_value(mapType, key, keySize, bytes, valueSize)
    : <Status>proxy_add_header_map_value(mapType, key, keySize, bytes, valueSize);
  releaseEncoded();
  if (status != Status.Ok) {
    reportHeaderFailure(replace ? REPLACE : ADD, status, mapType, name);
  }
}

function removeHeader(mapType: MapType, name: usize): void {
  const key = utf8Of(name, encodeArea(unitsOf(name) * 3), NO_SLOT);
  const status = <Status>proxy_remove_header_map_value(mapType, key, utf8Size);
  releaseEncoded();
  if (status != Status.Ok && status != Status.NotFound) {
    reportHeaderFailure(REMOVE, status, mapType, name);
  }
}

const GET = 0;
const REPLACE = 1;
const ADD = 2;
const REMOVE = 3;

// Takes the name's address and an operation number, so that calling it passes no managed value.
function reportHeaderFailure(operation: i32, status: Status, mapType: MapType, name: usize): void {
  const hostFunction = operation == GET
    ? "proxy_get_header_map_value"
    : operation == REPLACE ? "proxy_replace_header_map_value"
    : operation == ADD ? "proxy_add_header_map_value" : "proxy_remove_header_map_value";
  reportFailure(hostFunction, status, mapType, changetype<string>(name));
}

function reportFailure(hostFunction: string, status: Status, mapType: MapType, name: string): void {
  let detail = mapTypeName(mapType);
  if (name.length > 0) detail += ", header '" + name + "'";
  // Bad pointers mean the SDK itself is broken: stop. Anything else is the host refusing: warn.
  if (status == Status.InvalidMemoryAccess) failHostCall(hostFunction, status, detail);
  else warnHostCall(hostFunction, status, status == Status.BadArgument ? detail + ": not available in this callback" : detail);
}
