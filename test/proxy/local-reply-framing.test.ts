// Replies Sluice makes itself (direct responses, a filter's local reply) with a status that has no
// body, 204 and 304, carry no content-length and no body (RFC 9110 §8.6, §15.3.5, §15.4.5), over
// HTTP/1.1 (raw bytes, the connection still usable after) and HTTP/2.
import http2 from 'node:http2';
import { connect } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { filterWasm } from '../helpers/fixtures.ts';

async function start(t: ExecutionContext): Promise<number> {
  const direct = (name: string, status: number, body: string) => ({
    name,
    match: { path: `/${name}` },
    action: { kind: 'direct' as const, status, body, headers: { 'x-route': name } },
    timeoutMs: 0,
  });
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'web',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: ['fault'],
        routes: [direct('no-content', 204, ''), direct('no-content-body', 204, 'dropped'), direct('not-modified', 304, 'dropped'), direct('ok', 200, 'fine')],
      },
    ],
    clusters: [],
    filters: [
      {
        name: 'fault',
        module: filterWasm('fault'),
        rootId: 'fault',
        vmId: '',
        // Requests with x-abort: the fault filter answers 204 itself, with its default body text.
        configuration: JSON.stringify({ abort: { httpStatus: 204, percentage: 100 }, match: { headers: [{ name: 'x-abort', present: true }] } }),
        failStrategy: 'FAIL_CLOSE',
        limits: DEFAULT_LIMITS,
        capabilities: DEFAULT_CAPABILITIES,
        quarantine: DEFAULT_QUARANTINE,
      },
    ],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  return proxy.addresses().web.port;
}

/** Sends pipelined requests on one connection; resolves with what came back once `until` is in it. */
function exchange(port: number, requests: string, until: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`no "${until}" within 5 s; got ${JSON.stringify(received)}`))), 5000);
    socket.on('data', (c) => {
      received += c;
      if (received.includes(until)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('error', reject);
    socket.write(requests);
  });
}

/** Splits raw HTTP/1.1 responses: head lines (lower-cased names), by response. */
function heads(raw: string): string[][] {
  return raw
    .split(/\r\n\r\n/)
    .filter((part) => part.startsWith('HTTP/1.1'))
    .map((head) => head.split('\r\n').map((line, i) => (i === 0 ? line : line.toLowerCase())).filter((line) => !line.startsWith('date:') && !line.startsWith('keep-alive:')));
}

test('HTTP/1.1: 204 and 304 local replies have no content-length and no body; the connection goes on', async (t) => {
  const port = await start(t);
  const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nhost: x\r\n${extra}\r\n`;
  const raw = await exchange(port, get('/no-content') + get('/no-content-body') + get('/not-modified') + get('/ok', 'x-abort: 1\r\n') + get('/ok'), 'fine');
  t.deepEqual(heads(raw), [
    ['HTTP/1.1 204 No Content', 'x-route: no-content', 'connection: keep-alive'],
    ['HTTP/1.1 204 No Content', 'x-route: no-content-body', 'connection: keep-alive'],
    ['HTTP/1.1 304 Not Modified', 'x-route: not-modified', 'connection: keep-alive'],
    ['HTTP/1.1 204 No Content', 'content-type: text/plain', 'connection: keep-alive'],
    ['HTTP/1.1 200 OK', 'x-route: ok', 'content-length: 4', 'connection: keep-alive'],
  ]);
  // No body bytes anywhere but the last response's.
  t.true(raw.endsWith('\r\n\r\nfine'), raw);
  t.false(raw.includes('dropped'), raw);
  t.false(raw.includes('fault filter abort'), raw);
});

test('HTTP/2: 204 and 304 local replies have no content-length and no body', async (t) => {
  const port = await start(t);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const get = (path: string, extra: Record<string, string> = {}) =>
    new Promise<{ headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const stream = session.request({ ':path': path, ...extra });
      let headers: http2.IncomingHttpHeaders = {};
      let body = '';
      stream.on('response', (h) => (headers = h));
      stream.on('data', (c) => (body += c));
      stream.on('end', () => resolve({ headers, body }));
      stream.on('error', reject);
    });
  for (const [path, status, extra] of [['/no-content', 204, {}], ['/no-content-body', 204, {}], ['/not-modified', 304, {}], ['/ok', 204, { 'x-abort': '1' }]] as const) {
    const { headers, body } = await get(path, extra);
    t.is(headers[':status'], status, path);
    t.is(headers['content-length'], undefined, path);
    t.is(body, '', path);
  }
});
