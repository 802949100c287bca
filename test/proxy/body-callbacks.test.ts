// The request-body callbacks a filter gets, as Envoy's codecs make them: over HTTP/2 the chunk of
// the DATA frame carrying END_STREAM comes with end_of_stream = true, once (no extra empty call);
// over HTTP/1.1 the data comes with false, then an empty call with true. Streamed chunks (gRPC)
// are not held back waiting for the next one.
import { createServer, type IncomingMessage } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

interface Setup {
  port: number;
  /** The body-log filter's lines so far: "request_body <size> <eos>", "response_body ...". */
  calls: string[];
  /** What the upstream has received of the current request's body so far. */
  received: () => string;
}

async function start(t: ExecutionContext, protocol: 'http1' | 'http2' = 'http1'): Promise<Setup> {
  let received = '';
  const answer = (req: IncomingMessage | http2.Http2ServerRequest, res: { end(text: string): unknown }) => {
    received = '';
    req.on('data', (c) => (received += c));
    req.on('end', () => res.end(`got ${received}`));
  };
  const upstream = protocol === 'http1' ? createServer(answer) : http2.createServer();
  // HTTP/2: the answer's data and END_STREAM in one DATA frame (node's compatibility API would
  // send the END_STREAM in an empty frame after it).
  upstream.on('stream', (stream: http2.ServerHttp2Stream) => answer(stream as unknown as IncomingMessage, { end: (text) => (stream.respond({ ':status': 200 }), stream.end(text)) }));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    (upstream as { closeAllConnections?: () => void }).closeAllConnections?.();
    upstream.close();
  });
  const calls: string[] = [];
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'web', host: '127.0.0.1', port: 0, protocol: 'http', filters: ['log'], routes: [{ name: 'up', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 10_000 }] }],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port], { protocol })],
    filters: [{ name: 'log', module: fixture('body-log'), rootId: 'body-log', vmId: '', configuration: '', failStrategy: 'FAIL_CLOSE', limits: DEFAULT_LIMITS, capabilities: DEFAULT_CAPABILITIES, quarantine: DEFAULT_QUARANTINE }],
  };
  const proxy = await NodeProxy.start(snapshot, { log: (e) => void (e.message.includes('_body ') && calls.push(e.message)), logLevel: 2 });
  t.teardown(() => proxy.stop(100));
  return { port: proxy.addresses().web.port, calls, received: () => received };
}

const requestCalls = (calls: string[]) => calls.filter((c) => c.startsWith('request_body'));

async function h2Post(t: ExecutionContext, port: number, send: (stream: http2.ClientHttp2Stream) => Promise<void> | void): Promise<string> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': '/x', 'content-type': 'text/plain' });
  let body = '';
  stream.on('data', (c) => (body += c));
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  await send(stream);
  await ended;
  return body;
}

test('HTTP/2: a body in one DATA frame with END_STREAM is one callback ("hello", end_of_stream true)', async (t) => {
  const { port, calls } = await start(t);
  t.is(await h2Post(t, port, (s) => void s.end('hello')), 'got hello');
  t.deepEqual(requestCalls(calls), ['request_body 5 true']);
});

test('HTTP/2: data, then END_STREAM in an empty DATA frame later: ("hello", false) then ("", true)', async (t) => {
  const { port, calls, received } = await start(t);
  const body = await h2Post(t, port, async (s) => {
    s.write('hello');
    // The chunk reaches the upstream before the stream ends: it was not held back.
    while (received() !== 'hello') await new Promise((r) => setTimeout(r, 10));
    s.end();
  });
  t.is(body, 'got hello');
  t.deepEqual(requestCalls(calls), ['request_body 5 false', 'request_body 0 true']);
});

test('HTTP/2: a streamed body: each message goes on at once with false, the one with END_STREAM with true', async (t) => {
  const { port, calls, received } = await start(t);
  const body = await h2Post(t, port, async (s) => {
    s.write('one');
    while (received() !== 'one') await new Promise((r) => setTimeout(r, 10));
    s.write('two');
    while (received() !== 'onetwo') await new Promise((r) => setTimeout(r, 10));
    s.end('three');
  });
  t.is(body, 'got onetwothree');
  t.deepEqual(requestCalls(calls), ['request_body 3 false', 'request_body 3 false', 'request_body 5 true']);
});

test('HTTP/1.1: the body with end_of_stream false, then an empty call with true (Envoy\'s HTTP/1 codec)', async (t) => {
  const { port, calls } = await start(t);
  const res = await request(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
  t.is(await res.body.text(), 'got hello');
  t.deepEqual(requestCalls(calls), ['request_body 5 false', 'request_body 0 true']);
});

test('response bodies: from an HTTP/2 upstream the last DATA frame\'s chunk has end_of_stream true; from HTTP/1.1, an empty call ends it', async (t) => {
  const h2 = await start(t, 'http2');
  t.is(await h2Post(t, h2.port, (s) => void s.end('hello')), 'got hello');
  t.deepEqual(h2.calls.filter((c) => c.startsWith('response_body')), ['response_body 9 true']);
  const h1 = await start(t, 'http1');
  t.is(await h2Post(t, h1.port, (s) => void s.end('hello')), 'got hello');
  t.deepEqual(h1.calls.filter((c) => c.startsWith('response_body')), ['response_body 9 false', 'response_body 0 true']);
});
