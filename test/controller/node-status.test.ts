// Node status back to the WasmFilter, against a real kube-apiserver: two controller replicas (the
// first leads), node-a's agent connected to the leader and node-b's to the follower. Each replica
// publishes its agents' ACKs and NACKs in a ConfigMap of its own; the leader counts every node in
// status.nodes and sets Ready and Degraded. A node that cannot apply a snapshot NACKs it and keeps
// serving its last good one; a replica that stops takes its report with it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fixture } from '../helpers/fixtures.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { cond, eventually, getFilter, modules, sha256, wasmFilter, type FilterState } from '../helpers/controller-env.ts';
import { leaderOf, startNodeEnv, type NodeEnv } from '../helpers/node-env.ts';
import { until } from '../helpers/sluice-run.ts';
import { filterVersion } from '../../controller/discovery/node-config.ts';
import { reportConfigMapName } from '../../controller/nodes/report-publisher.ts';
import type { Controller } from '../../controller/index.ts';

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
  const first = await ctx.env.controller();
  await until('the first replica to lead', () => leaderOf([first]), 30_000);
  ctx.leader = first;
  ctx.follower = await ctx.env.controller();
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

test.serial('the follower stops: its ConfigMap goes, and the leader counts only the nodes still reported', async (t) => {
  await ctx.env.agents.get('node-b')!.stop();
  ctx.env.agents.delete('node-b');
  await ctx.follower.stop();
  const k = ctx.env.cluster.kube;
  const names = JSON.parse(await k.kubectlOk(['get', 'configmaps', '-n', 'sluice-system', '-l', 'sluice.dev/node-report=true', '-o', 'json'])).items.map((c: { metadata: { name: string } }) => c.metadata.name);
  t.deepEqual(names, [reportConfigMapName(ctx.leader.identity)]);
  const f = await waitStatus('add-header', '1 of 1 nodes', (x) => x.status?.nodes?.total === 1);
  t.deepEqual(f.status?.nodes, { ready: 1, total: 1 });
  const probe = await waitStatus('probe', 'no NACK any more', (x) => x.status?.nodes?.total === 1);
  t.deepEqual(probe.status?.nodes, { ready: 1, total: 1 });
  t.like(cond(probe, 'Degraded'), { status: 'False', reason: 'AsExpected' });
});
