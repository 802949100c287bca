// deploy/dashboards/sluice.json queries only metrics Sluice exports, as they are exported: the
// node proxy's families from a real `sluice run` scrape (HTTP through a filter to a cluster, a TCP
// connection, span export on), the controller's from its registry; rate() only over counters and
// histogram series, gauges read as they are. The chart's PrometheusRule is the alert table of
// docs/operations.md, on exported metrics too.
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import { ControllerMetrics } from '../../controller/metrics.ts';
import { parse } from 'yaml';
import { CHART_DIR } from '../../scripts/chart-files.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { helm, runHelm } from '../helpers/helm.ts';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

interface Panel { title?: string; panels?: Panel[]; targets?: Array<{ expr: string }> }
const dashboard = JSON.parse(readFileSync(`${repoRoot}deploy/dashboards/sluice.json`, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ query?: unknown }> } };

/** Every PromQL expression of the dashboard, with its panel's title. */
function expressions(): Array<{ title: string; expr: string }> {
  const out: Array<{ title: string; expr: string }> = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) out.push({ title: p.title ?? '', expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating.list) {
    const q = typeof v.query === 'object' && v.query !== null ? (v.query as { query: string }).query : v.query;
    if (typeof q === 'string' && q.includes('(')) out.push({ title: 'variable', expr: q });
  }
  return out;
}

/** Metric names in an expression: label matchers ({...}) and by/without (...) lists left out. */
const metricNames = (expr: string): string[] =>
  [...expr.replace(/\{[^}]*\}/g, '').replace(/\b(by|without)\s*\([^)]*\)/g, '').matchAll(/\b((?:istio|sluice)_[a-z0-9_]+)\b/g)].map((m) => m[1]);
/** Names used inside rate()/increase()/irate(). */
const ratedNames = (expr: string): string[] => [...expr.replace(/\{[^}]*\}/g, '').matchAll(/\b(?:rate|irate|increase)\(\s*((?:istio|sluice)_[a-z0-9_]+)/g)].map((m) => m[1]);

const families = (text: string): Map<string, string> => new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));

async function proxyFamilies(): Promise<Map<string, string>> {
  // /slow is never answered: its route times out, which brings the per-listener downstream series.
  const echo = await echoUpstream('echo', (req, res) => (req.url === '/slow' ? undefined : void res.end('ok')));
  const tcpUpstream = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await new Promise((r) => tcpUpstream.once('listening', r));
  const tcpPort = (tcpUpstream.address() as AddressInfo).port;
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
tracing: { otlp: { endpoint: "http://127.0.0.1:9/v1/traces", serviceName: sluice-test, flushIntervalMs: 60000, maxBatch: 512 } }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [stamp]
    routes: [{ match: { prefix: /slow }, cluster: echo, timeoutMs: 100 }, { match: { prefix: / }, cluster: echo }]
  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: db }
clusters:
  - name: echo
    endpoints: [127.0.0.1:${echo.port}]
  - name: db
    endpoints: [127.0.0.1:${tcpPort}]
filters:
  - name: stamp
    module: \${repo}/build/filters/headers.wasm
    config: { response: { add: [{ name: x-stamp, value: "1" }] } }
`);
  try {
    const web = await run.port('web');
    await (await request(`http://127.0.0.1:${web}/`)).body.text();
    const slow = await request(`http://127.0.0.1:${web}/slow`);
    await slow.body.text();
    if (slow.statusCode !== 504) throw new Error(`/slow answered ${slow.statusCode}, not the route timeout's 504`);
    const db = await run.port('db');
    await new Promise<void>((resolve, reject) => {
      const s = connect(db, '127.0.0.1', () => s.end('ping'));
      s.on('data', () => undefined);
      s.on('close', () => resolve());
      s.on('error', reject);
    });
    const text = await (await request(`http://127.0.0.1:${await run.adminPort()}/stats/prometheus`)).body.text();
    return families(text);
  } finally {
    await run.stop();
    await echo.close();
    tcpUpstream.close();
  }
}

let exportedOnce: Promise<{ exported: Map<string, string>; series: Map<string, string> }> | undefined;
/** The families Sluice exports (name -> type), and the series names their samples have. */
function exportedMetrics(): Promise<{ exported: Map<string, string>; series: Map<string, string> }> {
  exportedOnce ??= (async () => {
    const exported = new Map([...(await proxyFamilies()), ...families(new ControllerMetrics({ queueDepth: () => 0, inFlight: () => 0, filters: () => 0, leader: () => false }).render())]);
    // A histogram's samples are _bucket, _sum and _count.
    const series = new Map<string, string>();
    for (const [name, type] of exported) {
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) series.set(name + s, 'histogram');
      else series.set(name, type);
    }
    return { exported, series };
  })();
  return exportedOnce;
}

test('every metric the dashboard queries is exported, and rated only where it is a counter or a histogram', async (t) => {
  const { exported, series } = await exportedMetrics();
  const exprs = expressions();
  t.true(exprs.length >= 30, `${exprs.length} expressions`);
  const used = new Set<string>();
  for (const { title, expr } of exprs) {
    const names = metricNames(expr);
    t.true(names.length > 0, `"${title}": ${expr} queries no Sluice metric`);
    for (const name of names) {
      used.add(name);
      t.true(series.has(name), `"${title}" queries ${name}, which neither the proxy nor the controller exports`);
    }
    for (const name of ratedNames(expr)) t.not(series.get(name), 'gauge', `"${title}" takes rate() of the gauge ${name}`);
    // A variable's label_values() reads labels, not values.
    if (title !== 'variable') for (const name of names) if (series.get(name) === 'counter') t.regex(expr, new RegExp(`(rate|increase)\\(\\s*${name}\\b`), `"${title}" reads the counter ${name} raw: use rate()`);
  }
  const familyOf = (s: string) => (exported.has(s) ? s : s.replace(/_(bucket|sum|count)$/, ''));
  const unused = [...exported.keys()].filter((f) => ![...used].some((u) => familyOf(u) === f) && /^(istio|sluice)_/.test(f));
  t.log(`families on no panel: ${unused.join(', ') || 'none'}`);
});

test('the dashboard is Grafana JSON with a Prometheus datasource variable and unique panel ids', (t) => {
  const d = dashboard as unknown as { uid: string; schemaVersion: number; panels: Array<{ id: number; type: string; datasource?: { uid: string } }> };
  t.is(d.uid, 'sluice-overview');
  t.true(d.schemaVersion >= 36);
  const ids = d.panels.map((p) => p.id);
  t.is(new Set(ids).size, ids.length);
  for (const p of d.panels.filter((x) => x.type !== 'row')) t.is(p.datasource?.uid, '${datasource}');
});

const helmWhy = helm().why;
(helmWhy ? test.skip : test)(`the chart's PrometheusRule holds the alerts docs/operations.md lists, on exported metrics${helmWhy ? ` (skipped: ${helmWhy})` : ''}`, async (t) => {
  const rendered = runHelm(['template', 'sluice', CHART_DIR, '--namespace', 'sluice-system', '--kube-version', '1.32.0', '--set', 'metrics.prometheusRule.enabled=true', '--show-only', 'templates/prometheusrule.yaml']);
  const rules = (parse(rendered) as { spec: { groups: Array<{ rules: Array<{ alert: string; expr: string; for: string }> }> } }).spec.groups.flatMap((g) => g.rules);
  const docs = readFileSync(`${repoRoot}docs/operations.md`, 'utf8');
  const table = [...docs.slice(docs.indexOf('Suggested alerts')).matchAll(/^\| (Sluice\w+) \| `([^`]+)` \| (\w+) \|/gm)].map((m) => ({ alert: m[1], expr: m[2]!.replaceAll('\\|', '|'), for: m[3] })); // a pipe in a table cell is written \|
  t.deepEqual(rules.map((r) => ({ alert: r.alert, expr: r.expr, for: r.for })), table);
  const { series } = await exportedMetrics();
  for (const r of rules) {
    const names = metricNames(r.expr);
    if (r.alert === 'SluiceNodeProxyDown') t.deepEqual(names, []);
    for (const name of names) t.true(series.has(name), `${r.alert} uses ${name}, which Sluice does not export`);
  }
});
