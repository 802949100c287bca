// `sluice controller` as real processes against a real API server, as the controller's
// ServiceAccount: two replicas elect a leader on a Lease, only the leader writes status and
// Events, killing it hands over to the other within the lease duration; /healthz, /readyz,
// /metrics and JSON logs; bad flags and kubeconfigs exit with a clear message.
import test from 'ava';
import { spawnSluice, until } from '../helpers/sluice-run.ts';
import { eventsFor, moduleServer, modules, sha256, startControllerCluster, waitValidated, wasmFilter, type ControllerCluster, type ModuleServer } from '../helpers/controller-env.ts';

const LEASE_S = 3;
let env: ControllerCluster;
let server: ModuleServer;
type Replica = ReturnType<typeof spawnSluice> & { id: string; port: number };
const replicas: Replica[] = [];
const hello = modules.hello();
const helloSha = sha256(hello);

async function startReplica(id: string): Promise<Replica> {
  const p = spawnSluice(['controller', '--kubeconfig', env.controllerKubeconfig, '--listen', '127.0.0.1:0', '--grpc-listen', '127.0.0.1:0', '--lease-duration', String(LEASE_S), '--identity', id]);
  const port = await until(`replica ${id} to serve; it said:\n${p.stderr()}`, () => {
    if (p.child.exitCode !== null) throw new Error(`replica ${id} exited with ${p.child.exitCode}: ${p.stderr()}`);
    const m = /"msg":"serving \/healthz, \/readyz, \/metrics","[^\n]*"address":"127\.0\.0\.1:(\d+)"/.exec(p.stderr());
    return m ? Number(m[1]) : undefined;
  }, 30_000);
  const r = { ...p, id, port };
  replicas.push(r);
  return r;
}

const get = async (r: Replica, path: string) => {
  const res = await fetch(`http://127.0.0.1:${r.port}${path}`);
  return { status: res.status, body: await res.text() };
};
const metric = (text: string, line: string): number | undefined => {
  const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};
const lease = async () => JSON.parse(await env.kube.kubectlOk(['get', 'lease', 'sluice-controller', '-n', 'sluice-system', '-o', 'json'])).spec;
const apply = (name: string) => env.kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter(name, 'team-a', { url: server.url('/hello.wasm'), sha256: helloSha }) });

test.before(async () => {
  env = await startControllerCluster();
  server = await moduleServer();
  server.set('/hello.wasm', hello);
});

test.after.always(async () => {
  for (const r of replicas) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  await server?.close();
  await env?.kube.close();
});

test.serial('two replicas: one leads, both are healthy and ready, only the leader validates and writes', async (t) => {
  const a = await startReplica('replica-a');
  const b = await startReplica('replica-b');
  let spec: { holderIdentity?: string } = {};
  const deadline = Date.now() + 30_000;
  while (!spec.holderIdentity && Date.now() < deadline) {
    spec = await lease().catch(() => ({}));
    await new Promise((r) => setTimeout(r, 200));
  }
  t.true(['replica-a', 'replica-b'].includes(spec.holderIdentity!));
  const leader = spec.holderIdentity === 'replica-a' ? a : b;
  const follower = leader === a ? b : a;

  for (const r of [a, b]) {
    t.deepEqual(await get(r, '/healthz'), { status: 200, body: 'ok\n' });
    while ((await get(r, '/readyz')).status !== 200) await new Promise((res) => setTimeout(res, 100));
    t.deepEqual(await get(r, '/readyz'), { status: 200, body: 'ok\n' });
  }
  for (const name of ['one', 'two', 'three']) await apply(name);
  for (const name of ['one', 'two', 'three']) await waitValidated(env.kube, 'team-a', name, 'True');
  for (const name of ['one', 'two', 'three']) {
    const events = await eventsFor(env.kube, 'team-a', name);
    t.deepEqual(events.map((e) => [e.reason, e.reportingInstance]), [['Validated', leader.id]], `one Validated event for ${name}, from the leader`);
  }
  const lm = (await get(leader, '/metrics')).body;
  const fm = (await get(follower, '/metrics')).body;
  t.is(metric(lm, 'sluice_controller_leader'), 1);
  t.is(metric(fm, 'sluice_controller_leader'), 0);
  t.is(metric(lm, 'sluice_controller_status_writes_total'), 3);
  t.is(metric(fm, 'sluice_controller_status_writes_total'), undefined, 'the follower wrote nothing');
  t.is(metric(lm, 'sluice_controller_reconciles_total{result="validated"}'), 3);
  t.is(metric(fm, 'sluice_controller_wasmfilters'), 3, 'the follower keeps a warm cache');
  t.regex(lm, /^sluice_controller_queue_depth \d+$/m);
  t.regex(lm, /^# TYPE sluice_controller_reconcile_duration_seconds histogram$/m);
  t.is(metric(lm, 'sluice_controller_validation_duration_seconds_count'), 3);
  t.regex(lm, /^sluice_controller_reconcile_duration_seconds_bucket\{le="\+Inf"\} \d+$/m);
  for (const line of leader.stderr().trim().split('\n')) {
    const o = JSON.parse(line);
    t.true(typeof o.time === 'string' && typeof o.level === 'string' && typeof o.msg === 'string', line);
  }
  t.regex(leader.stderr(), /"msg":"became the leader"/);
  t.notRegex(follower.stderr(), /"msg":"became the leader"/);

  // Kill the leader: the follower takes the Lease once it has not been renewed for its duration.
  const killedAt = Date.now();
  leader.child.kill('SIGKILL');
  await leader.exited;
  await apply('four');
  const f = await waitValidated(env.kube, 'team-a', 'four', 'True', 60);
  const tookOver = Date.now() - killedAt;
  t.log(`took over and validated a new filter ${tookOver} ms after the leader was killed (lease ${LEASE_S} s)`);
  t.is(f.status!.digest, `sha256:${helloSha}`);
  const after = await lease();
  t.is(after.holderIdentity, follower.id);
  t.is(after.leaseTransitions, 1);
  t.deepEqual((await eventsFor(env.kube, 'team-a', 'four')).map((e) => [e.reason, e.reportingInstance]), [['Validated', follower.id]]);
  // The new leader re-checks every filter but writes none of those already validated.
  const nm = (await get(follower, '/metrics')).body;
  t.is(metric(nm, 'sluice_controller_status_writes_total'), 1);
  for (const name of ['one', 'two', 'three']) t.is((await eventsFor(env.kube, 'team-a', name)).length, 1);
  // Generous bound on a loaded machine; the Lease says 3 s.
  t.true(tookOver < (LEASE_S + 10) * 1000, `takeover took ${tookOver} ms`);

  // A replica stopped with SIGTERM gives the Lease up.
  follower.child.kill('SIGTERM');
  t.is(await follower.exited, 0);
  t.is((await lease()).holderIdentity, '');
});

test.serial('a leader that is paused (SIGSTOP) is replaced, and after SIGCONT it writes nothing', async (t) => {
  const c = await startReplica('replica-c');
  let holder = '';
  for (const deadline = Date.now() + 30_000; holder !== 'replica-c' && Date.now() < deadline; ) {
    holder = (await lease().catch(() => ({}))).holderIdentity ?? '';
    await new Promise((r) => setTimeout(r, 100));
  }
  t.is(holder, 'replica-c');
  const d = await startReplica('replica-d');
  while ((await get(d, '/readyz')).status !== 200) await new Promise((r) => setTimeout(r, 100));
  c.child.kill('SIGSTOP');
  await apply('five');
  await waitValidated(env.kube, 'team-a', 'five', 'True', 60);
  t.is((await lease()).holderIdentity, 'replica-d');
  c.child.kill('SIGCONT');
  await apply('six');
  await waitValidated(env.kube, 'team-a', 'six', 'True', 60);
  // c catches up with the watch events it missed while paused, and must leave them alone.
  while (metric((await get(c, '/metrics')).body, 'sluice_controller_wasmfilters') !== 6) await new Promise((r) => setTimeout(r, 100));
  const cm = (await get(c, '/metrics')).body;
  t.is(metric(cm, 'sluice_controller_leader'), 0);
  t.is(metric(cm, 'sluice_controller_status_writes_total'), undefined);
  for (const name of ['five', 'six']) t.deepEqual((await eventsFor(env.kube, 'team-a', name)).map((e) => [e.reason, e.reportingInstance]), [['Validated', 'replica-d']]);
});

test('bad flags and a bad kubeconfig: exit 1 with what to fix', async (t) => {
  const p = spawnSluice(['controller', '--lease-duration', 'soon']);
  t.is(await p.exited, 1);
  t.is(p.stderr(), 'sluice controller: SLUICE_ERR_CONTROLLER_FLAGS: --lease-duration must be a whole number from 1 to 3600, got "soon"\n');
  const l = spawnSluice(['controller', '--listen', 'localhost']);
  t.is(await l.exited, 1);
  t.is(l.stderr(), 'sluice controller: SLUICE_ERR_CONTROLLER_FLAGS: invalid listen address "localhost": give host:port or :port, e.g. :15014 or 127.0.0.1:0\n');
  const ca = spawnSluice(['controller', '--ca-secret', 'corp-ca']);
  t.is(await ca.exited, 1);
  t.is(ca.stderr(), 'sluice controller: SLUICE_ERR_CONTROLLER_FLAGS: --ca-secret must be namespace/name of a Secret with tls.crt, tls.key and ca.crt, e.g. sluice-system/sluice-intermediate, got "corp-ca"\n');
  const life = spawnSluice(['controller', '--svid-lifetime', '60']);
  t.is(await life.exited, 1);
  t.is(life.stderr(), 'sluice controller: SLUICE_ERR_CONTROLLER_FLAGS: --svid-lifetime must be a whole number from 600 to 31622400, got "60"\n');
  const q = spawnSluice(['controller', '--kubeconfig', '/nonexistent/kubeconfig']);
  t.is(await q.exited, 1);
  t.regex(q.stderr(), /^sluice controller: SLUICE_ERR_KUBECONFIG: cannot load the Kubernetes client configuration from \/nonexistent\/kubeconfig: ENOENT/);
});
