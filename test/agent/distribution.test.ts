// Distribution end to end against a real kube-apiserver: the controller's gRPC service (run as the
// controller's own ServiceAccount) feeds an in-process NodeAgent and a real `sluice run
// --controller` process with a config holding the built headers filter; versions, ACK/NACK,
// refusals of tokens, a cut stream, and a restart while the controller is down. Plaintext
// (--grpc-plaintext): TLS and identities are test/agent/identity.test.ts's.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { Controller, StaticNodeConfigSource, silentLogger, type NodeConfig } from '../../controller/index.ts';
import { distributionProtocol, NodeAgent } from '../../runtime/index.ts';
import { hasK8sBinaries, resignedToken } from '../helpers/kube-apiserver.ts';
import { modules, sha256, startControllerCluster, type ControllerCluster } from '../helpers/controller-env.ts';
import { echoUpstream, spawnSluice, until, type EchoUpstream } from '../helpers/sluice-run.ts';

const headersWasm = modules.headers();
const headersSha = sha256(headersWasm);

function nodeConfig(version: string, value: string, echoPort: number): NodeConfig {
  const config = {
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'ingress', address: '127.0.0.1:0', protocol: 'http', filters: ['headers'], routes: [{ name: 'all', cluster: 'echo' }] }],
    clusters: [{ name: 'echo', endpoints: [`127.0.0.1:${echoPort}`] }],
    filters: [{ name: 'headers', module: `${headersSha}.wasm`, config: { request: { set: [{ name: 'x-sluice-version', value }] } } }],
  };
  return { version, config: JSON.stringify(config), modules: new Map([[headersSha, headersWasm]]) };
}

interface Ctx {
  cluster: ControllerCluster;
  controller: Controller;
  source: StaticNodeConfigSource;
  echo: EchoUpstream;
  dir: string;
  tokens: Record<string, string>;
  agentA?: NodeAgent;
  procB?: ReturnType<typeof spawnSluice>;
}
const ctx = {} as Ctx;

async function seen(port: number): Promise<string | undefined> {
  const r = await fetch(`http://127.0.0.1:${port}/x`);
  const body = (await r.json()) as { headers: Record<string, string> };
  return body.headers['x-sluice-version'];
}

const portB = () => Number(/ingress listening on [^:]+:(\d+)/.exec(ctx.procB!.stderr())?.[1]);

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  ctx.cluster = await startControllerCluster();
  const k = ctx.cluster.kube;
  await k.kubectlOk(['create', 'serviceaccount', 'other', '-n', 'sluice-system']);
  const pod = (name: string, node: string, sa: string) =>
    JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'sluice-system' }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'sluice', image: 'sluice:test' }] } });
  for (const [name, node, sa] of [['agent-a', 'node-a', 'sluice-node'], ['agent-b', 'node-b', 'sluice-node'], ['other-a', 'node-a', 'other']]) {
    await k.kubectlOk(['apply', '-f', '-'], { input: pod(name!, node!, sa!) });
  }
  const token = async (sa: string, pod: string, audience = 'sluice') =>
    (await k.kubectlOk(['create', 'token', sa, '-n', 'sluice-system', `--audience=${audience}`, '--bound-object-kind=Pod', `--bound-object-name=${pod}`, '--duration=3600s'])).trim();
  ctx.tokens = { a: await token('sluice-node', 'agent-a'), b: await token('sluice-node', 'agent-b'), other: await token('other', 'other-a'), wrongAudience: await token('sluice-node', 'agent-a', 'https://kubernetes.default.svc.cluster.local') };
  ctx.dir = await mkdtemp(join(tmpdir(), 'sluice-dist-'));
  for (const [n, t] of Object.entries(ctx.tokens)) await writeFile(join(ctx.dir, `token-${n}`), t);
  ctx.echo = await echoUpstream();
  ctx.source = new StaticNodeConfigSource();
  ctx.controller = new Controller({ kubeconfig: ctx.cluster.controllerKubeconfig, listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', grpcPlaintext: true, nodeConfigSource: ctx.source, log: silentLogger });
  await ctx.controller.start();
});

test.after.always(async () => {
  await ctx.agentA?.stop();
  if (ctx.procB && ctx.procB.child.exitCode === null) {
    ctx.procB.child.kill('SIGKILL');
    await ctx.procB.exited;
  }
  await ctx.controller?.stop();
  await ctx.echo?.close();
  await ctx.cluster?.kube.close();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

const address = () => `127.0.0.1:${ctx.controller.distributionPort}`;
const record = (node: string) => ctx.controller.distribution.nodes().get(node);

test.serial('two agents (one a real sluice run --controller) get the config and its module; traffic shows the filter; both ACK', async (t) => {
  ctx.source.set('node-a', nodeConfig('v1', 'one', ctx.echo.port));
  ctx.source.set('node-b', nodeConfig('v1', 'one', ctx.echo.port));
  ctx.agentA = new NodeAgent({ controller: address(), tokenFile: join(ctx.dir, 'token-a'), nodeName: 'node-a', stateDir: join(ctx.dir, 'state-a'), controllerPlaintext: true, minBackoffMs: 50, maxBackoffMs: 200, log: () => {} });
  await ctx.agentA.start();
  ctx.procB = spawnSluice(['run', '--controller', address(), '--node-name', 'node-b', '--token-file', join(ctx.dir, 'token-b'), '--state-dir', join(ctx.dir, 'state-b'), '--controller-plaintext', '--admin-address', '127.0.0.1:0', '--drain-ms', '0']);
  await until('both nodes ACK v1', () => (record('node-a')?.acked && record('node-b')?.acked ? true : undefined), 30_000);
  t.like(record('node-a'), { version: 'v1', acked: true, connected: true, nackReason: undefined });
  t.like(record('node-b'), { version: 'v1', acked: true, connected: true, nackReason: undefined });
  t.is(ctx.controller.distribution.modulesSent, 2);
  t.is(await seen(ctx.agentA.proxy!.addresses().ingress!.port), 'one');
  await until('node-b listening', () => portB() || undefined);
  t.is(await seen(portB()), 'one');
});

test.serial('a change reaches both nodes, they ACK the new version, and the module is not sent again', async (t) => {
  ctx.source.set('node-a', nodeConfig('v2', 'two', ctx.echo.port));
  ctx.source.set('node-b', nodeConfig('v2', 'two', ctx.echo.port));
  await until('both nodes ACK v2', () => (record('node-a')?.version === 'v2' && record('node-a')?.acked && record('node-b')?.version === 'v2' && record('node-b')?.acked ? true : undefined), 30_000);
  t.is(ctx.controller.distribution.modulesSent, 2);
  t.is(await seen(ctx.agentA!.proxy!.addresses().ingress!.port), 'two');
  t.is(await seen(portB()), 'two');
});

test.serial('a config the filter refuses is NACKed with the reason; the node keeps serving the last good one', async (t) => {
  ctx.source.set('node-b', nodeConfig('v3-bad', '%NO_SUCH_VARIABLE%', ctx.echo.port));
  await until('node-b answers v3-bad', () => (record('node-b')?.version === 'v3-bad' && record('node-b')?.nackReason ? true : undefined), 30_000);
  const r = record('node-b')!;
  t.is(r.acked, false);
  t.regex(r.nackReason!, /NO_SUCH_VARIABLE/);
  t.is(await seen(portB()), 'two');
  // A text the loader refuses is NACKed too, with the loader's problem.
  ctx.source.set('node-a', { version: 'v3-broken', config: '{"listeners": 7}', modules: new Map() });
  await until('node-a answers v3-broken', () => (record('node-a')?.version === 'v3-broken' && record('node-a')?.nackReason ? true : undefined), 30_000);
  t.regex(record('node-a')!.nackReason!, /controller snapshot v3-broken: invalid configuration:[\s\S]*listeners/);
  t.is(ctx.agentA!.version, 'v2');
  t.is(await seen(ctx.agentA!.proxy!.addresses().ingress!.port), 'two');
});

async function hello(token: string, nodeName: string): Promise<ServiceError> {
  const { client } = distributionProtocol();
  const c = new client(address(), credentials.createInsecure());
  try {
    const stream = c.Stream(new Metadata());
    const ended = new Promise<ServiceError>((resolve, reject) => {
      stream.on('error', resolve);
      stream.on('data', () => reject(new Error('the controller sent data to a refused agent')));
    });
    stream.write({ hello: { nodeName, token, haveModules: [], lastVersion: '' } });
    return await ended;
  } finally {
    c.close();
  }
}

test.serial('tokens of another node, of a non-Sluice ServiceAccount, for another audience, expired, or none are refused', async (t) => {
  const other = await hello(ctx.tokens.b!, 'node-a');
  t.is(other.code, GrpcStatus.PERMISSION_DENIED);
  t.is(other.details, 'token is bound to Pod sluice-system/agent-b on node node-b, not on node node-a');
  const sa = await hello(ctx.tokens.other!, 'node-a');
  t.is(sa.code, GrpcStatus.PERMISSION_DENIED);
  t.is(sa.details, 'token of system:serviceaccount:sluice-system:other is not the node agent\'s ServiceAccount sluice-system/sluice-node');
  const aud = await hello(ctx.tokens.wrongAudience!, 'node-a');
  t.is(aud.code, GrpcStatus.UNAUTHENTICATED);
  t.regex(aud.details, /^token refused by the API server.*audience "sluice"$/);
  // Node a's own token, expired ten minutes ago (past the API server's leeway), signed with the cluster's key.
  const now = Math.floor(Date.now() / 1000);
  const expired = await hello(await resignedToken(ctx.cluster.kube, ctx.tokens.a!, { iat: now - 1800, nbf: now - 1800, exp: now - 600 }), 'node-a');
  t.is(expired.code, GrpcStatus.UNAUTHENTICATED);
  t.regex(expired.details, /^token refused by the API server \(.*expired.*\): it must be a valid, unexpired ServiceAccount token with audience "sluice"$/);
  // The same claims with a fresh expiry pass: what was refused is the expiry, not the re-signing.
  const fresh = await hello(await resignedToken(ctx.cluster.kube, ctx.tokens.a!, { iat: now - 60, nbf: now - 60, exp: now + 600 }), 'node-b');
  t.is(fresh.details, 'token is bound to Pod sluice-system/agent-a on node node-a, not on node node-b');
  const none = await hello('', 'node-a');
  t.is(none.code, GrpcStatus.UNAUTHENTICATED);
  t.is(ctx.source.watching('node-a'), 1);
});

test.serial('a stream cut by the controller: the agent reconnects and resumes without the module being sent again', async (t) => {
  ctx.source.set('node-a', nodeConfig('v4', 'four', ctx.echo.port));
  await until('node-a ACKs v4', () => (record('node-a')?.version === 'v4' && record('node-a')?.acked ? true : undefined), 30_000);
  const before = ctx.agentA!.connections;
  ctx.controller.distribution.disconnect('node-a');
  await until('node-a reconnects', () => (ctx.agentA!.connections > before && record('node-a')?.connected ? true : undefined), 30_000);
  t.like(record('node-a'), { version: 'v4', acked: true, connected: true, nackReason: undefined });
  t.is(ctx.controller.distribution.modulesSent, 2);
  ctx.source.set('node-a', nodeConfig('v5', 'five', ctx.echo.port));
  await until('node-a ACKs v5', () => (record('node-a')?.version === 'v5' && record('node-a')?.acked ? true : undefined), 30_000);
  t.is(await seen(ctx.agentA!.proxy!.addresses().ingress!.port), 'five');
  t.is(ctx.controller.distribution.modulesSent, 2);
});

test.serial('an agent restarted while the controller is down serves the last good config from disk', async (t) => {
  await ctx.agentA!.stop();
  ctx.agentA = undefined;
  await ctx.controller.stop();
  const restarted = new NodeAgent({ controller: address(), tokenFile: join(ctx.dir, 'token-a'), nodeName: 'node-a', stateDir: join(ctx.dir, 'state-a'), controllerPlaintext: true, minBackoffMs: 50, maxBackoffMs: 200, log: () => {} });
  ctx.agentA = restarted;
  await restarted.start();
  t.is(restarted.version, 'v5');
  t.is(await seen(restarted.proxy!.addresses().ingress!.port), 'five');
  // The real process too: killed, started again against the stopped controller.
  ctx.procB!.child.kill('SIGKILL');
  await ctx.procB!.exited;
  ctx.procB = spawnSluice(['run', '--controller', address(), '--node-name', 'node-b', '--token-file', join(ctx.dir, 'token-b'), '--state-dir', join(ctx.dir, 'state-b'), '--controller-plaintext', '--admin-address', '127.0.0.1:0', '--drain-ms', '0']);
  await until(`node-b serving from disk; it said:\n${ctx.procB.stderr()}`, () => portB() || undefined, 30_000);
  // Listening is said while the config is applied, the source of it just after: wait for it.
  await until(`node-b to say it serves from disk; it said:\n${ctx.procB.stderr()}`, () => /serving the last good config from disk \(version v2\)/.test(ctx.procB!.stderr()) || undefined);
  t.is(await seen(portB()), 'two');
});
