import test from 'ava';
import { ContextTable } from '../../runtime/host/context-table.ts';

const ctx = (id: number) => ({ id, tableSlot: -1 });

test('a context table finds live contexts by id, forgets deleted ones and reuses their slots', (t) => {
  const table = new ContextTable<ReturnType<typeof ctx>>();
  const [a, b, c] = [ctx(7), ctx(8), ctx(9)];
  table.add(a);
  table.add(b);
  table.add(b); // twice: still one entry
  t.is(table.size, 2);
  t.is(table.get(8), b);
  table.delete(a);
  table.delete(a); // twice: nothing more happens
  t.is(table.size, 1);
  t.is(table.get(7), undefined);
  t.is(a.tableSlot, -1);
  table.add(c);
  t.is(c.tableSlot, 0, "c takes a's freed slot");
  t.deepEqual([...table.values()].map((x) => x.id), [9, 8]);
  table.delete(ctx(8)); // another object with b's id is not b
  t.is(table.get(8), b);
});
