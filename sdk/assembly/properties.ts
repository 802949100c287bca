// Host properties (`proxy_get_property` / `proxy_set_property`): request and connection attributes,
// plugin metadata, and Sluice's own extension points (`sluice.*`). A path is a list of segments,
// sent NUL-joined; values are raw strings, 8-byte little-endian integers or 1-byte booleans.

import { proxy_get_property, proxy_set_property } from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { clearReturned, encodeArea, encodeUtf8Units, releaseEncoded, RETURN_PTR, RETURN_SIZE, takeReturnedBytes, takeReturnedString, toBytes } from "./memory";
import { Status } from "./types";

/** Writes `path` NUL-joined in UTF-8 at `dest` (room: 3 bytes per UTF-16 unit, plus the NULs); returns the size. */
function encodePathAt(path: string[], dest: usize): usize {
  let at = dest;
  for (let i = 0; i < path.length; i++) {
    if (i > 0) store<u8>(at++, 0);
    const segment = path[i];
    at += encodeUtf8Units(changetype<usize>(segment), <usize>segment.length, at);
  }
  return at - dest;
}

function pathText(path: string[]): string {
  return path.join(".");
}

/** Asks the host for a property; on Ok its value is in RETURN_PTR/RETURN_SIZE. Failures are reported. */
function requestProperty(path: string[]): Status {
  // The path is encoded into the SDK's scratch area: no allocation.
  let units: usize = <usize>path.length;
  for (let i = 0; i < path.length; i++) units += <usize>path[i].length;
  const area = encodeArea(units * 3);
  const size = encodePathAt(path, area);
  clearReturned();
  const status = <Status>proxy_get_property(area, size, RETURN_PTR, RETURN_SIZE);
  releaseEncoded();
  if (status == Status.Ok || status == Status.NotFound) return status;
  if (status == Status.InvalidMemoryAccess) failHostCall("proxy_get_property", status, pathText(path));
  else warnHostCall("proxy_get_property", status, pathText(path));
  return status;
}

/** The raw bytes of a property, or null when the host has no such property. */
export function getProperty(path: string[]): ArrayBuffer | null {
  return requestProperty(path) == Status.Ok ? takeReturnedBytes() : null;
}

/** A string property (e.g. `["request", "path"]`, `["plugin_root_id"]`), or null when absent. */
export function getPropertyString(path: string[]): string | null {
  // Decoded straight from the host's copy, without an intermediate ArrayBuffer.
  return requestProperty(path) == Status.Ok ? takeReturnedString() : null;
}

/** An integer property (8 bytes, little-endian), or `fallback` when absent or not 8 bytes long. */
export function getPropertyU64(path: string[], fallback: u64 = 0): u64 {
  const bytes = getProperty(path);
  if (bytes === null || bytes.byteLength != 8) return fallback;
  return load<u64>(changetype<usize>(bytes));
}

/** A signed integer property (durations and timestamps are int64 nanoseconds). */
export function getPropertyI64(path: string[], fallback: i64 = 0): i64 {
  const bytes = getProperty(path);
  if (bytes === null || bytes.byteLength != 8) return fallback;
  return load<i64>(changetype<usize>(bytes));
}

/** A boolean property (1 byte), or `fallback` when absent. */
export function getPropertyBool(path: string[], fallback: bool = false): bool {
  const bytes = getProperty(path);
  if (bytes === null || bytes.byteLength < 1) return fallback;
  return load<u8>(changetype<usize>(bytes)) != 0;
}

/**
 * Sets a property. `value`: string (raw UTF-8), bool (1 byte), any integer (8 bytes LE),
 * ArrayBuffer / Uint8Array (raw). Returns Ok, or NotFound for a property the host does not let
 * filters set (logged as a warning).
 */
export function setProperty<T>(path: string[], value: T): Status {
  // Path and value are encoded into the SDK's scratch area, one after the other: a string or
  // number value allocates nothing.
  let units: usize = <usize>path.length;
  for (let i = 0; i < path.length; i++) units += <usize>path[i].length;
  let valueUnits: usize = 8;
  if (isString<T>()) valueUnits = <usize>changetype<string>(value).length * 3;
  const area = encodeArea(units * 3 + valueUnits);
  const pathSize = encodePathAt(path, area);
  const valuePtr = area + pathSize;
  let valueSize: usize;
  let bytes: ArrayBuffer | null = null;
  if (isBoolean<T>()) {
    store<u8>(valuePtr, value ? 1 : 0);
    valueSize = 1;
  } else if (isInteger<T>()) {
    store<i64>(valuePtr, <i64>value);
    valueSize = 8;
  } else if (isString<T>()) {
    const text = changetype<string>(value);
    valueSize = encodeUtf8Units(changetype<usize>(text), <usize>text.length, valuePtr);
  } else {
    bytes = toBytes<T>(value);
    valueSize = bytes.byteLength;
  }
  const status = <Status>proxy_set_property(area, pathSize, bytes !== null ? changetype<usize>(bytes) : valuePtr, valueSize);
  releaseEncoded();
  if (status == Status.InvalidMemoryAccess) failHostCall("proxy_set_property", status, pathText(path));
  else if (status != Status.Ok) warnHostCall("proxy_set_property", status, pathText(path));
  return status;
}

const PEER_IDENTITY: string[] = ["sluice", "peer_identity"];
const PEER_URI_SAN: string[] = ["connection", "uri_san_peer_certificate"];

/**
 * The peer's identity on an mTLS connection (its certificate's SPIFFE ID): Sluice's
 * `sluice.peer_identity`, or in hosts without it (Envoy) the certificate's first URI SAN. Null
 * when the connection has no verified client certificate.
 */
export function peerIdentity(): string | null {
  const identity = getPropertyString(PEER_IDENTITY);
  return identity !== null ? identity : getPropertyString(PEER_URI_SAN);
}
