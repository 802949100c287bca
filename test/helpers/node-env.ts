// Node status and rollout tests share this: a real API server (controller-env.ts) with, per node,
// the agent's host-network Pod (whose bound token the agent presents) and a workload Pod labelled
// app=web; ConfigMaps holding the headers and misbehave modules; controllers run in-process with
// discovery and plaintext gRPC, and in-process node agents (runtime/agent) with their own state
// directories. Everything started is stopped by close().
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, silentLogger, type ControllerOptions } from '../../controller/index.ts';
import { NodeAgent } from '../../runtime/index.ts';
import { startControllerCluster, type ControllerCluster } from './controller-env.ts';
import { filterWasm, fixture } from './fixtures.ts';

export interface NodeEnv {
  cluster: ControllerCluster;
  dir: string;
  controllers: Controller[];
  agents: Map<string, NodeAgent>;
  /** Starts a controller replica (stopped by close()). */
  controller(extra?: Partial<ControllerOptions>): Promise<Controller>;
  /** Starts the agent of `node` against `controller`. */
  agent(node: string, controller: Controller): Promise<NodeAgent>;
  stateDir(node: string): string;
  close(): Promise<void>;
}

export async function startNodeEnv(nodes: readonly string[]): Promise<NodeEnv> {
  const cluster = await startControllerCluster();
  const k = cluster.kube;
  const dir = await mkdtemp(join(tmpdir(), 'sluice-nodes-'));
  const controllers: Controller[] = [];
  const agents = new Map<string, NodeAgent>();
  const env: NodeEnv = {
    cluster,
    dir,
    controllers,
    agents,
    stateDir: (node) => join(dir, `state-${node}`),
    async controller(extra = {}) {
      const c = new Controller({
        kubeconfig: cluster.controllerKubeconfig,
        listen: '127.0.0.1:0',
        grpcListen: '127.0.0.1:0',
        grpcPlaintext: true,
        log: silentLogger,
        reportIntervalMs: 100,
        reportHeartbeatMs: 500,
        minWatchBackoffMs: 100,
        ...extra,
      });
      controllers.push(c);
      await c.start();
      return c;
    },
    async agent(node, controller) {
      const a = new NodeAgent({
        controller: `127.0.0.1:${controller.distributionPort}`,
        controllerPlaintext: true,
        tokenFile: join(dir, `token-${node}`),
        nodeName: node,
        stateDir: env.stateDir(node),
        adminAddress: '127.0.0.1:0',
        healthIntervalMs: 100,
        minBackoffMs: 50,
        maxBackoffMs: 500,
        log: () => {},
      });
      agents.set(node, a);
      await a.start();
      return a;
    },
    async close() {
      for (const a of agents.values()) await a.stop();
      for (const c of controllers) await c.stop();
      await cluster.kube.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    const apply = (o: object) => k.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(o) });
    const pod = (namespace: string, name: string, node: string, labels: Record<string, string>, extra: object) =>
      apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels }, spec: { nodeName: node, containers: [{ name: 'c', image: 'example:test' }], ...extra } });
    await k.kubectlOk(['create', 'serviceaccount', 'web', '-n', 'team-a']);
    for (const node of nodes) {
      await pod('sluice-system', `agent-${node}`, node, { app: 'sluice' }, { serviceAccountName: 'sluice-node', hostNetwork: true });
      await pod('team-a', `web-${node}`, node, { app: 'web' }, { serviceAccountName: 'web' });
      const token = await k.kubectlOk(['create', 'token', 'sluice-node', '-n', 'sluice-system', '--audience=sluice', '--bound-object-kind=Pod', `--bound-object-name=agent-${node}`, '--duration=3600s']);
      await writeFile(join(dir, `token-${node}`), token.trim());
    }
    await k.kubectlOk(['create', 'configmap', 'headers-module', '-n', 'team-a', `--from-file=filter.wasm=${filterWasm('headers')}`]);
    await k.kubectlOk(['create', 'configmap', 'misbehave-module', '-n', 'team-a', `--from-file=filter.wasm=${fixture('containment/misbehave')}`]);
  } catch (error) {
    await env.close();
    throw error;
  }
  return env;
}

/** The leader among `controllers`, once one leads. */
export function leaderOf(controllers: readonly Controller[]): Controller | undefined {
  return controllers.find((c) => c.elector.isLeader);
}
