// Two "nodes" for the tunnel's end-to-end test and bench (root): two netns labs (netns-lab.ts)
// joined by a veth link with routes to each other's pod network, each with a node proxy, capture
// and the tunnel run by node-driver.ts, holding identities given by the caller (tunnel-pki.ts).
// `destroy()` stops the drivers and removes every namespace, process and file.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Lab, must, type Pod } from '../capture/netns-lab.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import type { IdentityStore } from '../../runtime/index.ts';

/** The link's addresses: node 1's and node 2's ends. */
export const LINK = { n1: '192.168.250.1', n2: '192.168.250.2' };
export const POD_NETS = { n1: '10.249.1.0/24', n2: '10.249.2.0/24' };

export interface Node {
  lab: Lab;
  driver?: ChildProcess & { output(): string };
  /** The node proxy's config file (node-driver.ts applies it again on `reload()`). */
  config: string;
}

export interface TwoNodes {
  n1: Node;
  n2: Node;
  /** The veth pair's name prefix: `${veth}a` in node 1, `${veth}b` in node 2. */
  veth: string;
  destroy(): Promise<void>;
}

/** A listener/workload config for a node (what discovery would give it). */
export interface NodeConfigOptions {
  /** Filters of the capture listeners (and of every workload listed). */
  outbound?: string[];
  inbound?: string[];
  /** Filter definitions ({ name, module, config }). */
  filters?: unknown[];
  /** This node's captured workloads and their identities. */
  workloads?: Array<[Pod, string]>;
  /** Pods on other nodes: identity and the tunnel address (host:port) of their node. */
  remote?: Array<[Pod, string, string]>;
}

export function nodeConfig(o: NodeConfigOptions = {}): string {
  const outbound = o.outbound ?? [];
  const inbound = o.inbound ?? [];
  const remote = o.remote ?? [];
  return JSON.stringify({
    admin: { address: '127.0.0.1:0' },
    listeners: [
      { name: 'capture-outbound', address: '127.0.0.1:0', protocol: 'http', filters: outbound, routes: [{ name: 'own', directResponse: { status: 404 } }] },
      { name: 'capture-inbound', address: '127.0.0.1:0', protocol: 'http', filters: inbound, routes: [{ name: 'own', directResponse: { status: 404 } }] },
    ],
    filters: o.filters ?? [],
    // Each workload runs the filters selected for it (as discovery lists them): here, the listeners'.
    workloads: (o.workloads ?? []).map(([p, identity]) => ({ namespace: p.namespace, name: p.name, identity, addresses: [p.ip, p.ip6], filters: { outbound, inbound } })),
    ...(remote.length ? { tunnel: { remoteWorkloads: remote.map(([p, identity, tunnel]) => ({ namespace: p.namespace, name: p.name, identity, addresses: [p.ip, p.ip6], tunnel })) } } : {}),
  });
}

/** Both nodes' namespaces (with an empty proxy config each) and the link between them; no driver yet. */
export async function twoNodes(): Promise<TwoNodes> {
  const n1: Node = { lab: new Lab(POD_NETS.n1, 'fd00:5c:e31::/64'), config: '' };
  const n2: Node = { lab: new Lab(POD_NETS.n2, 'fd00:5c:e32::/64'), config: '' };
  const nodes = { n1, n2, veth: `slt${n1.lab.id}`, destroy: () => destroy([n1, n2]) };
  try {
    for (const n of [n1, n2]) {
      await n.lab.create();
      n.config = join(n.lab.dir, 'sluice.json');
      await writeFile(n.config, nodeConfig());
      must('ip', ['netns', 'exec', n.lab.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    }
    // The link between the nodes, and routes to each other's pod network over it.
    const veth = nodes.veth;
    must('ip', ['-n', n1.lab.node, 'link', 'add', `${veth}a`, 'type', 'veth', 'peer', 'name', `${veth}b`, 'netns', n2.lab.node]);
    must('ip', ['-n', n1.lab.node, 'addr', 'add', `${LINK.n1}/30`, 'dev', `${veth}a`]);
    must('ip', ['-n', n2.lab.node, 'addr', 'add', `${LINK.n2}/30`, 'dev', `${veth}b`]);
    must('ip', ['-n', n1.lab.node, 'link', 'set', `${veth}a`, 'up']);
    must('ip', ['-n', n2.lab.node, 'link', 'set', `${veth}b`, 'up']);
    must('ip', ['-n', n1.lab.node, 'route', 'add', POD_NETS.n2, 'via', LINK.n2]);
    must('ip', ['-n', n2.lab.node, 'route', 'add', POD_NETS.n1, 'via', LINK.n1]);
  } catch (error) {
    await nodes.destroy();
    throw error;
  }
  return nodes;
}

async function destroy(nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    if (n.driver && n.driver.exitCode === null && n.driver.signalCode === null) {
      n.driver.kill('SIGTERM');
      await Promise.race([new Promise((r) => n.driver!.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
    }
    await n.lab.destroy();
  }
}

/** Starts the node's proxy + capture + tunnel in its netns with the identities in `store`; resolves once it is ready. */
/** `nodeArgs`: extra node flags (e.g. `--cpu-prof`). */
export async function startDriver(n: Node, store: IdentityStore, nodeArgs: string[] = []): Promise<void> {
  const args = join(n.lab.dir, 'driver.json');
  await writeFile(args, JSON.stringify({
    config: n.config,
    moduleDir: repoRoot,
    socket: n.lab.socket,
    tunnelListen: '0.0.0.0:15008',
    trustBundle: store.trustBundle(),
    identities: store.ids().map((id) => ({ ...store.get(id)!, notAfter: store.get(id)!.notAfter.toISOString() })),
  }));
  // `ip netns exec` execs the command: the child's pid is the driver's node process.
  const child = spawn('ip', ['netns', 'exec', n.lab.node, process.execPath, ...nodeArgs, '--import=tsx', join(repoRoot, 'test/tunnel/node-driver.ts'), args], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
  n.lab.children.push(child);
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  n.driver = Object.assign(child, { output: () => output });
  await waitFor(n, 'ready');
}

export async function waitFor(n: Node, text: string, from = 0): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!n.driver!.output().slice(from).includes(text)) {
    if (n.driver!.exitCode !== null) throw new Error(`node driver exited (${n.driver!.exitCode}): ${n.driver!.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for "${text}" from the node driver: ${n.driver!.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Writes `config` (if given) and has the node's driver apply it. */
export async function reload(n: Node, config?: string): Promise<void> {
  if (config !== undefined) await writeFile(n.config, config);
  const from = n.driver!.output().length;
  n.driver!.stdin!.write('reload\n');
  await waitFor(n, 'reloaded', from);
}

const ipOf = (addResult: string, v6 = false) => (JSON.parse(addResult).ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]).find((a) => a.includes(':') === v6)!;

/** CNI ADD of `p` on `lab` (with pod annotations, e.g. `sluice.dev/capture: disabled`), its addresses, and a route to the other node's pods. */
export function addPod(lab: Lab, p: Pod, annotations?: Record<string, string>): void {
  const r = lab.cni('add', p, annotations);
  if (r.status !== 0) throw new Error(`CNI ADD ${p.name}: ${r.stdout}${r.stderr}`);
  p.ip = ipOf(r.stdout);
  p.ip6 = ipOf(r.stdout, true);
  // The lab's IPAM gives no default route: the other node's pod network is reached via this node (the bridge's gateway).
  must('ip', ['-n', p.netns, 'route', 'add', '10.249.0.0/16', 'via', p.ip.replace(/\.\d+$/, '.1')]);
}
