// Key-value data shared by every VM with the same vm id, with compare-and-swap: each value carries
// a CAS token that changes on every write; a write with a stale token fails with CAS_MISMATCH.

import { Status } from '../abi/constants.ts';

interface Entry {
  value: Uint8Array;
  cas: number;
}

export class SharedData {
  private readonly scopes = new Map<string, Map<string, Entry>>();
  private nextCas = 1;
  /** Told of every write a filter makes (worker processes pass it on to the others). */
  onWrite?: (vmId: string, key: string, value: Uint8Array) => void;

  get(vmId: string, key: string): { status: Status; value?: Uint8Array; cas: number } {
    const entry = this.scopes.get(vmId)?.get(key);
    if (!entry) return { status: Status.NotFound, cas: 0 };
    return { status: Status.Ok, value: entry.value, cas: entry.cas };
  }

  /**
   * `cas` 0 writes unconditionally; otherwise it must equal the value's current token. A key that
   * does not exist yet has no token to compare: any `cas` creates it, as in cpp-host shared_data.cc
   * (SDKs retrying a CAS loop after the key was never set must not spin on CAS_MISMATCH).
   */
  set(vmId: string, key: string, value: Uint8Array, cas: number): Status {
    let scope = this.scopes.get(vmId);
    if (!scope) this.scopes.set(vmId, (scope = new Map()));
    const entry = scope.get(key);
    if (cas !== 0 && entry && entry.cas !== cas) return Status.CasMismatch;
    // Its own memory: `value` may be a view into a pooled buffer, which would keep the pool alive.
    const copy = new Uint8Array(value);
    scope.set(key, { value: copy, cas: this.nextCas++ });
    this.onWrite?.(vmId, key, copy);
    return Status.Ok;
  }

  /** A write another process made: applied as is (its CAS was checked there), not passed on. */
  replicate(vmId: string, key: string, value: Uint8Array): void {
    let scope = this.scopes.get(vmId);
    if (!scope) this.scopes.set(vmId, (scope = new Map()));
    scope.set(key, { value, cas: this.nextCas++ });
  }

  keys(vmId: string): string[] {
    return [...(this.scopes.get(vmId)?.keys() ?? [])];
  }
}
