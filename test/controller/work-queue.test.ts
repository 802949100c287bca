// The controller's work queue: de-duplication, one worker per key, per-key exponential backoff.
import test from 'ava';
import { WorkQueue } from '../../controller/index.ts';

test('a key added many times while waiting is processed once', async (t) => {
  const q = new WorkQueue();
  for (let i = 0; i < 5; i++) q.add('ns/a');
  q.add('ns/b');
  t.is(q.depth, 2);
  t.is(await q.get(), 'ns/a');
  t.is(await q.get(), 'ns/b');
  t.is(q.depth, 0);
});

test('a key re-added while in flight runs again after done, never twice at once', async (t) => {
  const q = new WorkQueue();
  q.add('ns/a');
  const key = await q.get();
  q.add('ns/a');
  q.add('ns/a');
  t.is(q.depth, 0, 'not handed to a second worker while the first holds it');
  q.done(key!);
  t.is(q.depth, 1);
  t.is(await q.get(), 'ns/a');
});

test('failures back off exponentially per key up to the cap; forget resets', (t) => {
  const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
  t.deepEqual([1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('ns/a')), [100, 200, 400, 800, 1000, 1000]);
  t.is(q.addRateLimited('ns/b'), 100);
  t.is(q.retries('ns/a'), 6);
  q.forget('ns/a');
  t.is(q.addRateLimited('ns/a'), 100);
  q.shutDown();
});

test('a rate-limited key comes back after its delay', async (t) => {
  const q = new WorkQueue({ baseDelayMs: 20 });
  q.addRateLimited('ns/a');
  t.is(q.depth, 0);
  t.is(await q.get(), 'ns/a');
  q.shutDown();
  t.is(await q.get(), undefined);
});
