// Only the callbacks a filter implements are called. A filter built with the SDK that overrides
// only onRequestHeaders exports no body callback (sdk/transform/prune-callbacks.js), so through
// the real `sluice run` process its body callbacks are never called, and bodies sent with a
// Content-Length in several pieces keep it both ways instead of going on chunked.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

const SIZE = 256 * 1024;

test('a filter with only onRequestHeaders: no body callback is called, and Content-Length stays both ways', async (t) => {
  const up = await echoUpstream('up', (_req, res) => {
    // The response body in two writes, the second one later: it streams through the proxy.
    res.writeHead(200, { 'content-length': String(SIZE) });
    res.write('b'.repeat(SIZE / 2));
    setTimeout(() => res.end('b'.repeat(SIZE / 2)), 50);
  });
  t.teardown(() => up.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [seen]
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - { name: up, endpoints: [127.0.0.1:${up.port}] }
filters:
  - { name: seen, module: \${repo}/build/fixtures/request-headers-only.wasm, rootId: request-headers-only }
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');

  // The request body in two writes, 50 ms apart.
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve) => socket.on('end', resolve));
  socket.write(`POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${SIZE}\r\nconnection: close\r\n\r\n${'a'.repeat(SIZE / 2)}`);
  await new Promise((r) => setTimeout(r, 50));
  socket.write('a'.repeat(SIZE / 2));
  await ended;
  const response = Buffer.concat(chunks).toString('latin1');
  const head = response.slice(0, response.indexOf('\r\n\r\n')).toLowerCase();
  t.true(head.startsWith('http/1.1 200 '), head);
  t.true(head.includes(`\r\ncontent-length: ${SIZE}`), head);
  t.false(head.includes('transfer-encoding'), head);
  t.is(response.length - head.length - 4, SIZE);

  t.is(up.requests.length, 1);
  t.is(up.requests[0]!.headers['x-seen'], '1');
  t.is(up.requests[0]!.headers['content-length'], String(SIZE));
  t.is(up.requests[0]!.headers['transfer-encoding'], undefined);
  t.is(up.requests[0]!.body.length, SIZE);

  const admin = await run.adminPort();
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/stats/prometheus`)).text();
  const calls = metrics.split('\n').filter((line) => line.startsWith('sluice_filter_callback_calls_total{filter="seen"'));
  t.deepEqual(calls.map((line) => /callback="([^"]+)"/.exec(line)![1]).sort(), [
    '_initialize',
    'proxy_on_configure',
    'proxy_on_context_create',
    'proxy_on_delete',
    'proxy_on_request_headers',
    'proxy_on_vm_start',
  ]);
  t.true(calls.includes('sluice_filter_callback_calls_total{filter="seen",callback="proxy_on_request_headers"} 1'), calls.join('\n'));
});

/** Exported by every SDK module: the SDK's own bookkeeping, start-up, and answers to its HTTP calls. */
const ALWAYS = ['proxy_on_memory_allocate', 'proxy_on_context_create', 'proxy_on_vm_start', 'proxy_on_configure', 'proxy_on_delete', 'proxy_on_http_call_response'];

function callbacksOf(wasm: string): string[] {
  const module = new WebAssembly.Module(readFileSync(join(repoRoot, wasm)));
  return WebAssembly.Module.exports(module).map((e) => e.name).filter((n) => n.startsWith('proxy_on_') && !ALWAYS.includes(n));
}

test('SDK modules export the callbacks their contexts override, and those the SDK needs', (t) => {
  const always = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(join(repoRoot, 'build/fixtures/request-headers-only.wasm')))).map((e) => e.name);
  for (const name of ALWAYS) t.true(always.includes(name), name);
  t.deepEqual(callbacksOf('build/fixtures/request-headers-only.wasm'), ['proxy_on_request_headers']);
  t.deepEqual(callbacksOf('build/fixtures/body-log.wasm'), ['proxy_on_request_body', 'proxy_on_response_body']);
  t.deepEqual(callbacksOf('build/filters/hello.wasm'), ['proxy_on_request_headers', 'proxy_on_response_headers']);
  t.deepEqual(callbacksOf('build/filters/router.wasm'), ['proxy_on_request_headers', 'proxy_on_response_headers']);
  t.deepEqual(callbacksOf('build/filters/headers.wasm'), ['proxy_on_request_headers', 'proxy_on_response_headers']);
  t.deepEqual(callbacksOf('build/filters/telemetry.wasm'), ['proxy_on_request_headers', 'proxy_on_response_headers', 'proxy_on_log']);
  t.deepEqual(callbacksOf('build/filters/fault.wasm'), ['proxy_on_tick', 'proxy_on_request_headers']);
  t.deepEqual(callbacksOf('build/filters/authz.wasm'), ['proxy_on_request_headers']);
});
