// Modules from other SDKs through the real `sluice run`: modules that export no
// proxy_on_vm_start / proxy_on_configure serve; a C++-SDK-like module, which builds its root only
// for the root id "", works with the file's default rootId, and one given another id starts but
// is reported in the log and in /filters; a filter's gRPC status reaches gRPC requests only.
import { connect } from 'node:http2';
import test from 'ava';
import { request } from 'undici';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

const config = (upstream: number) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [no-vm-start, no-configure, cpp, cpp-misnamed]
    routes: [{ cluster: up }]
  - name: faults
    address: 127.0.0.1:0
    filters: [fault]
    routes: [{ cluster: up }]
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream}]
filters:
  - name: no-vm-start
    module: \${repo}/build/fixtures/compat/no-vm-start.wasm
  - name: no-configure
    module: \${repo}/build/fixtures/compat/no-configure.wasm
  - name: cpp
    module: \${repo}/build/fixtures/compat/cpp-root-id.wasm
    config: from-the-file
  - name: cpp-misnamed
    module: \${repo}/build/fixtures/compat/cpp-root-id.wasm
    rootId: cpp-misnamed
    config: never-read
  - name: fault
    module: \${repo}/build/filters/fault.wasm
    config: { abort: { httpStatus: 503, grpcStatus: 8, percentage: 100 } }
`;

test('other SDKs under sluice run: missing callbacks, the default root id "", a root id that builds nothing, gRPC status only for gRPC', async (t) => {
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const run = await runSluice(config(upstream.port));
  t.teardown(() => run.stop());
  const web = await run.port('web');
  const faults = await run.port('faults');
  const admin = `http://127.0.0.1:${await run.adminPort()}`;

  // The two modules without vm_start / configure started and run; the C++-like module with the
  // default root id "" built its root and read its configuration; the misnamed one did nothing.
  const r = await request(`http://127.0.0.1:${web}/x`);
  t.is(r.statusCode, 200);
  await r.body.text();
  t.is(upstream.requests.length, 1);
  t.is(upstream.requests[0]!.headers['x-ran'], 'no-vm-start, no-configure');
  t.is(upstream.requests[0]!.headers['x-cpp-root'], 'from-the-file');

  const warning =
    'filter "cpp-misnamed": the module never read its configuration (10 bytes) while starting, and it read its root id ("cpp-misnamed"): ' +
    'its SDK may have no root context registered under that id and then does nothing. ' +
    'Check rootId: C++ SDK modules usually register under "" (leave rootId out), AssemblyScript ones under the id they pass to their registration';
  t.true(run.stderr().includes(JSON.stringify(warning).slice(1, -1)), run.stderr());
  const filters = (await (await request(`${admin}/filters`)).body.json()) as Array<{ name: string; warnings: string[] }>;
  t.deepEqual(
    filters.map((f) => [f.name, f.warnings]),
    [
      ['no-vm-start', []],
      ['no-configure', []],
      ['cpp', []],
      ['cpp-misnamed', [warning]],
      ['fault', []],
    ],
  );

  // A plain HTTP request answered by the fault filter carries no grpc-status...
  const plain = await request(`http://127.0.0.1:${faults}/x`);
  t.is(plain.statusCode, 503);
  t.is(plain.headers['grpc-status'], undefined);
  await plain.body.text();

  // ...a gRPC request gets the filter's gRPC status.
  const session = connect(`http://127.0.0.1:${faults}`);
  t.teardown(() => session.close());
  const grpc = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/demo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: Record<string, unknown> = {};
    stream.on('response', (h) => (headers = { ...h }));
    stream.on('trailers', (tr) => (headers = { ...headers, ...tr }));
    stream.on('error', reject);
    stream.on('close', () => resolve(headers));
    stream.resume();
    stream.end();
  });
  t.like(grpc, { ':status': 200, 'grpc-status': '8' });
  t.is(upstream.requests.length, 1);
});
