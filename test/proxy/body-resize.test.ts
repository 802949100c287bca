// Bodies a filter changes the size of, sent with Content-Length: the other side gets the filtered
// body whole and framed right, with the exact Content-Length when the whole body passed the filters
// before it went on, chunked (no Content-Length) when it streamed. Requests and responses alike,
// HTTP/1.1 and HTTP/2 clients. The filter (stream/brackets.wat) wraps a buffered body in "[" "]",
// or, with request header x-no-buffer, streams and appends "!" to every chunk.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import http2 from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

interface Seen {
  headers: IncomingHttpHeaders;
  body: string;
}

async function start(t: ExecutionContext, timeoutMs = 10_000) {
  const seen: Seen[] = [];
  // Answers "world" with content-length 5; on /slow in two writes 100 ms apart, "hello" "world" (10).
  const upstream = createServer(async (req, res) => {
    let body = '';
    try {
      for await (const c of req) body += c;
    } catch {
      return; // the proxy broke the request off (what the test then reports)
    }
    seen.push({ headers: req.headers, body });
    if (req.url === '/slow') {
      res.writeHead(200, { 'content-length': '10' });
      res.write('hello');
      await new Promise((r) => setTimeout(r, 100));
      res.end('world');
      return;
    }
    res.writeHead(200, { 'content-length': '5' });
    res.end('world');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'web', host: '127.0.0.1', port: 0, protocol: 'http', filters: ['brackets'], routes: [{ name: 'up', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs }] }],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port])],
    filters: [{ name: 'brackets', module: fixture('stream/brackets'), rootId: '', vmId: '', configuration: '', failStrategy: 'FAIL_CLOSE', limits: DEFAULT_LIMITS, capabilities: DEFAULT_CAPABILITIES, quarantine: DEFAULT_QUARANTINE }],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  return { port: proxy.addresses().web.port, seen };
}

test('HTTP/1.1: a buffered body the filter resizes goes on with its new Content-Length, both ways', async (t) => {
  const { port, seen } = await start(t);
  const res = await request(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'hello', headers: { 'content-length': '5' } });
  t.is(res.statusCode, 200);
  t.is(res.headers['content-length'], '7');
  t.is(await res.body.text(), '[world]');
  t.is(seen.length, 1);
  t.is(seen[0]!.body, '[hello]');
  t.is(seen[0]!.headers['content-length'], '7');
  t.is(seen[0]!.headers['transfer-encoding'], undefined);
});

test('HTTP/1.1: a body the filter resizes chunk by chunk, arriving at once, gets the exact Content-Length', async (t) => {
  const { port, seen } = await start(t);
  const res = await request(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'hello', headers: { 'content-length': '5', 'x-no-buffer': '1' } });
  t.is(res.statusCode, 200);
  // ("world", false) -> "world!", then ("", true) -> "!".
  t.is(res.headers['content-length'], '7');
  t.is(await res.body.text(), 'world!!');
  t.is(seen[0]!.body, 'hello!!');
  t.is(seen[0]!.headers['content-length'], '7');
});

test('HTTP/1.1: a body the filter resizes while it streams goes on chunked, without Content-Length, both ways', async (t) => {
  const { port, seen } = await start(t);
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answer = '';
  socket.on('data', (c) => (answer += c));
  socket.write('POST /slow HTTP/1.1\r\nhost: x\r\nx-no-buffer: 1\r\ncontent-length: 10\r\n\r\nhello');
  await new Promise((r) => setTimeout(r, 150));
  socket.write('world');
  while (!answer.endsWith('0\r\n\r\n')) {
    if (socket.destroyed) return t.fail(`the connection closed: ${JSON.stringify(answer)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const [head, body] = answer.split('\r\n\r\n', 2) as [string, string];
  t.true(head.startsWith('HTTP/1.1 200 OK\r\n'), head);
  t.false(/content-length/i.test(head), head);
  t.true(/\r\ntransfer-encoding: chunked\r\n/i.test(`${head}\r\n`), head);
  const chunks = answer.slice(head.length + 4);
  t.is(decodeChunked(chunks), 'hello!world!!', body);
  t.is(seen[0]!.body, 'hello!world!!');
  t.is(seen[0]!.headers['content-length'], undefined);
  t.is(seen[0]!.headers['transfer-encoding'], 'chunked');
});

test('HTTP/2: a buffered body the filter resizes goes on with its new Content-Length, both ways', async (t) => {
  const { port, seen } = await start(t);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': '/x', 'content-length': '5' });
  stream.end('hello');
  const [headers, body] = await new Promise<[http2.IncomingHttpHeaders, string]>((resolve, reject) => {
    let h: http2.IncomingHttpHeaders = {};
    let text = '';
    stream.on('response', (x) => (h = x));
    stream.on('data', (c) => (text += c));
    stream.on('end', () => resolve([h, text]));
    stream.on('error', reject);
  });
  t.is(headers[':status'], 200);
  t.is(headers['content-length'], '7');
  t.is(body, '[world]');
  t.is(seen[0]!.body, '[hello]');
  t.is(seen[0]!.headers['content-length'], '7');
});

test('the route timeout still applies while the body\'s length is held (a filter buffering an upload that stalls): 504', async (t) => {
  const { port, seen } = await start(t, 300);
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answer = '';
  socket.on('data', (c) => (answer += c));
  socket.write('POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello');
  for (const end = Date.now() + 3000; !answer.includes('\r\n\r\n') && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  t.true(answer.startsWith('HTTP/1.1 504 '), answer);
  t.true(answer.includes("timed out: the upstream did not answer within the route's timeout of 300 ms"), answer);
  t.is(seen.length, 0);
});

function decodeChunked(text: string): string {
  let out = '';
  for (let at = 0; ; ) {
    const eol = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, eol), 16);
    if (size === 0) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}
