// Rollouts against a real kube-apiserver, with discovery and two in-process node agents: the first
// version of a filter is stable at once; a new one goes to rollout.percent of the nodes first
// (chosen by hash of the filter's uid and the node name), is held there while paused, and goes to
// every node after the soak time; a restarted controller resumes from status.rollout; a version a
// canary node NACKs, or one that fails too often there, is rolled back to the last good version
// with Degraded=True and the reason, and the other node never gets it.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { canaryNodes, type Controller, type RolloutStatus, type WasmFilterStatus } from '../../controller/index.ts';
import { filterVersion } from '../../controller/discovery/node-config.ts';
import { cond, eventsFor, getFilter, modules, sha256, wasmFilter } from '../helpers/controller-env.ts';
import { filterWasm, fixture } from '../helpers/fixtures.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { leaderOf, startNodeEnv, type NodeEnv } from '../helpers/node-env.ts';
import { until } from '../helpers/sluice-run.ts';
import { freePort } from '../helpers/free-port.ts';

const NODES = ['node-a', 'node-b'];
const KEY = 'team-a/greet';
const SOAK_MS = 1500;
const THRESHOLD = 3;
const misbehaveDigest = sha256(new Uint8Array(readFileSync(fixture('containment/misbehave'))));
const helloDigest = sha256(modules.hello());

interface Ctx {
  env: NodeEnv;
  controller: Controller;
  grpcPort: number;
  uid: string;
  canary: string;
  other: string;
  /** Filter versions by name (v1, v2, ...). */
  versions: Record<string, string>;
}
const ctx = { versions: {} } as Ctx;


async function startController(): Promise<Controller> {
  const c = await ctx.env.controller({ grpcListen: `127.0.0.1:${ctx.grpcPort}`, rolloutSoakMs: SOAK_MS, rolloutFailureThreshold: THRESHOLD });
  await until('the controller to lead', () => leaderOf([c]), 30_000);
  return c;
}

const status = (): WasmFilterStatus | undefined => ctx.controller.informer.get(KEY)?.status;

/** Waits until the filter's status (as the controller's informer has it from the API server) passes `check`. */
async function waitStatus(what: string, check: (s: WasmFilterStatus) => boolean, ms = 45_000): Promise<WasmFilterStatus> {
  try {
    return await until(what, () => {
      const s = status();
      return s && check(s) ? s : undefined;
    }, ms);
  } catch (error) {
    throw new Error(`${(error as Error).message}; status: ${JSON.stringify(status())}`);
  }
}

const applied = (node: string): string | undefined => ctx.controller.distribution.nodes().get(node)?.applied[KEY];

/** Waits until each node runs (ACKed) the version given for it. */
async function waitApplied(want: Record<string, string>): Promise<void> {
  await until(`nodes to run ${JSON.stringify(want)}; they run ${JSON.stringify(Object.fromEntries(NODES.map((n) => [n, applied(n)])))}`, () => (Object.entries(want).every(([n, v]) => applied(n) === v && ctx.controller.distribution.nodes().get(n)?.acked) ? true : undefined), 45_000);
}

/** Records, per node and version, when the controller first sent that version of the filter to the node. */
function sampler(): { firstSent: (node: string, version: string) => number | undefined; stop: () => void } {
  const first = new Map<string, number>();
  const timer = setInterval(() => {
    for (const n of NODES) {
      const v = ctx.controller.distribution.nodes().get(n)?.sent[KEY];
      if (v && !first.has(`${n} ${v}`)) first.set(`${n} ${v}`, Date.now());
    }
  }, 5);
  return { firstSent: (node, version) => first.get(`${node} ${version}`), stop: () => clearInterval(timer) };
}

const k = () => ctx.env.cluster.kube;
const patch = (spec: Record<string, unknown>) => k().kubectlOk(['patch', 'wasmfilter', 'greet', '-n', 'team-a', '--type=merge', '-p', JSON.stringify({ spec })]);

/** The version of the spec as stored (with the schema's defaults) and the given module. */
async function storedVersion(digest: string): Promise<string> {
  return filterVersion(digest, JSON.parse(await k().kubectlOk(['get', 'wasmfilter', 'greet', '-n', 'team-a', '-o', 'jsonpath={.spec}'])));
}

const headersDigest = sha256(modules.headers());

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  ctx.env = await startNodeEnv(NODES);
  await ctx.env.cluster.kube.kubectlOk(['create', 'configmap', 'hello-module', '-n', 'team-a', `--from-file=filter.wasm=${filterWasm('hello')}`]);
  ctx.grpcPort = await freePort();
  ctx.controller = await startController();
  for (const n of NODES) await ctx.env.agent(n, ctx.controller);
});

test.after.always(async () => {
  await ctx.env?.close();
});

test.serial('the first version of a filter is stable at once: both nodes run it; status.rollout says Stable', async (t) => {
  await k().kubectlOk(['apply', '-f', '-'], {
    input: wasmFilter('greet', 'team-a', {
      configMap: { name: 'headers-module', key: 'filter.wasm' },
      selector: { matchLabels: { app: 'web' } },
      pluginConfig: { response: { set: [{ name: 'x-greet', value: 'one' }] } },
      rollout: { percent: 50 },
    }),
  });
  const s = await waitStatus('Stable with v1 on 2 nodes', (x) => x.rollout?.phase === 'Stable' && x.nodes?.ready === 2);
  ctx.versions.v1 = await storedVersion(headersDigest);
  t.is(s.rollout?.stable?.version, ctx.versions.v1);
  t.is(s.rollout?.stable?.digest, `sha256:${headersDigest}`);
  t.deepEqual(s.rollout?.stable?.source, { configMap: { name: 'headers-module', key: 'filter.wasm' } });
  t.is(s.rollout?.canary, undefined);
  await waitApplied({ 'node-a': ctx.versions.v1, 'node-b': ctx.versions.v1 });
  ctx.uid = JSON.parse(await k().kubectlOk(['get', 'wasmfilter', 'greet', '-n', 'team-a', '-o', 'json'])).metadata.uid;
  [ctx.canary] = canaryNodes(NODES, ctx.uid, 50);
  ctx.other = NODES.find((n) => n !== ctx.canary)!;
});

test.serial('percent 50 of two nodes: a new version goes to exactly one node (the canary) and is held there while paused; unpaused, it goes to both after the soak', async (t) => {
  const samples = sampler();
  try {
    await patch({ pluginConfig: { response: { set: [{ name: 'x-greet', value: 'two' }] } }, rollout: { percent: 50, paused: true } });
    const canary = await waitStatus('a canary', (x) => x.rollout?.phase === 'Canary');
    ctx.versions.v2 = await storedVersion(headersDigest);
    t.is(canary.rollout?.canary?.version, ctx.versions.v2);
    t.is(canary.rollout?.stable?.version, ctx.versions.v1);
    t.deepEqual(canary.rollout?.canaryNodes, [ctx.canary]);
    await waitApplied({ [ctx.canary]: ctx.versions.v2, [ctx.other]: ctx.versions.v1 });
    // Held: after more than the soak time, still a canary, and the other node still on v1.
    await new Promise((r) => setTimeout(r, 2 * SOAK_MS));
    t.is(status()?.rollout?.phase, 'Canary');
    t.is(applied(ctx.other), ctx.versions.v1);
    t.is(samples.firstSent(ctx.other, ctx.versions.v2), undefined);
    const s = await waitStatus('both nodes counted', (x) => x.nodes?.ready === 2);
    t.like(s.conditions?.find((c) => c.type === 'Ready'), { status: 'True', reason: 'NodesReady' });

    await patch({ rollout: { paused: false } });
    const stable = await waitStatus('promoted', (x) => x.rollout?.phase === 'Stable' && x.rollout.stable?.version === ctx.versions.v2);
    await waitApplied({ 'node-a': ctx.versions.v2, 'node-b': ctx.versions.v2 });
    // The other node was sent v2 only after the promotion was decided.
    t.true(samples.firstSent(ctx.other, ctx.versions.v2)! >= Date.parse(stable.rollout!.since), `${samples.firstSent(ctx.other, ctx.versions.v2)} >= ${stable.rollout!.since}`);
    t.true(samples.firstSent(ctx.canary, ctx.versions.v2)! < Date.parse(stable.rollout!.since));
  } finally {
    samples.stop();
  }
  const events = await eventsFor(k(), 'team-a', 'greet');
  t.true(events.some((e) => e.reason === 'RolloutStarted' && e.note === `version ${ctx.versions.v2} goes to 1 canary node(s) first: ${ctx.canary}`), JSON.stringify(events));
  t.true(events.some((e) => e.reason === 'RolloutPromoted' && e.note === `version ${ctx.versions.v2} goes to every node`), JSON.stringify(events));
});

test.serial('a restarted controller resumes a rollout from status: it fetches the stable module again from its source; the canary node keeps the canary version (another module), the other the stable one; then it is promoted', async (t) => {
  await patch({ configMap: { name: 'misbehave-module', key: 'filter.wasm' }, pluginConfig: { response: { set: [{ name: 'x-greet', value: 'three' }] } }, rollout: { paused: true } });
  const before = await waitStatus('a canary of v3', (x) => x.rollout?.phase === 'Canary');
  ctx.versions.v3 = await storedVersion(misbehaveDigest);
  t.is(before.rollout?.stable?.digest, `sha256:${headersDigest}`);
  t.is(before.rollout?.canary?.digest, `sha256:${misbehaveDigest}`);
  await waitApplied({ [ctx.canary]: ctx.versions.v3, [ctx.other]: ctx.versions.v2 });

  await ctx.controller.stop();
  ctx.controller = await startController();
  const samples = sampler();
  try {
    await until('both agents reconnect', () => (NODES.every((n) => ctx.controller.distribution.nodes().get(n)?.connected) ? true : undefined), 30_000);
    // The spec names the canary's module; the stable one came from status.rollout.stable.source.
    await until('the stable module fetched again', () => ctx.controller.moduleByDigest(headersDigest), 30_000);
    await waitApplied({ [ctx.canary]: ctx.versions.v3, [ctx.other]: ctx.versions.v2 });
    const resumed = await waitStatus('the status as it was', (x) => x.rollout?.phase === 'Canary');
    t.deepEqual(resumed.rollout, before.rollout as RolloutStatus);
    await new Promise((r) => setTimeout(r, 2 * SOAK_MS));
    t.is(status()?.rollout?.phase, 'Canary');
    t.is(samples.firstSent(ctx.other, ctx.versions.v3), undefined);

    await patch({ rollout: { paused: false } });
    const stable = await waitStatus('promoted by the new controller', (x) => x.rollout?.phase === 'Stable' && x.rollout.stable?.version === ctx.versions.v3);
    await waitApplied({ 'node-a': ctx.versions.v3, 'node-b': ctx.versions.v3 });
    t.true(samples.firstSent(ctx.other, ctx.versions.v3)! >= Date.parse(stable.rollout!.since));
  } finally {
    samples.stop();
  }
});

test.serial('a version the canary node cannot apply is NACKed and rolled back: Degraded=True NodeRejected names the node; the other node never gets it', async (t) => {
  // A directory where the canary node's agent would store the new module: it cannot apply the snapshot.
  await mkdir(join(ctx.env.stateDir(ctx.canary), 'modules', `${helloDigest}.wasm`), { recursive: true });
  await patch({ configMap: { name: 'hello-module', key: 'filter.wasm' }, pluginConfig: '{"header": "x-greet", "value": "four"}' }); // a string: a merge patch would merge objects
  const s = await waitStatus('rolled back', (x) => x.rollout?.phase === 'RolledBack');
  ctx.versions.bad = await storedVersion(helloDigest);
  t.is(s.digest, `sha256:${helloDigest}`);
  t.like(s.rollout, { phase: 'RolledBack', failedVersion: ctx.versions.bad, reason: 'NodeRejected' });
  t.is(s.rollout?.stable?.version, ctx.versions.v3);
  t.true(s.rollout!.message!.startsWith(`${ctx.canary} refused version ${ctx.versions.bad}: `), s.rollout!.message);
  const f = await getFilter(k(), 'team-a', 'greet');
  const degraded = cond(f, 'Degraded')!;
  t.like(degraded, { status: 'True', reason: 'NodeRejected' });
  t.true(degraded.message.startsWith(`version ${ctx.versions.bad} was rolled back to ${ctx.versions.v3}: ${ctx.canary} refused version ${ctx.versions.bad}: `), degraded.message);
  // Both nodes run the last good version; the other node never got the module.
  await waitApplied({ 'node-a': ctx.versions.v3, 'node-b': ctx.versions.v3 });
  t.false(existsSync(join(ctx.env.stateDir(ctx.other), 'modules', `${helloDigest}.wasm`)));
  const after = await waitStatus('no refusal pending', (x) => x.nodes?.ready === 2 && (x.nodes.rejected ?? []).length === 0);
  t.like(after.conditions?.find((c) => c.type === 'Degraded'), { status: 'True', reason: 'NodeRejected' });
  const events = await eventsFor(k(), 'team-a', 'greet');
  t.true(events.some((e) => e.type === 'Warning' && e.reason === 'NodeRejected' && e.note.startsWith(`version ${ctx.versions.bad} rolled back to ${ctx.versions.v3}: ${ctx.canary} refused`)), JSON.stringify(events));
});

test.serial('a canary version that fails too often on its node is rolled back: Degraded=True FailureThreshold', async (t) => {
  await rm(join(ctx.env.stateDir(ctx.canary), 'modules', `${helloDigest}.wasm`), { recursive: true });
  const samples = sampler();
  t.teardown(() => samples.stop());
  await patch({ configMap: { name: 'misbehave-module', key: 'filter.wasm' }, pluginConfig: { response: { set: [{ name: 'x-greet', value: 'three' }] } }, failStrategy: 'FAIL_RELOAD', rollout: { paused: true } });
  await waitStatus('a canary of the misbehaving filter', (x) => x.rollout?.phase === 'Canary');
  ctx.versions.failing = await storedVersion(misbehaveDigest);
  t.is(status()?.rollout?.canary?.version, ctx.versions.failing);
  await waitApplied({ [ctx.canary]: ctx.versions.failing, [ctx.other]: ctx.versions.v3 });
  // Requests to /trap make the filter trap on the canary node.
  const port = ctx.env.agents.get(ctx.canary)!.proxy!.addresses()['capture-outbound']!.port;
  const statuses = new Set<number>();
  const deadline = Date.now() + 30_000;
  while (status()?.rollout?.phase !== 'RolledBack' && Date.now() < deadline) {
    statuses.add((await fetch(`http://127.0.0.1:${port}/trap`)).status);
    await new Promise((r) => setTimeout(r, 100));
  }
  const s = await waitStatus('rolled back', (x) => x.rollout?.phase === 'RolledBack', 1000);
  t.like(s.rollout, { failedVersion: ctx.versions.failing, reason: 'FailureThreshold' });
  t.regex(s.rollout!.message!, new RegExp(`^${ctx.canary} counted \\d+ failures of version ${ctx.versions.failing.replace('.', '\\.')} \\(--rollout-failure-threshold ${THRESHOLD}\\)$`));
  t.like(s.conditions?.find((c) => c.type === 'Degraded'), { status: 'True', reason: 'FailureThreshold' });
  t.false(statuses.has(200), `the misbehaving filter answered ${[...statuses]}`);
  await waitApplied({ 'node-a': ctx.versions.v3, 'node-b': ctx.versions.v3 });
  t.is(samples.firstSent(ctx.other, ctx.versions.failing), undefined);
});
