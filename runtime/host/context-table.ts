// A VM's live stream contexts by id: slots in one array, reused through a free list.
//
// Contexts come and go with every request, so the table sees an insert and a delete per stream. A
// Map did the job, but a long-lived Map that churns leaves its superseded hash tables in the old
// generation until the next full GC, still pointing at contexts (and everything a context
// reaches: the request, its headers) that have since ended; each scavenge then had to keep those
// alive and promote them (--trace-gc-nvp with three filters: 11.7% of new-space bytes survived
// each scavenge with the Map, 4.0% without). An array whose slots are cleared holds nothing that
// has ended. Lookups by id are rare (proxy_set_effective_context), so they scan.

/** What the table needs of a context: its id, and a field for its slot (the table's alone). */
export interface TableEntry {
  readonly id: number;
  tableSlot: number;
}

export class ContextTable<C extends TableEntry> {
  private readonly slots: Array<C | undefined> = [];
  private readonly free: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(ctx: C): void {
    if (this.slots[ctx.tableSlot] === ctx) return;
    const slot = this.free.pop() ?? this.slots.length;
    this.slots[slot] = ctx;
    ctx.tableSlot = slot;
    this.count++;
  }

  delete(ctx: C): void {
    const slot = ctx.tableSlot;
    if (slot < 0 || this.slots[slot] !== ctx) return;
    this.slots[slot] = undefined;
    ctx.tableSlot = -1;
    this.free.push(slot);
    this.count--;
  }

  get(id: number): C | undefined {
    for (const ctx of this.slots) if (ctx !== undefined && ctx.id === id) return ctx;
    return undefined;
  }

  *values(): IterableIterator<C> {
    for (const ctx of this.slots) if (ctx !== undefined) yield ctx;
  }
}
