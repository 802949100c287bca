// Choosing among weighted clusters: a smooth weighted round-robin (nginx's) when nothing makes the
// request sticky — exact shares over every `total weight` requests, interleaved rather than in
// bursts — and a hash of the sticky key otherwise, so one key always lands on one cluster.

import { WeightedCluster } from "./config";

/** Smooth weighted round-robin: each pick raises every cluster by its weight and lowers the winner by the total. */
export function pickRoundRobin(clusters: WeightedCluster[], total: i64): WeightedCluster {
  let best: WeightedCluster = unchecked(clusters[0]);
  let bestCurrent: i64 = i64.MIN_VALUE;
  for (let i = 0; i < clusters.length; i++) {
    const c = unchecked(clusters[i]);
    if (c.weight == 0) continue;
    c.current += c.weight;
    if (c.current > bestCurrent) {
      best = c;
      bestCurrent = c.current;
    }
  }
  best.current -= total;
  return best;
}

/**
 * The cluster for a sticky key: the key's hash, modulo the total weight, falls in one cluster's
 * share of [0, total). Changing one weight only moves the keys in the shares that moved.
 */
export function pickByKey(clusters: WeightedCluster[], total: i64, key: string): WeightedCluster {
  let point = <i64>(<u64>stickyHash(key) % <u64>total);
  for (let i = 0; i < clusters.length; i++) {
    const c = unchecked(clusters[i]);
    if (point < c.weight) return c;
    point -= c.weight;
  }
  return unchecked(clusters[clusters.length - 1]); // unreachable: point < total
}

const FNV_OFFSET: u32 = 0x811c9dc5;
const FNV_PRIME: u32 = 0x01000193;

// @ts-ignore: decorator
@inline
function mixByte(h: u32, byte: u32): u32 {
  return (h ^ byte) * FNV_PRIME;
}

/**
 * FNV-1a (32-bit) over the key's UTF-8 bytes, then MurmurHash3's finalizer so that the low bits
 * (what a modulo keeps) depend on every byte. Documented in the README: tests and other tools
 * can compute where a key lands.
 */
export function stickyHash(key: string): u32 {
  let h = FNV_OFFSET;
  const n = key.length;
  for (let i = 0; i < n; i++) {
    let c = <u32>key.charCodeAt(i);
    if (c < 0x80) {
      h = mixByte(h, c);
    } else if (c < 0x800) {
      h = mixByte(h, 0xc0 | (c >> 6));
      h = mixByte(h, 0x80 | (c & 0x3f));
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const low = <u32>key.charCodeAt(i + 1);
        if (low >= 0xdc00 && low <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
          i++;
          h = mixByte(h, 0xf0 | (c >> 18));
          h = mixByte(h, 0x80 | ((c >> 12) & 0x3f));
          h = mixByte(h, 0x80 | ((c >> 6) & 0x3f));
          h = mixByte(h, 0x80 | (c & 0x3f));
          continue;
        }
      }
      h = mixByte(h, 0xe0 | (c >> 12));
      h = mixByte(h, 0x80 | ((c >> 6) & 0x3f));
      h = mixByte(h, 0x80 | (c & 0x3f));
    }
  }
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}
