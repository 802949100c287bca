// The {{name}} filter in the real Sluice host, through the SDK's harness (no proxy, no cluster).
// `npm test` builds build/{{name}}.wasm first, then runs this with node --test.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FilterHarness } from 'sluice/harness';

const wasm = fileURLToPath(new URL('../build/{{name}}.wasm', import.meta.url));
const GET = (path) => ({ ':method': 'GET', ':path': path, ':authority': 'example.test', ':scheme': 'http' });

test('sets x-{{name}} on responses and counts requests', async () => {
  const h = await FilterHarness.load(wasm, { name: '{{name}}', rootId: '{{name}}', configuration: JSON.stringify({ value: 'yes' }) });
  const s = h.stream();
  assert.equal((await s.requestHeaders(GET('/'), { endOfStream: true })).kind, 'continue');
  await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
  assert.equal(s.response.header('x-{{name}}'), 'yes');
  await s.end();
  assert.equal(Number(h.metric('{{metricPrefix}}_requests_total')), 1);
  h.close();
});

test('rejects an unknown configuration field', async () => {
  await assert.rejects(FilterHarness.load(wasm, { name: '{{name}}', rootId: '{{name}}', configuration: '{"valeu": "x"}' }), { code: 'SLUICE_ERR_PLUGIN_CONFIGURE' });
});
