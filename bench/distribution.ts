// Distribution at scale against a real API server: one `sluice controller` process (discovery on)
// and SLUICE_BENCH_AGENTS simulated node agents (default 1,000) in child processes, ~250 gRPC
// streams each with the real protocol and Pod-bound ServiceAccount tokens. Measures setup (Pods,
// TokenRequests), the connect storm (TokenReview per stream), a WasmFilter change → every agent
// ACKed (p50/p99 per agent, total), the controller's CPU and RSS idle with every stream open and
// during the change, the cost of a TokenReview, and the extra RSS of node mode (`sluice run
// --controller` against `sluice run -c` on the same config).
// Standalone: node --import=tsx bench/distribution.ts (after `npm run build`).

import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Agent, request, type RequestOptions } from 'node:https';
import { AuthenticationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../controller/controller.ts';
import { moduleServer, modules, sha256, startControllerCluster } from '../test/helpers/controller-env.ts';
import { hasK8sBinaries, k8sBinDir } from '../test/helpers/kube-apiserver.ts';
import { spawnSluice, until } from '../test/helpers/sluice-run.ts';
import type { AgentsReport, AgentsStart } from './distribution-agents.ts';
import { freePort, rssMiB } from './ports-and-proc.ts';
import { printTable, type BenchRow } from './table.ts';

const AGENTS = Number(process.env.SLUICE_BENCH_AGENTS ?? 1000);
const PER_CHILD = 250;
const CHANGES = Number(process.env.SLUICE_BENCH_CHANGES ?? 3);
const CONCURRENCY = 16;
const WAIT_MS = 600_000;

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
/** CPU seconds (user + system) a process used so far: what process.cpuUsage() says inside it. */
const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
};
const nodeName = (i: number) => `node-${String(i).padStart(4, '0')}`;

/** Runs `fn(i)` for i in [0, n) with `CONCURRENCY` at a time. */
async function pool(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, n) }, async () => {
    for (let i = next++; i < n; i = next++) await fn(i);
  }));
}

interface Children {
  procs: ChildProcess[];
  /** ACKs per node, in order. */
  acks: Map<string, Array<{ version: string; at: number; opened: number; modules: number }>>;
  ended: Array<{ node: string; code: number; details: string }>;
  close(): Promise<void>;
}

function startChildren(address: string, agents: Array<{ node: string; token: string }>, haveModules: string[] = []): Children {
  const acks: Children['acks'] = new Map();
  const ended: Children['ended'] = [];
  const procs: ChildProcess[] = [];
  let closing = false;
  for (let i = 0; i < agents.length; i += PER_CHILD) {
    const child = fork(fileURLToPath(new URL('./distribution-agents.ts', import.meta.url)), [], { execArgv: ['--import=tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', (m: AgentsReport | { type: 'closed' }) => {
      if (m.type === 'ack') {
        let list = acks.get(m.node);
        if (!list) acks.set(m.node, (list = []));
        list.push({ version: m.version, at: m.at, opened: m.opened, modules: m.modules });
      } else if (m.type === 'ended') ended.push(m);
    });
    // A child that dies ends the run at once rather than at the timeout.
    child.on('exit', (code) => closing || ended.push({ node: `(agents process ${i / PER_CHILD})`, code: code ?? -1, details: 'exited' }));
    child.send({ address, agents: agents.slice(i, i + PER_CHILD), haveModules } satisfies AgentsStart);
    procs.push(child);
  }
  return {
    procs,
    acks,
    ended,
    close: async () => {
      closing = true;
      await Promise.all(procs.map((p) => new Promise<void>((resolve) => {
        if (p.exitCode !== null) return resolve();
        p.once('exit', () => resolve());
        p.send({ type: 'close' });
        setTimeout(() => p.kill('SIGKILL'), 5000).unref();
      })));
    },
  };
}

async function waitFor(what: string, fn: () => boolean, ms = WAIT_MS, step = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(step);
  }
}

/** Samples a process's RSS every 100 ms until stopped; returns the peak. */
function rssPeak(pid: number): () => number {
  let peak = rssMiB(pid);
  const t = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
  return () => (clearInterval(t), Math.max(peak, rssMiB(pid)));
}

async function validated(api: CustomObjectsApi, name: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const f = (await api.getNamespacedCustomObject({ group: 'sluice.dev', version: 'v1alpha1', namespace: 'sluice-system', plural: 'wasmfilters', name })) as { metadata: { generation: number }; status?: { conditions?: Array<{ type: string; status: string; observedGeneration?: number }> } };
    const c = f.status?.conditions?.find((x) => x.type === 'Validated');
    if (c?.status === 'True' && c.observedGeneration === f.metadata.generation) return;
    if (Date.now() > deadline) throw new Error(`WasmFilter ${name} not validated: ${JSON.stringify(f.status)}`);
    await sleep(100);
  }
}

/**
 * The same TokenReviews over kept-alive connections (@kubernetes/client-node makes a new https.Agent,
 * so a new TLS connection, for every call): what reusing connections would save the controller.
 */
async function reviewsKeptAlive(kc: KubeConfig, tokens: string[]): Promise<{ cpuMs: number; rate: number; p50: number }> {
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: opts.ca, cert: opts.cert, key: opts.key, rejectUnauthorized: opts.rejectUnauthorized });
  const url = new URL('/apis/authentication.k8s.io/v1/tokenreviews', kc.getCurrentCluster()!.server);
  const review = (token: string) => new Promise<void>((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { ...(opts.headers as Record<string, string>), 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => (res.statusCode === 201 && JSON.parse(body).status?.authenticated ? resolve() : reject(new Error(`TokenReview ${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['sluice'] } }));
  });
  await review(tokens[0]!); // the first connection's handshake is not what is measured
  const times: number[] = [];
  const cpu = process.cpuUsage();
  const t = now();
  await pool(tokens.length, async (i) => {
    const s = now();
    await review(tokens[i]!);
    times.push(now() - s);
  });
  const rate = tokens.length / ((now() - t) / 1000);
  const used = process.cpuUsage(cpu);
  agent.destroy();
  return { cpuMs: (used.user + used.system) / 1000 / tokens.length, rate, p50: pct(times, 50) };
}

/** A process's RSS 3 s after it started serving: the median of 5 samples 500 ms apart. */
async function settledRss(pid: number): Promise<number> {
  await sleep(3000);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++, await sleep(500)) xs.push(rssMiB(pid));
  return pct(xs, 50);
}

/** The node-mode agent's RSS against `sluice run -c` on the config it was sent (same modules, same listeners). */
async function nodeModeRss(core: CoreV1Api, controller: string, dir: string): Promise<BenchRow[]> {
  const node = 'node-rss';
  await core.createNamespacedPod({ namespace: 'sluice-system', body: agentPod(node) });
  await core.createNamespacedPod({ namespace: 'team-a', body: workloadPod(node) });
  const token = await tokenFor(core, node);
  await writeFile(join(dir, 'token-rss'), token);
  const state = join(dir, 'state-rss');
  const agent = spawnSluice(['run', '--controller', controller, '--node-name', node, '--token-file', join(dir, 'token-rss'), '--state-dir', state, '--admin-address', '127.0.0.1:0', '--controller-plaintext', '--drain-ms', '0']);
  try {
    await until(`the node-mode agent applies a version; it said:\n${agent.stderr()}`, () => (/applied version/.test(agent.stderr()) ? true : undefined), 120_000);
    const nodeMode = await settledRss(agent.child.pid!);
    // The same config as a file: modules resolve next to it, in the agent's cache.
    const saved = JSON.parse(await readFile(join(state, 'last-good.json'), 'utf8')) as { config: string };
    const config = { ...JSON.parse(saved.config), admin: { address: '127.0.0.1:0' } };
    const file = join(state, 'modules', 'sluice.json');
    await writeFile(file, JSON.stringify(config));
    const plain = spawnSluice(['run', '-c', file, '--drain-ms', '0']);
    try {
      await until(`sluice run -c serving; it said:\n${plain.stderr()}`, () => (/capture-inbound listening/.test(plain.stderr()) ? true : undefined), 60_000);
      const fileMode = await settledRss(plain.child.pid!);
      return [
        { name: 'agent RSS, sluice run --controller (node mode, connected)', value: nodeMode, unit: 'MiB', note: `filters: ${config.filters.length}, clusters: ${config.clusters.length}` },
        { name: 'agent RSS, sluice run -c on the same config', value: fileMode, unit: 'MiB' },
        { name: 'node mode, extra RSS', value: nodeMode - fileMode, unit: 'MiB', note: 'gRPC client and protocol; median of 5 samples each' },
      ];
    } finally {
      plain.child.kill('SIGKILL');
      await plain.exited;
    }
  } finally {
    agent.child.kill('SIGKILL');
    await agent.exited;
  }
}

const agentPod = (node: string) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name: `agent-${node}`, namespace: 'sluice-system' },
  // The DaemonSet's pod: host network, so not a workload of its node.
  spec: { nodeName: node, serviceAccountName: 'sluice-node', hostNetwork: true, containers: [{ name: 'sluice', image: 'sluice:bench' }] },
});
const workloadPod = (node: string) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name: `web-${node}`, namespace: 'team-a', labels: { app: 'web' } },
  spec: { nodeName: node, serviceAccountName: 'web', containers: [{ name: 'web', image: 'web:bench' }] },
});
async function tokenFor(core: CoreV1Api, node: string): Promise<string> {
  const r = await core.createNamespacedServiceAccountToken({
    namespace: 'sluice-system', name: 'sluice-node',
    body: { spec: { audiences: ['sluice'], expirationSeconds: 3600, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: `agent-${node}` } } },
  });
  return r.status!.token;
}

export async function benchDistribution(): Promise<BenchRow[] | string> {
  if (!hasK8sBinaries()) return `skipped: the Kubernetes binaries are not in ${k8sBinDir()} (run scripts/build-k8s.sh)`;
  const rows: BenchRow[] = [];
  const env = await startControllerCluster();
  const server = await moduleServer();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bench-dist-'));
  let proc: ReturnType<typeof spawnSluice> | undefined;
  let children: Children | undefined;
  try {
    const kc = loadKubeConfig(env.kube.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const auth = kc.makeApiClient(AuthenticationV1Api);
    await env.kube.kubectlOk(['create', 'serviceaccount', 'web', '-n', 'team-a']);
    const headers = modules.headers();
    server.set('/headers.wasm', headers);

    // Setup: per node, the agent's Pod and one workload Pod; a bound token per agent Pod.
    let t = now();
    await pool(AGENTS, async (i) => {
      await core.createNamespacedPod({ namespace: 'sluice-system', body: agentPod(nodeName(i)) });
      await core.createNamespacedPod({ namespace: 'team-a', body: workloadPod(nodeName(i)) });
    });
    rows.push({ name: `setup: create ${2 * AGENTS} Pods (agent + workload per node)`, value: (now() - t) / 1000, unit: 's', note: `${CONCURRENCY} at a time` });
    t = now();
    const agents: Array<{ node: string; token: string }> = new Array(AGENTS);
    await pool(AGENTS, async (i) => void (agents[i] = { node: nodeName(i), token: await tokenFor(core, nodeName(i)) }));
    rows.push({ name: `setup: ${AGENTS} TokenRequests (Pod-bound, audience sluice)`, value: (now() - t) / 1000, unit: 's', note: `${CONCURRENCY} at a time` });

    // What a TokenReview costs the API server, alone.
    const reviews: number[] = [];
    const cpuBefore = process.cpuUsage();
    t = now();
    await pool(Math.min(200, AGENTS), async (i) => {
      const s = now();
      const r = await auth.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: agents[i]!.token, audiences: ['sluice'] } } });
      if (!r.status?.authenticated) throw new Error(`token of ${agents[i]!.node} refused: ${r.status?.error}`);
      reviews.push(now() - s);
    });
    const reviewRate = reviews.length / ((now() - t) / 1000);
    const reviewCpu = process.cpuUsage(cpuBefore);
    const keptAlive = await reviewsKeptAlive(kc, agents.slice(0, Math.min(200, AGENTS)).map((a) => a.token));
    rows.push({ name: 'TokenReview alone, per call, p50', value: pct(reviews, 50), unit: 'ms', note: `${reviews.length} calls, ${CONCURRENCY} at a time: ${reviewRate.toFixed(0)}/s` });
    rows.push({ name: 'TokenReview, client CPU per call', value: (reviewCpu.user + reviewCpu.system) / 1000 / reviews.length, unit: 'ms', note: 'this process, same client as the controller (@kubernetes/client-node)' });
    rows.push({ name: 'TokenReview, client CPU per call, connections kept alive', value: keptAlive.cpuMs, unit: 'ms', note: `node:https keepAlive, ${CONCURRENCY} at a time: ${keptAlive.rate.toFixed(0)}/s, p50 ${keptAlive.p50.toFixed(1)} ms` });
    rows.push({ name: `${AGENTS} TokenReviews at that rate`, value: AGENTS / reviewRate, unit: 's', note: 'the storm\'s floor while each stream is reviewed' });

    // A filter for every pod (root namespace), then the controller.
    const filter = (value: string) => ({ url: server.url('/headers.wasm'), sha256: sha256(headers), pluginConfig: { response: { set: [{ name: 'x-bench', value }] } } });
    await custom.createNamespacedCustomObject({ group: 'sluice.dev', version: 'v1alpha1', namespace: 'sluice-system', plural: 'wasmfilters', body: { apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name: 'bench' }, spec: filter('v0') } });
    const grpcPort = await freePort();
    const address = `127.0.0.1:${grpcPort}`;
    proc = spawnSluice(['controller', '--kubeconfig', env.controllerKubeconfig, '--listen', `127.0.0.1:${await freePort()}`, '--grpc-listen', address, '--grpc-plaintext', '--log-level', 'warn', '--identity', 'bench']);
    const pid = proc.child.pid!;
    await validated(custom, 'bench');
    await sleep(2000);
    const rssNoAgents = rssMiB(pid);

    // Connect storm: every agent at once (a controller restart looks like this).
    const storm = async (label: string, have: string[]): Promise<Children> => {
      const cpu0 = cpuSeconds(pid);
      const c = startChildren(address, agents, have);
      await waitFor(`all ${AGENTS} agents ACK their first snapshot`, () => {
        if (c.ended.length > 0) throw new Error(`${c.ended.length} streams ended, e.g. ${JSON.stringify(c.ended[0])}`);
        return c.acks.size === AGENTS;
      });
      const cpuUsed = cpuSeconds(pid) - cpu0;
      const firstOpened = Math.min(...[...c.acks.values()].map((l) => l[0]!.opened));
      const firsts = [...c.acks.values()].map((l) => l[0]!.at - l[0]!.opened);
      const total = Math.max(...[...c.acks.values()].map((l) => l[0]!.at)) - firstOpened;
      if ([...c.acks.values()].some((l) => l[0]!.modules !== (have.length > 0 ? 0 : 1))) throw new Error(`${label}: modules sent ${have.length > 0 ? 'to agents that had them' : 'missing'}`);
      rows.push({ name: `${label}: ${AGENTS} streams opened → all ACKed, total`, value: total / 1000, unit: 's', note: `TokenReview each; ${have.length > 0 ? 'no module sent (agents have it)' : `module (${(headers.length / 1024).toFixed(0)} KiB) to each`}; ${Math.ceil(AGENTS / PER_CHILD)} processes` });
      rows.push({ name: `${label}: per agent, hello → ACK sent, p50`, value: pct(firsts, 50), unit: 'ms' });
      rows.push({ name: `${label}: per agent, hello → ACK sent, p99`, value: pct(firsts, 99), unit: 'ms' });
      rows.push({ name: `${label}: controller CPU`, value: cpuUsed, unit: 'cpu-s' });
      return c;
    };
    children = await storm('connect storm', []);
    const c = children;

    // Idle with every stream open.
    await sleep(5000);
    let cpu = cpuSeconds(pid);
    t = now();
    await sleep(10_000);
    const idleCores = (cpuSeconds(pid) - cpu) / ((now() - t) / 1000);
    const rssIdle = rssMiB(pid);

    // Changes: a new pluginConfig → validated → every node's config recomputed and sent → ACKs.
    const totals: number[] = [];
    const per: number[] = [];
    const cpuPer: number[] = [];
    let peak = rssIdle;
    for (let k = 1; k <= CHANGES; k++) {
      const before = new Map([...c.acks].map(([n, l]) => [n, l.length]));
      const stopPeak = rssPeak(pid);
      cpu = cpuSeconds(pid);
      const f = (await custom.getNamespacedCustomObject({ group: 'sluice.dev', version: 'v1alpha1', namespace: 'sluice-system', plural: 'wasmfilters', name: 'bench' })) as Record<string, any>;
      const t0 = now();
      await custom.replaceNamespacedCustomObject({ group: 'sluice.dev', version: 'v1alpha1', namespace: 'sluice-system', plural: 'wasmfilters', name: 'bench', body: { ...f, spec: filter(`v${k}`) } });
      await waitFor(`all ${AGENTS} agents ACK change ${k}`, () => [...c.acks].every(([n, l]) => l.length > before.get(n)!));
      const lat = [...c.acks].map(([n, l]) => l[before.get(n)!]!.at - t0);
      totals.push(Math.max(...lat));
      per.push(...lat);
      cpuPer.push(cpuSeconds(pid) - cpu);
      peak = Math.max(peak, stopPeak());
      await sleep(2000);
    }
    if (c.ended.length > 0) throw new Error(`${c.ended.length} streams ended, e.g. ${JSON.stringify(c.ended[0])}`);
    if ([...c.acks.values()].some((l) => l.some((a) => a.modules !== 1))) throw new Error('a module was sent twice to an agent');
    rows.push({ name: `WasmFilter change → all ${AGENTS} ACKed, total (median of ${CHANGES})`, value: pct(totals, 50) / 1000, unit: 's', note: `each: ${totals.map((x) => (x / 1000).toFixed(2)).join(', ')} s; API write to last ACK sent` });
    rows.push({ name: 'per agent, change → ACK sent, p50', value: pct(per, 50), unit: 'ms', note: `${per.length} ACKs` });
    rows.push({ name: 'per agent, change → ACK sent, p99', value: pct(per, 99), unit: 'ms' });
    rows.push({ name: 'controller CPU per change (all agents)', value: pct(cpuPer, 50), unit: 'cpu-s', note: `each: ${cpuPer.map((x) => x.toFixed(2)).join(', ')}` });
    rows.push({ name: `controller CPU, idle with ${AGENTS} streams`, value: idleCores * 100, unit: '% core', note: 'over 10 s' });
    rows.push({ name: 'controller RSS, leading, no agents', value: rssNoAgents, unit: 'MiB', note: `${2 * AGENTS} Pods in discovery's cache` });
    rows.push({ name: `controller RSS, idle with ${AGENTS} streams`, value: rssIdle, unit: 'MiB' });
    rows.push({ name: 'controller RSS, peak during the changes', value: peak, unit: 'MiB' });
    await children.close();
    children = undefined;
    // Reconnect storm: the same agents, their module cached (what a controller restart gives).
    await sleep(2000);
    children = await storm('reconnect storm', [sha256(headers)]);
    await children.close();
    children = undefined;

    rows.push(...(await nodeModeRss(core, address, dir)));
    return rows;
  } finally {
    await children?.close();
    if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
    await server.close();
    await env.kube.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function printDistributionBench(): Promise<void> {
  const started = loadavg().map((x) => x.toFixed(2)).join(' ');
  const r = await benchDistribution();
  const title = `distribution (${AGENTS} simulated node agents, real protocol and tokens, one sluice controller process with discovery, gRPC without TLS (--grpc-plaintext); load average before ${started}, after ${loadavg().map((x) => x.toFixed(2)).join(' ')})`;
  if (typeof r === 'string') process.stdout.write(`\n${title}\n${r}\n`);
  else printTable(title, r);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await printDistributionBench();
