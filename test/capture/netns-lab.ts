// A small lab for capture's end-to-end tests: a "node" netns, "pod" netns wired to it by
// Debian's bridge + host-local CNI plugins with sluice-cni chained, invoked through libcni
// (build/cni/cni-run) as a container runtime would. Names are unique per run; `destroy()`
// removes every namespace, process and file it made.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureUnavailable } from '../../runtime/capture/index.ts';
import { NFT } from '../../runtime/capture/nft-rules.ts';
import { repoRoot } from '../helpers/fixtures.ts';

const CNI_BIN = join(repoRoot, 'build/cni');
const DEBIAN_CNI = '/usr/lib/cni';

/** Why the lab cannot run here, or undefined. */
export function labUnavailable(): string | undefined {
  const why = captureUnavailable();
  if (why) return why;
  for (const [file, hint] of [
    [join(CNI_BIN, 'sluice-cni'), 'npm run build needs Go to build the CNI plugin'],
    [join(CNI_BIN, 'cni-run'), 'npm run build needs Go to build the CNI test driver'],
    [join(DEBIAN_CNI, 'bridge'), 'apt-get install containernetworking-plugins'],
    [join(DEBIAN_CNI, 'host-local'), 'apt-get install containernetworking-plugins'],
  ]) {
    if (!existsSync(file)) return `${file} is missing (${hint})`;
  }
  for (const [cmd, pkg] of [[NFT, 'nftables'], ['ip', 'iproute2'], ['nsenter', 'util-linux']]) {
    if (spawnSync(cmd, ['--version'], { stdio: 'ignore' }).error) return `${cmd} is missing (apt-get install ${pkg})`;
  }
  return undefined;
}

/**
 * The `sluice run` config the capture tests run: the two capture listeners, each with a headers
 * filter that stamps `x-filtered: outbound|inbound` on the requests it passes.
 */
export function captureConfig(adminPort = 0): string {
  const headers = join(repoRoot, 'build/filters/headers.wasm');
  return `admin: { address: 127.0.0.1:${adminPort} }
listeners:
  # Captured HTTP runs the filters (and access log) of the listeners named like its direction.
  - name: capture-outbound
    address: 127.0.0.1:0
    protocol: http
    filters: [stamp-outbound]
    routes: [{ name: own, match: { prefix: / }, directResponse: { status: 404 } }]
  - name: capture-inbound
    address: 127.0.0.1:0
    protocol: http
    filters: [stamp-inbound]
    routes: [{ name: own, match: { prefix: / }, directResponse: { status: 404 } }]
filters:
  - name: stamp-outbound
    module: ${headers}
    config: { request: { add: [{ name: x-filtered, value: "outbound" }] } }
  - name: stamp-inbound
    module: ${headers}
    config: { request: { add: [{ name: x-filtered, value: "inbound" }] } }
`;
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...opts.env }, input: opts.input });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export function must(cmd: string, args: string[]): string {
  const r = sh(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface Pod {
  name: string;
  namespace: string;
  netns: string;
  netnsPath: string;
  containerId: string;
  ip?: string;
  ip6?: string;
}

export class Lab {
  readonly id = `${process.pid % 10000}${Math.random().toString(36).slice(2, 5)}`;
  readonly node = `sl-node-${this.id}`;
  readonly pods = new Map<string, Pod>();
  readonly children: ChildProcess[] = [];
  dir = '';
  conflist = '';
  socket = '';

  /** `subnet`, `subnet6`: the pods' networks (two labs side by side, as two nodes, need distinct ones). */
  constructor(readonly subnet = '10.248.0.0/24', readonly subnet6 = 'fd00:5c:e2e::/64') {}

  async create(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'sluice-capture-'));
    this.socket = join(this.dir, 'cni.sock');
    this.conflist = join(this.dir, 'net.conflist');
    must('ip', ['netns', 'add', this.node]);
    must('ip', ['-n', this.node, 'link', 'set', 'lo', 'up']);
    const conflist = {
      cniVersion: '1.0.0',
      name: `sluice-e2e-${this.id}`,
      plugins: [
        { type: 'bridge', bridge: `slbr${this.id}`, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: this.subnet }], [{ subnet: this.subnet6 }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }], dataDir: join(this.dir, 'ipam') } },
        { type: 'sluice-cni', proxySocket: this.socket, timeoutMs: 3000, excludeNamespaces: ['kube-system'], excludeOutboundPorts: [9999], capabilities: { 'io.kubernetes.cri.pod-annotations': true } },
      ],
    };
    await writeFile(this.conflist, JSON.stringify(conflist, null, 2));
  }

  pod(name: string, namespace = 'default'): Pod {
    let p = this.pods.get(name);
    if (!p) {
      const netns = `sl-${name}-${this.id}`;
      must('ip', ['netns', 'add', netns]);
      must('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
      p = { name, namespace, netns, netnsPath: `/var/run/netns/${netns}`, containerId: `ctr-${name}-${this.id}` };
      this.pods.set(name, p);
    }
    return p;
  }

  /** Runs one CNI command on the conflist from the node's netns; `annotations` go in runtimeConfig. */
  cni(command: 'add' | 'del' | 'check' | 'status' | 'gc', pod: Pod, annotations?: Record<string, string>): Run {
    const args = [
      'netns', 'exec', this.node, join(CNI_BIN, 'cni-run'), command, this.conflist, pod.netnsPath, pod.containerId,
      // As kubelet passes them: IgnoreUnknown lets plugins that read none of these accept them.
      `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name}`,
      annotations ? JSON.stringify({ 'io.kubernetes.cri.pod-annotations': annotations }) : '',
    ];
    return sh('ip', args, { env: { CNI_PATH: `${DEBIAN_CNI}:${CNI_BIN}`, CNI_CACHE_DIR: join(this.dir, 'cache') } });
  }

  /** A child process in a netns; resolves once its stdout or stderr has printed `ready`. */
  async spawnIn(netns: string, args: string[], ready: string | RegExp, ms = 20_000): Promise<ChildProcess & { output(): string }> {
    const child = spawn('ip', ['netns', 'exec', netns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(child);
    let output = '';
    const onData = (c: Buffer) => (output += c);
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const deadline = Date.now() + ms;
    while (!(typeof ready === 'string' ? output.includes(ready) : ready.test(output))) {
      if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited (${child.exitCode}): ${output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for "${ready}" from ${args.join(' ')}: ${output}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    return Object.assign(child, { output: () => output });
  }

  /** An HTTP server on 0.0.0.0:8080 in the pod that answers with the connection's addresses. */
  serve(pod: Pod): Promise<ChildProcess> {
    // Two HTTP servers, IPv4 and IPv6-only, so each family's peer address reads plainly, and an
    // h2c one (8082, prior knowledge, as gRPC speaks); a
    // client-first TCP server (9000: upper-cases a line) and a server-first one (9001: a banner).
    const script = `const h = (q, s) => s.end(JSON.stringify({ pod: ${JSON.stringify(pod.name)}, remote: q.socket.remoteAddress, local: q.socket.localAddress + ':' + q.socket.localPort, xff: q.headers['x-forwarded-for'], requestId: q.headers['x-request-id'] !== undefined, filters: q.headers['x-filtered'] })); const http = require('http'); const net = require('net');
      net.createServer((s) => s.on('data', (d) => s.end(d.toString().toUpperCase()))).listen(9000, '0.0.0.0');
      net.createServer((s) => s.end('220 ${pod.name} ready\\n')).listen(9001, '0.0.0.0');
      require('http2').createServer(h).listen(8082, '0.0.0.0');
      http.createServer(h).listen(8080, '0.0.0.0', () => http.createServer(h).listen({ port: 8080, host: '::', ipv6Only: true }, () => console.log('ready')))`;
    return this.spawnIn(pod.netns, [process.execPath, '-e', script], 'ready');
  }

  /** GET url from inside a netns with a fresh process; returns the parsed JSON body. */
  get(netns: string, url: string): Record<string, string | boolean> {
    const script = `require('http').get(process.argv[1], (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => console.log(b)); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
    const r = sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url]);
    if (r.status !== 0) throw new Error(`GET ${url} from ${netns} failed: ${r.stderr}`);
    try {
      return JSON.parse(r.stdout);
    } catch {
      throw new Error(`GET ${url} from ${netns}: not the test server's JSON: ${r.stdout}`);
    }
  }

  /** The capture API (unix sockets cross network namespaces). */
  api(method: string, path: string, body?: string): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, method, path }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(b) }));
      });
      req.on('error', reject).end(body);
    });
  }

  /** GET over h2c (prior knowledge) from inside a netns; returns the parsed JSON body. */
  h2get(netns: string, url: string): Record<string, string | boolean> {
    const script = `const c = require('http2').connect(process.argv[1]); const r = c.request({ ':path': new URL(process.argv[1]).pathname }); let b = ''; r.on('data', (d) => (b += d)).on('end', () => { console.log(b); c.close(); }); r.on('error', (e) => { console.error(e.message); process.exit(1); }); r.end();`;
    const r = sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url]);
    if (r.status !== 0) throw new Error(`h2c GET ${url} from ${netns} failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** A TCP exchange from inside a netns: connect, write `send` (if any), collect until the peer ends. */
  tcp(netns: string, host: string, port: number, send: string): string {
    const script = `const s = require('net').connect(${port}, '${host}', () => { if (${JSON.stringify(send)}) s.write(${JSON.stringify(send)}); }); let b = ''; s.on('data', (d) => (b += d)).on('end', () => process.stdout.write(b)).on('error', (e) => { console.log(e.code); });`;
    return sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script]).stdout;
  }

  /**
   * A client in `netns` making one HTTP GET of `url` per new connection (agent: false, Connection:
   * close), one after the other with 5 ms between them, until `stopFile` exists. Resolves once it
   * runs; `requestLoopResult` stops it and reads its counts.
   */
  requestLoop(netns: string, url: string, stopFile: string): Promise<ChildProcess & { output(): string }> {
    const script = `const http = require('http'); const fs = require('fs');
      const r = { ok: 0, failed: 0, codes: {}, filters: {}, bodies: [] };
      const fail = (code) => { r.failed++; r.codes[code] = (r.codes[code] ?? 0) + 1; };
      const one = () => new Promise((resolve) => {
        const req = http.get(process.argv[1], { agent: false, headers: { connection: 'close' } }, (res) => {
          let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => {
            if (res.statusCode !== 200) { fail('HTTP ' + res.statusCode); if (r.bodies.length < 3) r.bodies.push(b.slice(0, 300)); }
            else { r.ok++; let f; try { f = String(JSON.parse(b).filters); } catch { f = 'not JSON'; } r.filters[f] = (r.filters[f] ?? 0) + 1; }
            resolve();
          });
          res.on('error', (e) => { fail(e.code ?? e.message); resolve(); });
        });
        req.on('error', (e) => { fail(e.code ?? e.message); resolve(); });
        req.setTimeout(10000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      });
      (async () => { console.log('started'); while (!fs.existsSync(process.argv[2])) { await one(); await new Promise((x) => setTimeout(x, 5)); } console.log('result ' + JSON.stringify(r)); })();`;
    return this.spawnIn(netns, [process.execPath, '-e', script, url, stopFile], 'started');
  }

  /** Stops a requestLoop and returns its counts: answers 200 by their `filters` field, failures by code. */
  async requestLoopResult(client: ChildProcess & { output(): string }, stopFile: string): Promise<{ ok: number; failed: number; codes: Record<string, number>; filters: Record<string, number>; bodies: string[] }> {
    await writeFile(stopFile, '');
    const deadline = Date.now() + 20_000;
    let line: string | undefined;
    while (!(line = /^result (.*)$/m.exec(client.output())?.[1])) {
      if (Date.now() > deadline) throw new Error(`the request loop did not report; it said: ${client.output()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    return JSON.parse(line);
  }

  nft(pod: Pod, ...args: string[]): Run {
    return sh('ip', ['netns', 'exec', pod.netns, NFT, ...args]);
  }

  async destroy(): Promise<void> {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await new Promise((r) => c.once('exit', r));
      }
    }
    for (const p of this.pods.values()) sh('ip', ['netns', 'del', p.netns]);
    sh('ip', ['netns', 'del', this.node]);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
