// The request path's stop signal: listeners run once with the reason, and the upstream pools
// (undici, node:http2) abort a request on it as on an AbortSignal.
import { createServer } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { Http2Pool } from '../../runtime/proxy/h2-pool.ts';
import { randomHex } from '../../runtime/proxy/random-ids.ts';
import { StopSignal } from '../../runtime/proxy/stop-signal.ts';
import { Http1Pool } from '../../runtime/proxy/upstream-pool.ts';

test('a stop runs each listener once, in order, and never a removed one', (t) => {
  const stop = new StopSignal();
  const calls: string[] = [];
  const b = () => calls.push('b');
  stop.addEventListener('abort', () => calls.push(`a:${(stop.reason as Error).message}`));
  stop.addEventListener('abort', b);
  stop.addEventListener('abort', () => calls.push('c'));
  stop.removeEventListener('abort', b);
  stop.abort(new Error('why'));
  stop.abort(new Error('again'));
  t.deepEqual(calls, ['a:why', 'c']);
  t.true(stop.aborted);
  t.throws(() => stop.throwIfAborted(), { message: 'why' });
});

test('undici and node:http2 requests are aborted by it with its reason', async (t) => {
  const h1 = createServer(() => {});
  await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
  const h2 = http2.createServer(() => {});
  await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    h1.closeAllConnections();
    h1.close();
    h2.close();
  });
  const options = { maxConnections: 1, connectTimeoutMs: 1000, idleTimeoutMs: 1000, requestTimeoutMs: 0 };
  const pools = [new Http1Pool(`127.0.0.1:${(h1.address() as AddressInfo).port}`, options), new Http2Pool(`127.0.0.1:${(h2.address() as AddressInfo).port}`, options)];
  t.teardown(() => Promise.all(pools.map((p) => p.destroy())));
  // HTTP/1.1 rejects with the reason; HTTP/2 cancels the stream (RST_STREAM CANCEL, code 8).
  const expected = [/^the client went away$/, /^the HTTP\/2 stream to 127\.0\.0\.1:\d+ was reset \(code 8\) before the response headers$/];
  for (const [i, pool] of pools.entries()) {
    const stop = new StopSignal();
    const answer = pool.request({ method: 'GET', path: '/', headers: ['host', 'x'], signal: stop });
    setTimeout(() => stop.abort(new Error('the client went away')), 50);
    await t.throwsAsync(answer, { message: expected[i] });
  }
});

test('random ids are hex of the asked length and do not repeat across pool refills', (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) seen.add(randomHex(24));
  t.is(seen.size, 1000);
  t.regex(randomHex(8), /^[0-9a-f]{16}$/);
});
