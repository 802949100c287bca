// A filter's environment (config `environment`, a WasmFilter's vmConfig.env): a real `sluice run`
// with two instances of the show-env fixture (AssemblyScript, reading WASI environ_get), one given
// variables and one not. Each VM sees exactly its own, nothing of the proxy's environment.
import test from 'ava';
import { request } from 'undici';
import { runSluice } from '../helpers/sluice-run.ts';

const config = (require: string) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: with-env, address: 127.0.0.1:0, filters: [with-env], routes: [{ match: { prefix: / }, directResponse: { status: 200, body: "ok" } }] }
  - { name: without, address: 127.0.0.1:0, filters: [without], routes: [{ match: { prefix: / }, directResponse: { status: 200, body: "ok" } }] }
filters:
  - name: with-env
    module: \${repo}/build/fixtures/show-env.wasm
    config: { require: [MODE] }
    environment: { MODE: enforce, GREETING: "héllo wörld", EMPTY: "" }
  - name: without
    module: \${repo}/build/fixtures/show-env.wasm
    config: { require: ${require} }
`;

const envHeaders = (headers: Record<string, string | string[] | undefined>) => Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('x-env-')));

test('each filter\'s VM reads exactly its own environment through WASI; the proxy\'s own variables never reach a filter', async (t) => {
  const run = await runSluice(config('[]'));
  t.teardown(() => run.stop());
  const a = await request(`http://127.0.0.1:${await run.port('with-env')}/`);
  await a.body.text();
  t.deepEqual(envHeaders(a.headers), { 'x-env-count': '3', 'x-env-mode': 'enforce', 'x-env-greeting': 'héllo wörld', 'x-env-empty': '' });
  const b = await request(`http://127.0.0.1:${await run.port('without')}/`);
  await b.body.text();
  // The proxy process has PATH, HOME, … : none of it.
  t.deepEqual(envHeaders(b.headers), { 'x-env-count': '0' });
});

test('a filter that needs a variable it was not given refuses its configuration, and the proxy does not start', async (t) => {
  const run = await runSluice(config('[MODE]'));
  t.teardown(() => run.stop());
  t.not(await run.exited, 0);
  t.regex(run.stderr(), /show-env: MODE is not in the environment \(0 variables\)/);
});
