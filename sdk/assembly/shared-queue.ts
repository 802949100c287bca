// Shared queues between VMs (`proxy_register_shared_queue` and friends): one VM registers a queue
// by name and gets `onQueueReady(queueId)` on its root context when items arrive; others resolve
// it by the owner's VM id and name and enqueue.

import {
  proxy_dequeue_shared_queue,
  proxy_enqueue_shared_queue,
  proxy_register_shared_queue,
  proxy_resolve_shared_queue,
} from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { clearReturned, RETURN_PTR, RETURN_SIZE, takeReturnedBytes, toBytes } from "./memory";
import { Status } from "./types";

export class SharedQueue {
  constructor(readonly id: u32, readonly name: string) {}

  /** Registers (or reopens) a queue owned by this VM; null (logged) when the host refuses. */
  static register(name: string): SharedQueue | null {
    const bytes = String.UTF8.encode(name);
    store<u32>(RETURN_SIZE, 0);
    const status = <Status>proxy_register_shared_queue(changetype<usize>(bytes), bytes.byteLength, RETURN_SIZE);
    if (status == Status.Ok) return new SharedQueue(load<u32>(RETURN_SIZE), name);
    warnHostCall("proxy_register_shared_queue", status, "queue '" + name + "'");
    return null;
  }

  /** Finds a queue registered by the VM `vmId`; null when there is none (not logged). */
  static resolve(vmId: string, name: string): SharedQueue | null {
    const vm = String.UTF8.encode(vmId);
    const bytes = String.UTF8.encode(name);
    store<u32>(RETURN_SIZE, 0);
    const status = <Status>proxy_resolve_shared_queue(changetype<usize>(vm), vm.byteLength, changetype<usize>(bytes), bytes.byteLength, RETURN_SIZE);
    if (status == Status.Ok) return new SharedQueue(load<u32>(RETURN_SIZE), name);
    if (status != Status.NotFound) warnHostCall("proxy_resolve_shared_queue", status, "queue '" + name + "' of VM '" + vmId + "'");
    return null;
  }

  /** Adds an item (string, ArrayBuffer, Uint8Array or Array<u8>). Returns Ok or the failing status (logged). */
  enqueue<T>(item: T): Status {
    const bytes = toBytes<T>(item);
    const status = <Status>proxy_enqueue_shared_queue(this.id, changetype<usize>(bytes), bytes.byteLength);
    if (status == Status.InvalidMemoryAccess) failHostCall("proxy_enqueue_shared_queue", status, "queue '" + this.name + "'");
    else if (status != Status.Ok) warnHostCall("proxy_enqueue_shared_queue", status, "queue '" + this.name + "'");
    return status;
  }

  /** Takes the oldest item, or null when the queue is empty. */
  dequeue(): ArrayBuffer | null {
    clearReturned();
    const status = <Status>proxy_dequeue_shared_queue(this.id, RETURN_PTR, RETURN_SIZE);
    if (status == Status.Ok) return takeReturnedBytes();
    if (status == Status.Empty) return null;
    if (status == Status.InvalidMemoryAccess) failHostCall("proxy_dequeue_shared_queue", status, "queue '" + this.name + "'");
    else warnHostCall("proxy_dequeue_shared_queue", status, "queue '" + this.name + "'");
    return null;
  }

  /** Takes the oldest item as UTF-8 text, or null when the queue is empty. */
  dequeueString(): string | null {
    const bytes = this.dequeue();
    return bytes !== null ? String.UTF8.decode(bytes) : null;
  }
}
