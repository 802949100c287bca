// The {{name}} filter in the real host through the SDK harness.

import test from 'ava';
import { fileURLToPath } from 'node:url';
import { FilterHarness } from '{{harness}}';
import { buildFilters } from '{{buildScript}}';

const wasm = fileURLToPath(new URL('{{wasm}}', import.meta.url));
const GET = (path: string) => ({ ':method': 'GET', ':path': path, ':authority': 'example.test', ':scheme': 'http' });

// Compiles the filter when its .wasm is missing or stale (a no-op after `npm run build`).
test.before(async () => {
  await buildFilters({ only: ['{{name}}'] });
});

test('sets x-{{name}} on responses and counts requests', async (t) => {
  const h = await FilterHarness.load(wasm, { name: '{{name}}', rootId: '{{name}}', configuration: JSON.stringify({ value: 'yes' }) });
  const s = h.stream();
  t.is((await s.requestHeaders(GET('/'), { endOfStream: true })).kind, 'continue');
  await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
  t.is(s.response.header('x-{{name}}'), 'yes');
  await s.end();
  t.is(Number(h.metric('{{metricPrefix}}_requests_total')), 1);
});

test('rejects an unknown configuration field', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: '{{name}}', rootId: '{{name}}', configuration: '{"valeu": "x"}' }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
});
