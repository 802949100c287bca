// What the controller tests share: a real API server with the WasmFilter CRD and the controller's
// RBAC from deploy/ applied, a kubeconfig holding the controller ServiceAccount's token (so the
// controller runs with exactly those rules), a loopback HTTP server for modules, and helpers that
// apply WasmFilters and wait for their conditions through the real kubectl.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RolloutStatus } from '../../controller/index.ts';
import { filterWasm, fixture, repoRoot } from './fixtures.ts';
import { startKube, type KubeCluster } from './kube-apiserver.ts';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export const modules = {
  hello: () => new Uint8Array(readFileSync(filterWasm('hello'))),
  headers: () => new Uint8Array(readFileSync(filterWasm('headers'))),
  noMarker: () => new Uint8Array(readFileSync(fixture('compat/no-marker'))),
  spinOnConfigure: () => new Uint8Array(readFileSync(fixture('controller/spin-on-configure'))),
  growOnStart: () => new Uint8Array(readFileSync(fixture('controller/grow-on-start'))),
  showEnv: () => new Uint8Array(readFileSync(fixture('show-env'))),
};

export interface ModuleServer {
  url(path: string): string;
  /** Serves `bytes` at `path`; `status` alone answers with that status and no module. */
  set(path: string, answer: Uint8Array | { status: number }): void;
  /** Requests received per path. */
  hits(path: string): number;
  close(): Promise<void>;
}

export async function moduleServer(): Promise<ModuleServer> {
  const answers = new Map<string, Uint8Array | { status: number }>();
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const a = answers.get(path);
    if (!a) return void res.writeHead(404).end('not found');
    if (a instanceof Uint8Array) return void res.writeHead(200, { 'content-type': 'application/wasm' }).end(a);
    res.writeHead(a.status).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    set: (path, answer) => void answers.set(path, answer),
    hits: (path) => hits.get(path) ?? 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface ControllerCluster {
  kube: KubeCluster;
  /** A kubeconfig with the token of sluice-system/sluice-controller. */
  controllerKubeconfig: string;
}

/** An API server with the CRD, the controller RBAC and namespace `team-a`. */
export async function startControllerCluster(): Promise<ControllerCluster> {
  const kube = await startKube();
  try {
    await kube.kubectlOk(['apply', '-f', `${repoRoot}deploy/crds/wasmfilter.yaml`]);
    await kube.kubectlOk(['apply', '-f', `${repoRoot}deploy/rbac/controller-rbac.yaml`]);
    await kube.kubectlOk(['create', 'namespace', 'team-a']);
    await kube.kubectlOk(['wait', '--for=condition=Established', 'crd/wasmfilters.sluice.dev', '--timeout=60s']);
    const token = await kube.token('sluice-system', 'sluice-controller', 6 * 3600);
    return { kube, controllerKubeconfig: await kube.kubeconfigFor(token, 'sluice-controller') };
  } catch (error) {
    await kube.close();
    throw error;
  }
}

export function wasmFilter(name: string, namespace: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name, namespace }, spec });
}

export interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
}

export interface FilterState {
  generation: number;
  resourceVersion: string;
  status?: { observedGeneration?: number; digest?: string; conditions?: Cond[]; nodes?: { ready: number; total: number; rejected?: Array<{ node: string; version: string; message: string }> }; rollout?: RolloutStatus };
}

export async function getFilter(kube: KubeCluster, namespace: string, name: string): Promise<FilterState> {
  const o = JSON.parse(await kube.kubectlOk(['get', 'wasmfilter', name, '-n', namespace, '-o', 'json']));
  return { generation: o.metadata.generation, resourceVersion: o.metadata.resourceVersion, status: o.status };
}

export const cond = (f: FilterState, type: string): Cond | undefined => f.status?.conditions?.find((c) => c.type === type);

/**
 * Waits with `kubectl wait` until the filter's Validated condition has `status` for its current
 * generation, and returns the filter as kubectl get shows it.
 */
export async function waitValidated(kube: KubeCluster, namespace: string, name: string, status: 'True' | 'False', timeoutS = 45): Promise<FilterState> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const r = await kube.kubectl(['wait', `--for=condition=Validated=${status.toLowerCase()}`, `wasmfilter/${name}`, '-n', namespace, `--timeout=${Math.max(1, Math.round((deadline - Date.now()) / 1000))}s`]);
    const f = await getFilter(kube, namespace, name);
    const c = cond(f, 'Validated');
    if (r.code === 0 && c?.status === status && c.observedGeneration === f.generation && f.status?.observedGeneration === f.generation) return f;
    if (Date.now() > deadline) throw new Error(`wasmfilter ${namespace}/${name}: Validated is not ${status} for generation ${f.generation}: ${JSON.stringify(f.status)} ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

export interface EventView {
  reason: string;
  type: string;
  note: string;
  reportingController: string;
  reportingInstance: string;
}

/** events.k8s.io/v1 Events about a WasmFilter, oldest first. */
export async function eventsFor(kube: KubeCluster, namespace: string, name: string): Promise<EventView[]> {
  const list = JSON.parse(await kube.kubectlOk(['get', 'events.v1.events.k8s.io', '-n', namespace, '-o', 'json']));
  return (list.items as Array<Record<string, any>>)
    .filter((e) => e.regarding?.kind === 'WasmFilter' && e.regarding?.name === name)
    .sort((a, b) => String(a.eventTime).localeCompare(String(b.eventTime)))
    .map((e) => ({ reason: e.reason, type: e.type, note: e.note, reportingController: e.reportingController, reportingInstance: e.reportingInstance }));
}

/** Polls `fn` (e.g. a kubectl get) every `everyMs` until it returns a value; throws naming `what` after `ms`. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 45_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
