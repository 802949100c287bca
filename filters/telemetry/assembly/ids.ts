// Request ids (random UUID v4) and W3C traceparent values: generating them from the host's
// cryptographic random source (WASI random_get), and checking an incoming traceparent.

// WASI preview 1's random source: Sluice fills it from node:crypto, Envoy from its own CSPRNG.
// The SDK does not wrap it, so the filter imports it itself.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function wasiRandomGet(buf: usize, bufLen: usize): i32;

/** Random bytes are drawn from the host in blocks, so that most ids cost no host call. */
const POOL_BYTES: i32 = 1024;
const pool: usize = memory.data(POOL_BYTES, 16);
let poolUsed: i32 = POOL_BYTES;

/** The address of `n` fresh random bytes (each handed out once), or 0 when the host has none to give. */
function draw(n: i32): usize {
  if (poolUsed + n > POOL_BYTES) {
    if (wasiRandomGet(pool, <usize>POOL_BYTES) != 0) return 0;
    poolUsed = 0;
  }
  const at = pool + <usize>poolUsed;
  poolUsed += n;
  return at;
}

// @ts-ignore: decorator
@inline
function hexDigit(d: u32): u16 {
  return <u16>(d < 10 ? 0x30 + d : 0x57 + d);
}

/** Writes `count` bytes from `from` as lower-case hex at `to` (UTF-16); returns the next `to`. */
function writeHex(from: usize, count: i32, to: usize): usize {
  for (let i = 0; i < count; i++) {
    const b = <u32>load<u8>(from + <usize>i);
    store<u16>(to, hexDigit(b >> 4));
    store<u16>(to, hexDigit(b & 15), 2);
    to += 4;
  }
  return to;
}

/** A new string of `units` UTF-16 units, to be filled in by the caller before anything else allocates. */
// @ts-ignore: decorator
@inline
function newString(units: i32): usize {
  return __new(<usize>units << 1, idof<string>());
}

/** A random (version 4, RFC 9562) UUID such as `3b5d2c9e-8f1a-4c7b-9d2e-6a0f1b2c3d4e`, or null when the host gave no random bytes. */
export function uuidV4(): string | null {
  const r = draw(16);
  if (r == 0) return null;
  store<u8>(r + 6, (load<u8>(r + 6) & 0x0f) | 0x40); // version 4
  store<u8>(r + 8, (load<u8>(r + 8) & 0x3f) | 0x80); // variant 10xx
  const s = newString(36);
  let at = writeHex(r, 4, s);
  store<u16>(at, 0x2d);
  at = writeHex(r + 4, 2, at + 2);
  store<u16>(at, 0x2d);
  at = writeHex(r + 6, 2, at + 2);
  store<u16>(at, 0x2d);
  at = writeHex(r + 8, 2, at + 2);
  store<u16>(at, 0x2d);
  writeHex(r + 10, 6, at + 2);
  return changetype<string>(s);
}

/** W3C: an all-zero trace id or parent id is invalid; make sure a random one is not. */
function notAllZero(at: usize, count: i32): void {
  for (let i = 0; i < count; i++) if (load<u8>(at + <usize>i) != 0) return;
  store<u8>(at + <usize>(count - 1), 1);
}

/** A new W3C traceparent `00-<32 hex trace id>-<16 hex span id>-01` (sampled), or null when the host gave no random bytes. */
export function newTraceparent(): string | null {
  const r = draw(24);
  if (r == 0) return null;
  notAllZero(r, 16);
  notAllZero(r + 16, 8);
  const s = newString(55);
  store<u16>(s, 0x30);
  store<u16>(s, 0x30, 2);
  store<u16>(s, 0x2d, 4);
  let at = writeHex(r, 16, s + 6);
  store<u16>(at, 0x2d);
  at = writeHex(r + 16, 8, at + 2);
  store<u16>(at, 0x2d);
  store<u16>(at, 0x30, 2);
  store<u16>(at, 0x31, 4);
  return changetype<string>(s);
}

// @ts-ignore: decorator
@inline
function isLowerHex(c: i32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
}

/** True when [from, to) of `text` is lower-case hex and not all zeros. */
function hexNotZero(text: string, from: i32, to: i32): bool {
  let zero = true;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (!isLowerHex(c)) return false;
    if (c != 0x30) zero = false;
  }
  return !zero;
}

/**
 * Whether `value` is a traceparent to keep (W3C Trace Context): `vv-<trace id>-<parent id>-ff`,
 * lower-case hex, version not `ff`, ids not all zeros; version 00 is exactly 55 characters, a
 * later version may carry more after another `-`.
 */
export function isValidTraceparent(value: string): bool {
  const n = value.length;
  if (n < 55) return false;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (!isLowerHex(v0) || !isLowerHex(v1) || (v0 == 0x66 && v1 == 0x66)) return false;
  const version00 = v0 == 0x30 && v1 == 0x30;
  if (version00 ? n != 55 : n > 55 && value.charCodeAt(55) != 0x2d) return false;
  if (value.charCodeAt(2) != 0x2d || value.charCodeAt(35) != 0x2d || value.charCodeAt(52) != 0x2d) return false;
  return hexNotZero(value, 3, 35) && hexNotZero(value, 36, 52) && isLowerHex(value.charCodeAt(53)) && isLowerHex(value.charCodeAt(54));
}

/** The trace id (32 hex digits) of a valid traceparent. */
export function traceIdOf(traceparent: string): string {
  return traceparent.substring(3, 35);
}
