// Node status back to the WasmFilter, against a real kube-apiserver: two controller replicas (the
// first leads), node-a's agent connected to the leader and node-b's to the follower. Each replica
// publishes its agents' ACKs and NACKs in a ConfigMap of its own; the leader counts every node in
// status.nodes and sets Ready and Degraded. A node that cannot apply a snapshot NACKs it and keeps
// serving its last good one. In the middle of a rollout the leader stops: its report goes with it,
// and the follower, now leading, resumes the rollout from status and promotes it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fixture } from '../helpers/fixtures.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { cond, eventually, getFilter, modules, sha256, wasmFilter, type FilterState } from '../helpers/controller-env.ts';
import { leaderOf, startNodeEnv, type NodeEnv } from '../helpers/node-env.ts';
import { until } from '../helpers/sluice-run.ts';
import { filterVersion } from '../../controller/discovery/node-config.ts';
import { reportConfigMapName } from '../../controller/nodes/report-publisher.ts';
import { canaryNodes, type Controller } from '../../controller/index.ts';

const headersDigest = sha256(modules.headers());
const misbehaveDigest = sha256(new Uint8Array(readFileSync(fixture('containment/misbehave'))));

const headersSpec = {
  configMap: { name: 'headers-module', key: 'filter.wasm' },
  selector: { matchLabels: { app: 'web' } },
  pluginConfig: { response: { set: [{ name: 'x-sluice-filter', value: 'one' }] } },
};
const probeSpec = { configMap: { name: 'misbehave-module', key: 'filter.wasm' }, selector: { matchLabels: { app: 'web' } } };

interface Ctx {
  env: NodeEnv;
  leader: Controller;
  follower: Controller;
}
const ctx = {} as Ctx;

async function waitStatus(name: string, what: string, check: (f: FilterState) => boolean, ms = 45_000): Promise<FilterState> {
  let last: FilterState | undefined;
  return eventually(`wasmfilter team-a/${name}: ${what}`, async () => {
    last = await getFilter(ctx.env.cluster.kube, 'team-a', name);
    return check(last) ? last : undefined;
  }, ms).catch((error: Error) => {
    throw new Error(`${error.message}; status: ${JSON.stringify(last?.status)}`);
  });
}

/** The filter version of the spec as the API server stored it (with the schema's defaults). */
async function versionOf(name: string, digest: string): Promise<string> {
  return filterVersion(digest, JSON.parse(await ctx.env.cluster.kube.kubectlOk(['get', 'wasmfilter', name, '-n', 'team-a', '-o', 'jsonpath={.spec}'])));
}

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  ctx.env = await startNodeEnv(['node-a', 'node-b']);
  const first = await ctx.env.controller({ rolloutSoakMs: 1000 });
  await until('the first replica to lead', () => leaderOf([first]), 30_000);
  ctx.leader = first;
  ctx.follower = await ctx.env.controller({ rolloutSoakMs: 1000 });
  await ctx.env.agent('node-a', ctx.leader);
  await ctx.env.agent('node-b', ctx.follower);
});

test.after.always(async () => {
  await ctx.env?.close();
});

test.serial('kubectl apply of a WasmFilter: both agents load it, and the leader counts both (one reported by the follower) in status.nodes with Ready=True', async (t) => {
  t.false(ctx.follower.elector.isLeader);
  await ctx.env.cluster.kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('add-header', 'team-a', headersSpec) });
  const version = await versionOf('add-header', headersDigest);
  const f = await waitStatus('add-header', 'Ready=True with 2 of 2 nodes', (x) => cond(x, 'Ready')?.status === 'True' && x.status?.nodes?.ready === 2);
  t.deepEqual(f.status?.nodes, { ready: 2, total: 2 });
  t.like(cond(f, 'Ready'), { status: 'True', reason: 'NodesReady', message: `2 of 2 nodes run the version they should (${version})` });
  t.like(cond(f, 'Degraded'), { status: 'False', reason: 'AsExpected' });
  // Each agent runs the module, from the replica it is connected to.
  for (const node of ['node-a', 'node-b']) {
    const filters = ctx.env.agents.get(node)!.proxy!.filterStatus();
    t.deepEqual(filters.map((x) => [x.name, x.digest, x.state]), [['team-a.add-header', headersDigest, 'active']], node);
  }
  // Each replica published its own agents in its own ConfigMap.
  const k = ctx.env.cluster.kube;
  const list = JSON.parse(await k.kubectlOk(['get', 'configmaps', '-n', 'sluice-system', '-l', 'sluice.dev/node-report=true', '-o', 'json']));
  const reports = Object.fromEntries((list.items as Array<{ metadata: { name: string }; data: Record<string, string> }>).map((c) => [c.metadata.name, JSON.parse(c.data['report.json'])]));
  t.deepEqual(Object.keys(reports).sort(), [reportConfigMapName(ctx.leader.identity), reportConfigMapName(ctx.follower.identity)].sort());
  t.deepEqual(Object.keys(reports[reportConfigMapName(ctx.leader.identity)].nodes), ['node-a']);
  t.deepEqual(Object.keys(reports[reportConfigMapName(ctx.follower.identity)].nodes), ['node-b']);
  t.deepEqual(reports[reportConfigMapName(ctx.follower.identity)].nodes['node-b'].applied, { 'team-a/add-header': version });
});

test.serial('a snapshot node-b cannot apply (the new module cannot be stored): node-b NACKs and keeps serving its last good one; Degraded=True NodeRejected names node-b and its reason', async (t) => {
  // A directory where node-b's agent would store the module: the write and the load fail there.
  await mkdir(join(ctx.env.stateDir('node-b'), 'modules', `${misbehaveDigest}.wasm`), { recursive: true });
  const servedBefore = ctx.env.agents.get('node-b')!.version;
  await ctx.env.cluster.kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('probe', 'team-a', probeSpec) });
  const version = await versionOf('probe', misbehaveDigest);
  const f = await waitStatus('probe', 'Degraded=True NodeRejected', (x) => cond(x, 'Degraded')?.reason === 'NodeRejected' && x.status?.nodes?.ready === 1);
  t.is(f.status?.nodes?.ready, 1);
  t.is(f.status?.nodes?.total, 2);
  t.is(f.status?.nodes?.rejected?.length, 1);
  t.like(f.status?.nodes?.rejected?.[0], { node: 'node-b', version });
  t.regex(f.status!.nodes!.rejected![0]!.message, new RegExp(`filters\\[1\\]\\.module: ${misbehaveDigest}\\.wasm is not a file`));
  const degraded = cond(f, 'Degraded')!;
  t.is(degraded.status, 'True');
  t.true(degraded.message.startsWith(`node-b refused version ${version}: `), degraded.message);
  t.like(cond(f, 'Ready'), { status: 'False', reason: 'NodeRejected' });
  t.true(cond(f, 'Ready')!.message.startsWith('1 of 2 nodes run the version they should; not yet: node-b; node-b refused'), cond(f, 'Ready')!.message);
  // node-b still serves what it served; node-a runs both filters.
  t.is(ctx.env.agents.get('node-b')!.version, servedBefore);
  t.deepEqual(ctx.env.agents.get('node-b')!.proxy!.filterStatus().map((x) => x.name), ['team-a.add-header']);
  t.deepEqual(ctx.env.agents.get('node-a')!.proxy!.filterStatus().map((x) => x.name).sort(), ['team-a.add-header', 'team-a.probe']);
  // The other filter is not blamed: node-b runs its version.
  const other = await getFilter(ctx.env.cluster.kube, 'team-a', 'add-header');
  t.like(cond(other, 'Degraded'), { status: 'False', reason: 'AsExpected' });
  t.deepEqual(other.status?.nodes, { ready: 2, total: 2 });
});

test.serial('a leader change in the middle of a rollout: both replicas sent each node its version from status; the new leader resumes it, counts only the nodes still reported, takes back the other node\'s agent at its version, and promotes it', async (t) => {
  const k = ctx.env.cluster.kube;
  // node-b can store modules again, and the filter it refused goes.
  await rm(join(ctx.env.stateDir('node-b'), 'modules', `${misbehaveDigest}.wasm`), { recursive: true });
  await k.kubectlOk(['delete', 'wasmfilter', 'probe', '-n', 'team-a']);
  const v1 = await versionOf('add-header', headersDigest);
  const runs = (c: Controller, node: string) => c.distribution.nodes().get(node)?.applied['team-a/add-header'];
  const nodeRuns = () => ({ 'node-a': runs(ctx.leader, 'node-a'), 'node-b': runs(ctx.follower, 'node-b') });
  await until('both nodes on v1 without the probe filter', () => (ctx.follower.distribution.nodes().get('node-b')?.acked && nodeRuns()['node-b'] === v1 && nodeRuns()['node-a'] === v1 ? true : undefined), 30_000);

  const uid = JSON.parse(await k.kubectlOk(['get', 'wasmfilter', 'add-header', '-n', 'team-a', '-o', 'json'])).metadata.uid;
  const [canary] = canaryNodes(['node-a', 'node-b'], uid, 50);
  const other = canary === 'node-a' ? 'node-b' : 'node-a';
  t.log(`canary: ${canary} (the uid decides; node-a's agent is the one cut off by the leader change)`);
  await k.kubectlOk(['patch', 'wasmfilter', 'add-header', '-n', 'team-a', '--type=merge', '-p', JSON.stringify({ spec: { pluginConfig: { response: { set: [{ name: 'x-sluice-filter', value: 'two' }] } }, rollout: { percent: 50, paused: true } } })]);
  const before = await waitStatus('add-header', 'a canary', (x) => x.status?.rollout?.phase === 'Canary');
  const v2 = await versionOf('add-header', headersDigest);
  const rolloutBefore = before.status!.rollout!;
  t.deepEqual(rolloutBefore.canaryNodes, [canary]);
  // Each replica, from the same status, sends its node the version meant for it.
  await until(`${canary} on v2 and ${other} on v1: ${JSON.stringify(nodeRuns())}`, () => (nodeRuns()[canary as 'node-a'] === v2 && nodeRuns()[other] === v1 ? true : undefined), 30_000);

  await ctx.leader.stop();
  await until('the follower to lead', () => (ctx.follower.elector.isLeader ? true : undefined), 30_000);
  const names = JSON.parse(await k.kubectlOk(['get', 'configmaps', '-n', 'sluice-system', '-l', 'sluice.dev/node-report=true', '-o', 'json'])).items.map((c: { metadata: { name: string } }) => c.metadata.name);
  t.deepEqual(names, [reportConfigMapName(ctx.follower.identity)]);
  const resumed = await waitStatus('add-header', 'node-b alone counted', (x) => x.status?.nodes?.total === 1);
  t.deepEqual(resumed.status?.rollout, rolloutBefore);
  t.is(runs(ctx.follower, 'node-b'), 'node-b' === canary ? v2 : v1);

  // node-a's agent comes back, to the new leader: it resumes what it runs (the version meant for it).
  await ctx.env.agents.get('node-a')!.stop();
  await ctx.env.agent('node-a', ctx.follower);
  await until(`node-a resumed on ${canary === 'node-a' ? 'v2' : 'v1'}`, () => (runs(ctx.follower, 'node-a') === (canary === 'node-a' ? v2 : v1) ? true : undefined), 30_000);
  await waitStatus('add-header', 'both nodes counted again', (x) => x.status?.nodes?.total === 2);
  t.deepEqual((await getFilter(k, 'team-a', 'add-header')).status?.rollout, rolloutBefore);

  await k.kubectlOk(['patch', 'wasmfilter', 'add-header', '-n', 'team-a', '--type=merge', '-p', JSON.stringify({ spec: { rollout: { paused: false } } })]);
  const done = await waitStatus('add-header', 'promoted by the new leader', (x) => x.status?.rollout?.phase === 'Stable' && x.status?.nodes?.ready === 2);
  t.is(done.status!.rollout!.stable!.version, v2);
  t.deepEqual(done.status?.nodes, { ready: 2, total: 2 });
  await until('both nodes on v2', () => (runs(ctx.follower, 'node-a') === v2 && runs(ctx.follower, 'node-b') === v2 ? true : undefined), 30_000);
  t.like(cond(done, 'Ready'), { status: 'True', reason: 'NodesReady' });
});
