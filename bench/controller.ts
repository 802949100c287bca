// The controller at scale against a real API server: 1,000 WasmFilters created → all Validated
// (per-filter latency p50/p99 and the total), the `sluice controller` process's RSS with 1,000
// filters, and validation time per module (compile + proxy_on_vm_start + proxy_on_configure).
// Standalone: node --import=tsx bench/controller.ts (after `npm run build`). Skipped, saying why,
// when the Kubernetes binaries (scripts/build-k8s.sh) are missing.

import { pathToFileURL } from 'node:url';
import { freePort, rssMiB } from './ports-and-proc.ts';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { Informer } from '../controller/kube/informer.ts';
import { loadKubeConfig } from '../controller/controller.ts';
import { silentLogger, validateModule } from '../controller/index.ts';
import { moduleServer, modules, sha256, startControllerCluster } from '../test/helpers/controller-env.ts';
import { hasK8sBinaries, k8sBinDir } from '../test/helpers/kube-apiserver.ts';
import { spawnSluice } from '../test/helpers/sluice-run.ts';
import { printTable, type BenchRow } from './table.ts';

const FILTERS = Number(process.env.SLUICE_BENCH_FILTERS ?? 1000);
const CREATE_CONCURRENCY = 16;
const WORKERS = Number(process.env.SLUICE_BENCH_CONTROLLER_WORKERS ?? 4);

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const median = (xs: number[]) => pct(xs, 50);

/** Validation of one module in this process: the first (compiles) and the median of later runs. */
async function validationTimes(): Promise<{ cold: number; warm: number }> {
  const hello = modules.hello();
  const first = await validateModule(hello, 'bench/cold', { pluginConfig: { value: 'cold' } });
  const warm: number[] = [];
  for (let i = 0; i < 50; i++) warm.push((await validateModule(hello, `bench/${i}`, { pluginConfig: { value: `v${i}` } })).durationMs);
  return { cold: first.durationMs, warm: median(warm) };
}

export async function benchController(): Promise<BenchRow[] | string> {
  if (!hasK8sBinaries()) return `skipped: the Kubernetes binaries are not in ${k8sBinDir()} (run scripts/build-k8s.sh)`;
  const rows: BenchRow[] = [];
  const v = await validationTimes();
  rows.push({ name: 'validate hello.wasm, first (compile + start + configure)', value: v.cold, unit: 'ms' });
  rows.push({ name: 'validate hello.wasm, compiled module cached by digest', value: v.warm, unit: 'ms', note: 'median of 50' });

  const env = await startControllerCluster();
  const server = await moduleServer();
  const hello = modules.hello();
  const digest = sha256(hello);
  server.set('/hello.wasm', hello);
  const port = await freePort();
  const proc = spawnSluice(['controller', '--kubeconfig', env.controllerKubeconfig, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--identity', 'bench', '--workers', String(WORKERS)]);
  try {
    const kc = loadKubeConfig(env.kube.kubeconfig);
    const api = kc.makeApiClient(CustomObjectsApi);
    // Wait until it leads (the Lease names it).
    for (const deadline = Date.now() + 30_000; ; ) {
      const r = await env.kube.kubectl(['get', 'lease', 'sluice-controller', '-n', 'sluice-system', '-o', 'jsonpath={.spec.holderIdentity}']);
      if (r.stdout === 'bench') break;
      if (Date.now() > deadline || proc.child.exitCode !== null) throw new Error(`the controller did not take the Lease:\n${proc.stderr()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const rssIdle = rssMiB(proc.child.pid!);

    const created = new Map<string, number>();
    const validated = new Map<string, number>();
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => (allDone = resolve));
    // Seen through the controller's own informer class: it watches again when a watch ends.
    const seen = new Informer<{ metadata: { name: string; namespace: string }; status?: { conditions?: Array<{ type: string; status: string }> } }>({
      kubeConfig: kc,
      path: '/apis/sluice.dev/v1alpha1/namespaces/team-a/wasmfilters',
      list: () => api.listNamespacedCustomObject({ group: 'sluice.dev', version: 'v1alpha1', namespace: 'team-a', plural: 'wasmfilters' }),
      log: silentLogger,
      onChange: (key) => {
        const obj = seen.get(key);
        const ok = obj?.status?.conditions?.some((c) => c.type === 'Validated' && c.status === 'True');
        if (obj && ok && !validated.has(obj.metadata.name)) {
          validated.set(obj.metadata.name, performance.now());
          if (validated.size === FILTERS) allDone();
        }
      },
    });
    seen.start();
    await seen.waitForSync();
    const started = performance.now();
    let next = 0;
    const creator = async () => {
      for (let i = next++; i < FILTERS; i = next++) {
        const name = `f-${String(i).padStart(4, '0')}`;
        await api.createNamespacedCustomObject({
          group: 'sluice.dev',
          version: 'v1alpha1',
          namespace: 'team-a',
          plural: 'wasmfilters',
          body: { apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name }, spec: { url: server.url('/hello.wasm'), sha256: digest, pluginConfig: { header: 'x-bench', value: `v${i}` } } },
        });
        created.set(name, performance.now());
      }
    };
    await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, creator));
    const createdAll = performance.now();
    const timeout = setTimeout(() => allDone(), 300_000);
    await done;
    clearTimeout(timeout);
    seen.stop();
    if (validated.size < FILTERS) throw new Error(`only ${validated.size} of ${FILTERS} filters validated within 5 minutes`);
    const finished = Math.max(...validated.values());
    const latency = [...created].map(([name, t]) => validated.get(name)! - t);
    const rssLoaded = rssMiB(proc.child.pid!);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const rsum = Number(/^sluice_controller_reconcile_duration_seconds_sum (\S+)$/m.exec(metrics)?.[1] ?? NaN);
    const rcount = Number(/^sluice_controller_reconcile_duration_seconds_count (\S+)$/m.exec(metrics)?.[1] ?? NaN);
    const sum = Number(/^sluice_controller_validation_duration_seconds_sum (\S+)$/m.exec(metrics)?.[1] ?? NaN);
    const count = Number(/^sluice_controller_validation_duration_seconds_count (\S+)$/m.exec(metrics)?.[1] ?? NaN);

    rows.push({ name: `create ${FILTERS} WasmFilters (API, ${CREATE_CONCURRENCY} at a time)`, value: (createdAll - started) / 1000, unit: 's' });
    rows.push({ name: `${FILTERS} created → all Validated, total`, value: (finished - started) / 1000, unit: 's', note: 'first create to last Validated=True seen by a watch' });
    rows.push({ name: 'per filter, created → Validated, p50', value: median(latency), unit: 'ms' });
    rows.push({ name: 'per filter, created → Validated, p99', value: pct(latency, 99), unit: 'ms' });
    rows.push({ name: 'validation in the controller, mean', value: (sum / count) * 1000, unit: 'ms', note: `${count} validations (metrics)` });
    rows.push({ name: 'reconcile in the controller, mean', value: (rsum / rcount) * 1000, unit: 'ms', note: `${rcount} reconciles: fetch, validation, status write` });
    rows.push({ name: 'controller RSS, leading, no filters', value: rssIdle, unit: 'MiB' });
    rows.push({ name: `controller RSS with ${FILTERS} validated filters`, value: rssLoaded, unit: 'MiB' });
    return rows;
  } finally {
    if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await server.close();
    await env.kube.close();
  }
}

export async function printControllerBench(): Promise<void> {
  const r = await benchController();
  const title = `controller (${FILTERS} WasmFilters against a real kube-apiserver; one sluice controller process, ${WORKERS} workers)`;
  if (typeof r === 'string') process.stdout.write(`\n${title}\n${r}\n`);
  else printTable(title, r);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await printControllerBench();
