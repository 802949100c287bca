// One filter's context on one stream: its id in the VM, and the actions the filter took through
// host functions (continue, local reply, close) until the stream acts on them.

import type { StreamState } from './stream.ts';
import type { Vm } from './vm.ts';

export interface LocalReplyRequest {
  status: number;
  details: string;
  body: Uint8Array;
  headers: Array<[string, string]>;
  grpcStatus?: number;
}

export interface ContextOwner {
  /** A filter acted on this context outside the callback the stream is running (or its VM failed). */
  wake(ctx: FilterContext): void;
}

export class FilterContext {
  localReply?: LocalReplyRequest;
  /** Bit 1: continue the request; bit 2: continue the response. */
  continueRequested = 0;
  closeRequested = false;
  /** Its slot in the VM's ContextTable (-1: not in it). */
  tableSlot = -1;

  constructor(
    readonly id: number,
    readonly vm: Vm,
    readonly stream: StreamState,
    readonly owner: ContextOwner,
    /** This filter's position in the chain. */
    readonly index: number,
  ) {}

  wake(): void {
    this.owner.wake(this);
  }
}
