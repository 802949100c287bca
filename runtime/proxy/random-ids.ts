// Random ids for the request path (trace and span ids) drawn from one pool of CSPRNG bytes filled
// 4 KiB at a time, as node's randomUUID() caches its entropy: one randomFillSync per ~170 requests
// instead of one randomBytes() call (and Buffer) per request.

import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` fresh random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}
