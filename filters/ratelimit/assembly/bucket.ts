// Token buckets kept in the host's shared data, so that every VM of the plugin (and every VM that
// shares its vm id) draws from the same buckets. Refill is lazy, from the host clock: no timer.
//
// Memory stays bounded whatever keys clients send: a rule has `maxKeys` slots
// (`ratelimit:<plugin>:<rule>:<slot>`), and a key lives in one of the few slots after its hash
// (linear probing). A slot whose bucket has refilled to full is free to take: a full bucket is
// the same as no bucket. Only when every probed slot holds another key's partly used bucket do
// keys share one — they are then limited together, never less.
//
// A slot's value is 20 bytes, little-endian: owner (u64, the key's hash), lastFillMs (u64),
// tokens (u32).

import { Status, sharedData } from "../../../sdk/assembly";

/** One rule's bucket shape. */
export class BucketSpec {
  constructor(
    readonly maxTokens: u32,
    readonly tokensPerFill: u32,
    readonly fillIntervalMs: u64,
    /** Slots in shared data; 1 for a rule without a key. */
    readonly maxKeys: u32,
    /** `ratelimit:<plugin>:<rule>:`; a slot's key is this plus its number. */
    readonly keyPrefix: string,
  ) {}

  // Slot keys recently used, direct-mapped by slot number: no string building on the hot path.
  private readonly cachedSlots: StaticArray<i32> = new StaticArray<i32>(KEY_CACHE_SIZE).fill(-1);
  private readonly cachedKeys: StaticArray<string> = new StaticArray<string>(KEY_CACHE_SIZE);

  /** The shared-data key of a slot. */
  slotKey(slot: u32): string {
    const index = <i32>(slot & (KEY_CACHE_SIZE - 1));
    if (unchecked(this.cachedSlots[index]) == <i32>slot) return unchecked(this.cachedKeys[index]);
    const key = this.keyPrefix + slot.toString();
    unchecked((this.cachedSlots[index] = <i32>slot));
    unchecked((this.cachedKeys[index] = key));
    return key;
  }
}

const KEY_CACHE_SIZE = 64;

const VALUE_SIZE = 20;
/** Slots looked at for a key: its home slot and the next ones. */
const PROBES: u32 = 4;

// The write buffer, reused: one VM runs one callback at a time.
const valueBuffer = new ArrayBuffer(VALUE_SIZE);

/** 64-bit FNV-1a over the first `end` UTF-16 units of `text`. */
export function hashKey(text: string, end: i32): u64 {
  let hash: u64 = 0xcbf29ce484222325;
  const base = changetype<usize>(text);
  for (let i = 0; i < end; i++) {
    hash = (hash ^ <u64>load<u16>(base + (<usize>i << 1))) * 0x100000001b3;
  }
  return hash;
}

/** Where a request's token comes from, and what is left once it is taken. */
export class Draw {
  /** The hash of the request's key (the bucket's owner, unless the bucket is shared). */
  keyHash: u64 = 0;
  /** The slot's shared-data key, and the cas to write it back with (0: the slot was empty). */
  slotKey: string = "";
  cas: u32 = 0;
  owner: u64 = 0;
  lastFillMs: u64 = 0;
  /** Tokens in the bucket now, before this request takes one. */
  tokens: u32 = 0;

  /** Seconds until the next fill, rounded up (what Retry-After and x-ratelimit-reset say). */
  resetSeconds(spec: BucketSpec, now: u64): u64 {
    const next = this.lastFillMs + spec.fillIntervalMs;
    const wait = next > now ? next - now : 0;
    const seconds = (wait + 999) / 1000;
    return seconds > 0 ? seconds : 1;
  }
}

// The state read from one slot, refilled to `now` (module-level scratch: no allocation per read).
let readOwner: u64 = 0;
let readLastFill: u64 = 0;
let readTokens: u32 = 0;

/** Decodes a slot's value into read*, refilled to `now`; false when it is not a bucket of ours. */
function decode(bytes: ArrayBuffer, spec: BucketSpec, now: u64): bool {
  if (bytes.byteLength != VALUE_SIZE) return false;
  const at = changetype<usize>(bytes);
  readOwner = load<u64>(at);
  readLastFill = load<u64>(at, 8);
  readTokens = load<u32>(at, 16);
  refill(spec, now);
  return true;
}

/** Adds the fills due since readLastFill; a bucket that reaches full restarts its clock at `now`. */
function refill(spec: BucketSpec, now: u64): void {
  let tokens = <u64>readTokens;
  if (now > readLastFill) {
    const fills = (now - readLastFill) / spec.fillIntervalMs;
    if (fills > 0) {
      // No overflow: both factors are at most ~2^30 (config limits) and fills at most now/1.
      tokens += fills < 0x1_0000_0000 ? fills * <u64>spec.tokensPerFill : <u64>spec.maxTokens;
      readLastFill += fills * spec.fillIntervalMs;
    }
  }
  // A full bucket restarts its clock at `now` (also when maxTokens shrank on a reload).
  if (tokens >= <u64>spec.maxTokens) {
    tokens = <u64>spec.maxTokens;
    readLastFill = now;
  }
  readTokens = <u32>tokens;
}

/**
 * Finds the bucket of `owner` (a key's hash) and fills `draw` with it, refilled to `now`: its own
 * slot, else a free one (a new, full bucket), else its home slot shared with the key there.
 */
export function findBucket(spec: BucketSpec, owner: u64, now: u64, draw: Draw): void {
  draw.keyHash = owner;
  const slots = spec.maxKeys;
  const home = <u32>((owner ^ (owner >> 32)) % <u64>slots);
  const probes = slots < PROBES ? slots : PROBES;
  let freeKey: string | null = null;
  let freeCas: u32 = 0;
  let homeCas: u32 = 0;
  let homeOwner: u64 = 0;
  let homeLastFill: u64 = 0;
  let homeTokens: u32 = 0;
  let homeValid = false;
  for (let p: u32 = 0; p < probes; p++) {
    const slot = home + p < slots ? home + p : home + p - slots;
    const key = spec.slotKey(slot);
    const value = sharedData.get(key);
    if (value === null) {
      // Slots are never emptied, so no key that starts at this home went past an empty slot.
      if (freeKey === null) {
        freeKey = key;
        freeCas = 0;
      }
      break;
    }
    if (!decode(value.bytes, spec, now)) {
      // Not a bucket (another writer's data under our name): take it over.
      if (freeKey === null) {
        freeKey = key;
        freeCas = value.cas;
      }
      continue;
    }
    if (readOwner == owner) {
      fill(draw, key, value.cas, readOwner, readLastFill, readTokens);
      return;
    }
    if (p == 0) {
      homeCas = value.cas;
      homeOwner = readOwner;
      homeLastFill = readLastFill;
      homeTokens = readTokens;
      homeValid = true;
    }
    if (freeKey === null && readTokens >= spec.maxTokens) {
      freeKey = key;
      freeCas = value.cas;
    }
  }
  if (freeKey !== null) {
    fill(draw, freeKey!, freeCas, owner, now, spec.maxTokens);
  } else if (homeValid) {
    // Every slot this key may use holds another key's partly used bucket: share the home one.
    fill(draw, spec.slotKey(home), homeCas, homeOwner, homeLastFill, homeTokens);
  } else {
    fill(draw, spec.slotKey(home), 0, owner, now, spec.maxTokens);
  }
}

function fill(draw: Draw, key: string, cas: u32, owner: u64, lastFillMs: u64, tokens: u32): void {
  draw.slotKey = key;
  draw.cas = cas;
  draw.owner = owner;
  draw.lastFillMs = lastFillMs;
  draw.tokens = tokens;
}

/** Writes the bucket back with one token taken; Ok, CasMismatch (someone wrote since the read) or a failure. */
export function takeToken(draw: Draw): Status {
  const at = changetype<usize>(valueBuffer);
  store<u64>(at, draw.owner);
  store<u64>(at, draw.lastFillMs, 8);
  store<u32>(at, draw.tokens - 1, 16);
  return sharedData.set<ArrayBuffer>(draw.slotKey, valueBuffer, draw.cas);
}
