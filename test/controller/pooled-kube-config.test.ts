// The controller's API calls share kept-alive connections: a run of calls opens one TLS
// connection, where the client library alone opens one per call.

import test from 'ava';
import type { Socket } from 'node:net';
import { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../controller/controller.ts';
import { PooledKubeConfig } from '../../controller/kube/pooled-kube-config.ts';
import { startKube, type KubeCluster } from '../helpers/kube-apiserver.ts';

let kube: KubeCluster;

test.before(async () => {
  kube = await startKube();
});

test.after.always(async () => {
  await kube?.close();
});

/** The distinct sockets that carried `calls` sequential API calls through `kc`. */
async function socketsFor(kc: KubeConfig, calls: number): Promise<number> {
  const seen = new Set<Socket>();
  const original = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (context) => {
    await original(context);
    const agent = context.getAgent()!;
    const create = agent.createConnection.bind(agent) as (...args: unknown[]) => Socket;
    // Every connection the agent opens for this call is counted.
    (agent as { createConnection: unknown }).createConnection = (...args: unknown[]) => {
      const s = create(...args);
      seen.add(s);
      return s;
    };
  };
  const core = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < calls; i++) await core.readNamespace({ name: 'default' });
  return seen.size;
}

test('twenty calls: one connection with the pooled config, twenty without', async (t) => {
  const plain = new KubeConfig();
  plain.loadFromFile(kube.kubeconfig);
  t.is(await socketsFor(plain, 20), 20);
  const pooled = loadKubeConfig(kube.kubeconfig);
  t.true(pooled instanceof PooledKubeConfig);
  t.is(await socketsFor(pooled, 20), 1);
  (pooled as PooledKubeConfig).closeIdle();
});

test('a TokenReview through the pooled config is answered as through the plain one', async (t) => {
  // No controller-manager here: the ServiceAccount is made by hand.
  await kube.kubectlOk(['create', 'serviceaccount', 'probe', '-n', 'default']);
  const token = (await kube.kubectlOk(['create', 'token', 'probe', '-n', 'default', '--audience=sluice'])).trim();
  const review = (kc: KubeConfig) => kc.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['sluice'] } } });
  const plain = new KubeConfig();
  plain.loadFromFile(kube.kubeconfig);
  const pooled = loadKubeConfig(kube.kubeconfig) as PooledKubeConfig;
  const [a, b] = await Promise.all([review(plain), review(pooled)]);
  t.is(a.status?.user?.username, 'system:serviceaccount:default:probe');
  t.deepEqual(b.status, a.status);
  pooled.closeIdle();
});
