// The node proxy's capture API, served on a unix socket for the CNI plugin (runtime/cni): pod
// add (listeners in the pod's netns, then its redirect rules), del, check, gc, ready. JSON over
// HTTP/1.1, so `curl --unix-socket` can debug it. Captured pods are recorded in `pods/` beside the
// socket, so a restarted proxy takes them over again.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { SluiceError } from '../errors.ts';
import { CaptureHttp, type ProxyParts } from './capture-http.ts';
import { loadAddon, type CaptureAddon } from './addon.ts';
import { checkRules, installRules, removeRules, type Exclusions, type Family } from './nft-rules.ts';
import { describe, PodListeners, type CaptureParts, type PodIdentity } from './pod-listeners.ts';
import type { LogLevelName } from '../log.ts';
import type { TunnelClient, TunnelRequest } from '../tunnel/index.ts';
import { captureTunnel } from './tunnel-routes.ts';

/** The node-to-node tunnel for captured pods: its client, and this node's own tunnel (same-node traffic goes through it too). */
export interface CaptureTunnelOptions {
  client: TunnelClient;
  /** host:port the proxy reaches its own TunnelServer at; absent: same-node traffic goes directly. */
  local?: { host: string; port: number };
}

type Log = (level: LogLevelName, msg: string, extra?: Record<string, unknown>) => void;

interface PodRequest extends PodIdentity {
  readonly ips: readonly string[];
  readonly gateways: readonly string[];
  readonly exclude: Exclusions;
}

const MAX_BODY = 64 * 1024;
/** The CNI spec's container ID: alphanumerics, underscore, dot, hyphen (also safe as a file name). */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export class CaptureServer {
  private readonly pods = new Map<string, PodListeners>();
  /** Captured connections and their upstreams, destroyed on stop. */
  private readonly sockets = new Set<Socket>();
  private readonly http: HttpServer;
  /** Pod operations run one at a time: an ADD and a DEL of one pod never interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  private readonly stateDir: string;
  private readonly parts: CaptureParts;
  /** The socket this proxy listens on; `socketPath` is a symlink to it (see start()). */
  private readonly ownPath: string;
  /** Re-creates the symlink when it vanished (an older proxy unlinked the path on exit). */
  private linkKeeper?: NodeJS.Timeout;
  /** Pods whose ports a proxy that does not share them still holds: taken over when it exits. */
  private readonly retries = new Set<NodeJS.Timeout>();
  private stopped = false;

  private constructor(
    readonly socketPath: string,
    private readonly addon: CaptureAddon,
    proxy: ProxyParts,
    private readonly log: Log,
    tunnel?: CaptureTunnelOptions,
  ) {
    this.parts = {
      telemetry: proxy.telemetry,
      env: proxy.env,
      http: new CaptureHttp(proxy, this.sockets),
      serviceAt: proxy.serviceAt?.bind(proxy),
      workloadChain: proxy.workloadChain?.bind(proxy),
      get snapshot() {
        return proxy.snapshot;
      },
      ...(tunnel ? { tunnel: captureTunnel(tunnel.client, () => proxy.snapshot, tunnel.local && { address: tunnel.local, captured: (ip) => this.podAt(ip) !== undefined }) } : {}),
    };
    this.http = createServer((req, res) => void this.handle(req, res));
    this.stateDir = join(dirname(socketPath), 'pods');
    this.ownPath = `${socketPath}.${randomBytes(4).toString('hex')}`;
  }

  /**
   * Listens on `socketPath` (replacing a stale socket file); fails when capture cannot run here.
   * With `tunnel`, connections to pods on other nodes go through it (the snapshot says which),
   * and with `tunnel.local` those to this node's captured pods too.
   */
  static async start(socketPath: string, proxy: ProxyParts, log: Log, tunnel?: CaptureTunnelOptions): Promise<CaptureServer> {
    const server = new CaptureServer(socketPath, loadAddon(), proxy, log, tunnel);
    await mkdir(dirname(socketPath), { recursive: true });
    // The socket has a name of its own and `socketPath` links to it: Node unlinks a unix socket's
    // path when its server closes, so an old proxy exiting during an upgrade removes only its own
    // socket, never the link the new proxy put in its place (docs/operations.md#upgrade).
    await new Promise<void>((resolve, reject) => {
      server.http.once('error', reject);
      server.http.listen(server.ownPath, () => resolve());
    });
    await chmod(server.ownPath, 0o600);
    await server.serial(() => server.restore());
    // The plugin's requests come here from now on; an old proxy keeps the connections it has.
    await server.link();
    await removeDeadSockets(socketPath, server.ownPath);
    server.linkKeeper = setInterval(() => void server.keepLink(), 1000).unref();
    log('info', `capture: CNI API listening on ${socketPath} (-> ${basename(server.ownPath)})`);
    return server;
  }

  /** Whether a proxy answers on `socketPath` now (another one on this node: an upgrade in progress). */
  static running(socketPath: string): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const s = connect(socketPath);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  }

  /** Points `socketPath` at this proxy's socket, atomically (a socket file or an older link is replaced). */
  private async link(): Promise<void> {
    const tmp = `${this.ownPath}.link`;
    await rm(tmp, { force: true });
    await symlink(basename(this.ownPath), tmp);
    await rename(tmp, this.socketPath);
  }

  /**
   * An older proxy (one that listened on `socketPath` itself) unlinks it when it exits: the link
   * is put back. A link to another proxy's socket is left alone while that one answers (it is
   * newer); one that stopped answering (it died) is taken back.
   */
  private async keepLink(): Promise<void> {
    if (this.stopped) return;
    const target = await readlink(this.socketPath).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : ''));
    if (target === basename(this.ownPath)) return;
    let why: string;
    if (target === undefined) why = 'had vanished (an older proxy exited)';
    else if (target !== '' && !(await CaptureServer.running(this.socketPath))) why = `led to ${target}, where no proxy answers`;
    else return;
    if (this.stopped) return;
    try {
      await this.link();
      this.log('warn', `capture: ${this.socketPath} ${why}; linked to this proxy again`);
    } catch (error) {
      this.log('error', `capture: cannot link ${this.socketPath} to ${this.ownPath}`, { error: (error as Error).message });
    }
  }

  /**
   * Takes over the pods a previous run captured: their rules are still in place (redirecting to
   * nothing, so their connections were refused meanwhile); their listeners are opened again and
   * the rules re-installed. Pods whose netns is gone are forgotten.
   */
  private async restore(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    for (const file of await readdir(this.stateDir)) {
      if (!file.endsWith('.json')) continue;
      const path = join(this.stateDir, file);
      try {
        const pod = podRequest(JSON.parse(await readFile(path, 'utf8')), true);
        if (!existsSync(pod.netns)) {
          await rm(path, { force: true });
          this.log('info', `capture: ${describe(pod)} is gone (no ${pod.netns}); forgotten`);
          continue;
        }
        await this.add(pod);
      } catch (error) {
        const e = error as SluiceError;
        if (heldByOlderProxy(e)) {
          this.log('warn', `capture: another proxy holds ${describe(JSON.parse(await readFile(path, 'utf8')))}'s capture ports without sharing them (an older version); taking the pod over once it exits`, { error: e.message });
          this.retryTakeOver(path);
          continue;
        }
        this.log('error', `capture: cannot take over the pod recorded in ${path}; its traffic stays refused until it is recreated`, { code: e.code, error: e.message });
      }
    }
  }

  /** Tries the pod recorded in `path` again in a second, until it is captured, gone, or the proxy stops. */
  private retryTakeOver(path: string): void {
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      void this.serial(async () => {
        if (this.stopped || !existsSync(path)) return;
        const pod = podRequest(JSON.parse(await readFile(path, 'utf8')), true);
        if (this.pods.has(pod.containerId) || !existsSync(pod.netns)) return;
        try {
          await this.add(pod);
        } catch (error) {
          if (!heldByOlderProxy(error)) throw error;
          this.retryTakeOver(path);
        }
      }).catch((error: Error & { code?: string }) => this.log('error', `capture: cannot take over the pod recorded in ${path}`, { code: error.code, error: error.message }));
    }, 1000);
    this.retries.add(timer);
  }

  /** The pods captured now, with their connection counters (GET /v1/pods, the admin's /status). */
  capturedPods(): Array<Record<string, unknown>> {
    return [...this.pods.values()].map((p) => ({ ...p.pod, ...p.counters }));
  }

  /**
   * Stops serving the plugin and closes every pod's listeners; the pods' rules stay (a restart
   * re-adds). With `graceMs`, a drain first: the pods' listeners stop accepting (new connections
   * are refused, never sent uncaptured) and captured HTTP requests in flight get up to `graceMs`
   * to finish; TCP passthrough connections are cut at the end, as the proxy's own TCP listeners'.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true;
    clearInterval(this.linkKeeper);
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
    // The link goes only when it is still this proxy's (no newer proxy took the path over).
    if ((await readlink(this.socketPath).catch(() => undefined)) === basename(this.ownPath)) await rm(this.socketPath, { force: true });
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const p of this.pods.values()) p.stopAccepting();
    this.parts.http.closeIdle();
    const deadline = Date.now() + graceMs;
    while (this.parts.http.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.parts.http.inFlight > 0) this.log('warn', `capture: drain deadline of ${graceMs} ms passed with ${this.parts.http.inFlight} captured requests in flight; closing them`);
    for (const p of this.pods.values()) await p.close();
    for (const s of this.sockets) s.destroy();
    this.parts.http.close();
    this.pods.clear();
  }

  /**
   * A connection that came through the node-to-node tunnel (TunnelServer's deliver): to a
   * captured pod of this node, whose identity is the one the server presented; refused otherwise.
   */
  deliver(r: TunnelRequest): void {
    const address = r.target.address;
    const pod = this.podAt(address);
    if (!pod) return r.refuse(403, `${address} is not the address of a captured pod on this node`);
    const identity = this.parts.tunnel?.identityOf(pod.pod);
    // The client verified the certificate presented against the destination's identity; the pod must be that identity's.
    if (identity && r.localIdentity !== identity) return r.refuse(403, `${describe(pod.pod)} is ${identity}, not ${r.localIdentity} whose certificate was presented`);
    pod.deliverTunneled(r);
  }

  private podAt(address: string): PodListeners | undefined {
    for (const p of this.pods.values()) if (p.ips.includes(address)) return p;
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const body = await readJson(req);
      const route = `${req.method} ${req.url}`;
      let answer: unknown;
      switch (route) {
        case 'POST /v1/ready':
        case 'GET /v1/ready':
          answer = { ready: true };
          break;
        case 'GET /v1/pods':
          answer = { pods: this.capturedPods() };
          break;
        case 'POST /v1/pods/add':
          answer = await this.serial(() => this.add(podRequest(body, true)));
          break;
        case 'POST /v1/pods/del':
          answer = await this.serial(() => this.del(podRequest(body, false)));
          break;
        case 'POST /v1/pods/check':
          answer = await this.serial(() => this.check(podRequest(body, true)));
          break;
        case 'POST /v1/pods/gc':
          answer = await this.serial(() => this.gc(body));
          break;
        default:
          return reply(res, 404, { code: 'SLUICE_ERR_CAPTURE_REQUEST', message: `no route ${route}; the CNI plugin and the proxy may be different versions` });
      }
      reply(res, 200, answer ?? {});
    } catch (error) {
      const e = error as Error & { code?: string };
      const status = e.code === 'SLUICE_ERR_CAPTURE_REQUEST' ? 400 : e.code === 'SLUICE_ERR_CAPTURE_RULES_MISMATCH' ? 409 : 500;
      if (status === 500) this.log('error', `capture: ${req.method} ${req.url} failed`, { code: e.code, error: e.message });
      // Errors that are not Sluice's own (a failed write of the pod's record, say) keep their code in the message.
      const ours = e.code?.startsWith('SLUICE_ERR_');
      reply(res, status, { code: ours ? e.code : 'SLUICE_ERR_CAPTURE_NETNS', message: ours || !e.code ? e.message : `${e.code}: ${e.message}` });
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private async add(pod: PodRequest): Promise<unknown> {
    // A retried ADD (or a restore) replaces the pod's listeners; its record is rewritten below.
    const previous = this.pods.get(pod.containerId);
    this.pods.delete(pod.containerId);
    await previous?.close();
    // Listeners before rules: from the moment the rules exist, something answers on 15001/15006.
    const listeners = await PodListeners.open(pod, families(pod), this.addon, this.parts, this.sockets, this.log);
    listeners.ips = pod.ips.map((ip) => ip.split('/')[0]!);
    try {
      await installRules(pod.netns, withNode(pod), families(pod));
    } catch (error) {
      await listeners.close();
      throw error;
    }
    this.pods.set(pod.containerId, listeners);
    await writeFile(this.statePath(pod.containerId), JSON.stringify(pod));
    this.log('info', `capture: ${describe(pod)} captured`, { containerId: pod.containerId, netns: pod.netns, ips: pod.ips });
    return { captured: true };
  }

  private async del(pod: PodIdentity): Promise<unknown> {
    await this.release(pod.containerId);
    // DEL succeeds when the state is gone: no netns means no rules left to remove.
    if (pod.netns && existsSync(pod.netns)) await removeRules(pod.netns);
    this.log('info', `capture: ${describe(pod)} released`, { containerId: pod.containerId });
    return { released: true };
  }

  private async check(pod: PodRequest): Promise<unknown> {
    if (!this.pods.has(pod.containerId)) {
      throw new SluiceError('SLUICE_ERR_CAPTURE_NETNS', `the proxy has no listeners for ${describe(pod)} (container ${pod.containerId}): it was never added here, or the proxy restarted since; recreate the pod`);
    }
    const problems = await checkRules(pod.netns, withNode(pod), families(pod));
    if (problems.length > 0) throw new SluiceError('SLUICE_ERR_CAPTURE_RULES_MISMATCH', `${problems.join('; ')} (nft list ruleset in ${pod.netns})`);
    return { ok: true };
  }

  private async gc(body: unknown): Promise<unknown> {
    const valid = (body as { valid?: unknown }).valid;
    if (!Array.isArray(valid)) throw new SluiceError('SLUICE_ERR_CAPTURE_REQUEST', 'gc: "valid" must be a list of {containerId, ifName}');
    const keep = new Set(valid.map((v: { containerId?: unknown }) => v.containerId));
    const released: string[] = [];
    for (const [id, listeners] of [...this.pods]) {
      if (keep.has(id)) continue;
      await this.del(listeners.pod);
      released.push(id);
    }
    return { released };
  }

  private statePath(containerId: string): string {
    return join(this.stateDir, `${containerId}.json`);
  }

  /** Closes a pod's listeners and forgets it (its record too). */
  private async release(containerId: string): Promise<void> {
    await rm(this.statePath(containerId), { force: true });
    const existing = this.pods.get(containerId);
    if (!existing) return;
    this.pods.delete(containerId);
    await existing.close();
  }
}

/** The address families the pod has: its traffic in each is captured (a pod with none gets IPv4). */
function families(pod: PodRequest): Family[] {
  const out: Family[] = [];
  if (pod.ips.length === 0 || pod.ips.some((a) => !a.includes(':'))) out.push('ip');
  if (pod.ips.some((a) => a.includes(':'))) out.push('ip6');
  return out;
}

/** Kubelet probes come from the node, which is the pod's gateway: its inbound is not redirected. */
function withNode(pod: PodRequest): Exclusions {
  return { ...pod.exclude, inboundSources: [...pod.gateways, ...pod.exclude.inboundSources] };
}

function podRequest(body: unknown, full: true): PodRequest;
function podRequest(body: unknown, full: false): PodIdentity;
function podRequest(body: unknown, full: boolean): PodRequest | PodIdentity {
  const b = (body ?? {}) as Record<string, unknown>;
  const bad = (what: string): never => {
    throw new SluiceError('SLUICE_ERR_CAPTURE_REQUEST', `pod request: ${what}`);
  };
  const str = (k: string) => (typeof b[k] === 'string' ? (b[k] as string) : b[k] === undefined ? '' : bad(`${k} must be a string`));
  const containerId = str('containerId') || bad('containerId is required');
  if (!CONTAINER_ID.test(containerId)) bad(`containerId "${containerId}" has characters a CNI container ID may not have`);
  const netns = str('netns');
  if (netns && !netns.startsWith('/')) bad(`netns must be an absolute path, got "${netns}"`);
  const identity = { containerId, netns, namespace: str('namespace'), name: str('name') };
  if (!full) return identity;
  if (!netns) bad('netns is required');
  const list = (v: unknown, k: string, item: (x: unknown) => boolean): never[] =>
    Array.isArray(v) && v.every(item) ? (v as never[]) : bad(`${k} must be a list${v === undefined ? ' (missing)' : ''}`);
  const ip = (x: unknown) => typeof x === 'string' && isIP(x.split('/')[0]) !== 0 && /^(\/\d{1,3})?$/.test(x.slice(x.split('/')[0].length));
  const port = (x: unknown) => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= 65535;
  const ex = (b.exclude ?? {}) as Record<string, unknown>;
  return {
    ...identity,
    ips: list(b.ips ?? [], 'ips', ip),
    gateways: list(b.gateways ?? [], 'gateways', ip),
    exclude: {
      outboundPorts: list(ex.outboundPorts ?? [], 'exclude.outboundPorts', port),
      inboundPorts: list(ex.inboundPorts ?? [], 'exclude.inboundPorts', port),
      outboundCidrs: list(ex.outboundCidrs ?? [], 'exclude.outboundCidrs', ip),
      inboundSources: list(ex.inboundSources ?? [], 'exclude.inboundSources', ip),
    },
  };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new SluiceError('SLUICE_ERR_CAPTURE_REQUEST', `request body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new SluiceError('SLUICE_ERR_CAPTURE_REQUEST', 'the request body is not JSON');
  }
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/**
 * Sockets of proxies that are gone (`socketPath`.XXXXXXXX refusing connections, a crash left them):
 * removed. A live one (an old proxy still draining) is left to its owner.
 */
async function removeDeadSockets(socketPath: string, own: string): Promise<void> {
  const prefix = `${basename(socketPath)}.`;
  for (const name of await readdir(dirname(socketPath))) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{8}$/.test(name.slice(prefix.length))) continue;
    const path = join(dirname(socketPath), name);
    if (path === own) continue;
    if (!(await CaptureServer.running(path))) await rm(path, { force: true });
  }
}

/** A pod's listeners could not bind because a proxy that does not share its ports holds them (an older version). */
function heldByOlderProxy(error: unknown): boolean {
  return ((error as Error | undefined)?.cause as { code?: string } | undefined)?.code === 'EADDRINUSE';
}
