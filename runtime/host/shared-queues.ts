// Shared queues: a root context registers a named queue in its vm id's scope; any VM resolves it
// by (vm id, name) and enqueues; the owner is woken with proxy_on_queue_ready.

import { Status } from '../abi/constants.ts';

export interface QueueOwner {
  /** Called (asynchronously, once per enqueue) to run proxy_on_queue_ready in the owner's VM. */
  queueReady(queueId: number): void;
  /** False once the owner's VM is gone; its queues are then dropped on the next enqueue. */
  readonly alive: boolean;
}

interface Queue {
  readonly id: number;
  owner: QueueOwner;
  readonly items: Uint8Array[];
}

export class SharedQueues {
  private readonly byKey = new Map<string, Queue>();
  private readonly byId = new Map<number, Queue>();
  private nextId = 1;

  constructor(private readonly schedule: (fn: () => void) => void = setImmediate) {}

  /** Registers (or re-registers, taking ownership of) the queue `name` in scope `vmId`. */
  register(vmId: string, name: string, owner: QueueOwner): number {
    const key = `${vmId}\u0000${name}`;
    const existing = this.byKey.get(key);
    if (existing) {
      existing.owner = owner;
      return existing.id;
    }
    const queue: Queue = { id: this.nextId++, owner, items: [] };
    this.byKey.set(key, queue);
    this.byId.set(queue.id, queue);
    return queue.id;
  }

  resolve(vmId: string, name: string): { status: Status; id: number } {
    const queue = this.byKey.get(`${vmId}\u0000${name}`);
    return queue ? { status: Status.Ok, id: queue.id } : { status: Status.NotFound, id: 0 };
  }

  enqueue(id: number, value: Uint8Array): Status {
    const queue = this.byId.get(id);
    if (!queue) return Status.NotFound;
    queue.items.push(value.slice());
    this.schedule(() => {
      if (queue.owner.alive) queue.owner.queueReady(id);
    });
    return Status.Ok;
  }

  dequeue(id: number): { status: Status; value?: Uint8Array } {
    const queue = this.byId.get(id);
    if (!queue) return { status: Status.NotFound };
    const value = queue.items.shift();
    return value ? { status: Status.Ok, value } : { status: Status.Empty };
  }
}
