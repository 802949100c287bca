// The host's key-value store shared by every VM on the node (`proxy_get_shared_data` /
// `proxy_set_shared_data`), with compare-and-swap: each value carries a cas that changes on every
// write; writing with the cas you read fails with CasMismatch if someone wrote in between.

import { proxy_get_shared_data, proxy_set_shared_data } from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { clearReturned, encodeArea, encodeUtf8Units, releaseEncoded, RETURN_EXTRA, RETURN_PTR, RETURN_SIZE, takeReturnedBytes, toBytes } from "./memory";
import { Status } from "./types";

/** A value read from shared data, with the cas to write it back conditionally. */
export class SharedValue {
  constructor(readonly bytes: ArrayBuffer, readonly cas: u32) {}

  /** The value decoded as UTF-8. */
  text(): string {
    return String.UTF8.decode(this.bytes);
  }
}

/** Computes a new value from the current one (null when the key is absent); see `sharedData.update`. */
export type SharedDataUpdate = (current: SharedValue | null) => ArrayBuffer;

export namespace sharedData {
  /** The value of `key` and its cas, or null when absent. */
  export function get(key: string): SharedValue | null {
    // The key is encoded into the SDK's scratch area: no allocation.
    const area = encodeArea(<usize>key.length * 3);
    const size = encodeUtf8Units(changetype<usize>(key), <usize>key.length, area);
    clearReturned();
    const status = <Status>proxy_get_shared_data(area, size, RETURN_PTR, RETURN_SIZE, RETURN_EXTRA);
    releaseEncoded();
    if (status == Status.Ok) {
      const cas = load<u32>(RETURN_EXTRA);
      return new SharedValue(takeReturnedBytes(), cas);
    }
    if (status == Status.NotFound) return null;
    if (status == Status.InvalidMemoryAccess) failHostCall("proxy_get_shared_data", status, "key '" + key + "'");
    else warnHostCall("proxy_get_shared_data", status, "key '" + key + "'");
    return null;
  }

  /**
   * Writes `key`. With `cas` 0 the write is unconditional; otherwise it succeeds only if the value
   * still has that cas. Returns Ok, CasMismatch (expected under contention, not logged), or another
   * status (logged). `value`: string, ArrayBuffer, Uint8Array or Array<u8>.
   */
  export function set<T>(key: string, value: T, cas: u32 = 0): Status {
    const bytes = toBytes<T>(value);
    const area = encodeArea(<usize>key.length * 3);
    const size = encodeUtf8Units(changetype<usize>(key), <usize>key.length, area);
    const status = <Status>proxy_set_shared_data(area, size, changetype<usize>(bytes), bytes.byteLength, cas);
    releaseEncoded();
    if (status == Status.InvalidMemoryAccess) failHostCall("proxy_set_shared_data", status, "key '" + key + "'");
    else if (status != Status.Ok && status != Status.CasMismatch) warnHostCall("proxy_set_shared_data", status, "key '" + key + "'");
    return status;
  }

  /**
   * Read-modify-write with retries on CasMismatch: `compute` gets the current value (or null) and
   * returns the new bytes. Returns Ok, or the last failing status after `attempts` tries.
   */
  export function update(key: string, compute: SharedDataUpdate, attempts: i32 = 8): Status {
    let status = Status.CasMismatch;
    for (let i = 0; i < attempts && status == Status.CasMismatch; i++) {
      const current = get(key);
      const next = compute(current);
      // cas 0 would write unconditionally, so an absent key is created with cas 0 only once.
      status = set<ArrayBuffer>(key, next, current !== null ? current.cas : 0);
    }
    return status;
  }
}
