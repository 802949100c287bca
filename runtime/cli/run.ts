// `sluice run -c sluice.yaml [--workers N]`: the node proxy from a config file, in this process or
// in N worker processes (workers.ts); or `sluice run --controller ADDR`: fed by the controller. Reloads on SIGHUP, on a change of the file and on POST
// /reload (an invalid file is refused and the running config stays); drains on SIGTERM/SIGINT.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { loadConfig, parseHostPort } from '../config/index.ts';
import { log } from '../log.ts';
import { NodeProxy } from '../proxy/node-proxy.ts';
import { CaptureServer, captureUnavailable, loadAddon, type CaptureTunnelOptions } from '../capture/index.ts';
import { shareListeningPorts } from '../proxy/shared-port.ts';
import { AGENT_DEFAULTS, NodeAgent } from '../agent/index.ts';
import { SluiceError } from '../errors.ts';
import { TunnelClient, TunnelServer, TUNNEL_PORT, tunnelMetrics } from '../tunnel/index.ts';
import type { IdentityStore } from '../identity/index.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { watchConfig } from './config-watcher.ts';
import { startMetricsListener, type MetricsSource } from './metrics-listener.ts';
import { isWorker, runWorker, startPrimary, type Served } from './workers.ts';

export async function runProxy(file: string, opts: { drainMs: number; workers?: number; captureSocket?: string; metricsListen?: string; onReady?: () => void }): Promise<number> {
  if (isWorker()) return runWorker();
  // Only the node's data plane (capture) is upgraded with a second proxy beside the first; two
  // plain `sluice run`s on one port must not quietly share it.
  if (opts.captureSocket) shareNodePorts();
  const served = (opts.workers ?? 1) > 1 ? await startPrimary(file, opts.workers!) : await startOne(file, opts.captureSocket);
  const metrics = opts.metricsListen ? await startMetrics(opts.metricsListen, () => served.view).catch(async (error) => {
    await served.stop(0);
    throw error;
  }) : undefined;
  const reload = (why: string) =>
    served.reload().catch((error: Error & { code?: string }) => log('error', `${why}: config refused, the running one stays`, { code: error.code, error: error.message }));

  for (const [name, a] of Object.entries(served.addresses)) log('info', `${name} listening on ${a.address}:${a.port}`);
  opts.onReady?.();
  process.on('SIGHUP', () => void reload('SIGHUP'));
  const watcher = watchConfig(file, () => void reload(`${file} changed`));
  await signalled(opts.drainMs);
  watcher.close();
  await served.stop(opts.drainMs);
  await closeServer(metrics);
  log('info', 'stopped');
  return 0;
}

/**
 * The node's ports (listeners, admin, metrics, tunnel) shared with another proxy on the node, as
 * the pods' capture ports are: during an upgrade the new proxy binds them while the old one still
 * serves, and new connections go to the new one (docs/operations.md#upgrade). Only with capture
 * (--capture-socket) and where the capture addon loads (root, built); otherwise a second proxy
 * on a port gets EADDRINUSE.
 */
function shareNodePorts(): void {
  if (captureUnavailable()) return;
  const addon = loadAddon();
  shareListeningPorts((host, port, v6only) => addon.listenShared(host, port, v6only));
}

/** Resolves on SIGTERM or SIGINT, logging the drain that follows. */
function signalled(drainMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log('info', `${signal}: draining for up to ${drainMs} ms`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function startMetrics(address: string, source: () => MetricsSource | undefined): Promise<Server> {
  const { server, address: a } = await startMetricsListener(address, source);
  log('info', `metrics listening on ${a.address}:${a.port}`);
  return server;
}

const closeServer = (server: Server | undefined) => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
const shortHash = (text: string | Buffer) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/**
 * Drains captured pods' requests first (they run the proxy's filters, which the proxy's own drain
 * closes at its end), then the proxy with what is left of `drainMs`. /ready turns 503 at once.
 */
async function drainBoth(capture: CaptureServer | undefined, proxy: NodeProxy | undefined, drainMs: number, stopProxy: (ms: number) => Promise<void>, tunnel?: NodeTunnel): Promise<void> {
  const started = Date.now();
  if (proxy) proxy.ready = false;
  // The tunnel's streams are captured connections of peer nodes' pods: drained beside the local ones.
  await Promise.all([capture?.stop(drainMs), tunnel?.server.close(drainMs)]);
  tunnel?.client.close();
  await stopProxy(Math.max(0, drainMs - (Date.now() - started)));
}

/** How long a tunnel stream that arrives before capture has started waits for it. */
const CAPTURE_START_WAIT_MS = 10_000;

/** `get()` once it is defined, polled every 20 ms, or undefined after `ms`. */
async function waitFor<T>(get: () => T | undefined, ms: number): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = get();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  return get();
}

interface NodeTunnel {
  server: TunnelServer;
  client: TunnelClient;
}

/**
 * Node mode with capture: the node-to-node tunnel. Its client carries captured connections to
 * pods on other nodes with the source pod's certificate; its server (on `listen`, default
 * 0.0.0.0:15008) delivers peers' connections to this node's captured pods.
 */
async function startTunnel(listen: string | undefined, identities: IdentityStore, capture: () => CaptureServer | undefined): Promise<NodeTunnel> {
  const parsed = parseHostPort(listen ?? `0.0.0.0:${TUNNEL_PORT}`, 0);
  if ('error' in parsed) throw new SluiceError('SLUICE_ERR_TUNNEL_LISTEN', `--tunnel-listen: ${parsed.error}`);
  const client = new TunnelClient({ identities, log });
  const server = await TunnelServer.start({
    identities,
    host: parsed.host,
    port: parsed.port,
    log,
    deliver: (r) => {
      const c = capture();
      if (c) return c.deliver(r);
      // Starting: during an upgrade peers' new sessions reach this proxy (the shared port's newer
      // socket) while it is still taking the node's pods over; they wait for it, briefly.
      void waitFor(capture, CAPTURE_START_WAIT_MS).then((late) => (late ? late.deliver(r) : r.refuse(503, 'this node does not capture pods yet (starting)')));
    },
  }).catch((error) => {
    client.close();
    throw error;
  });
  return { server, client };
}

/** The capture server for `proxy`, or undefined; a proxy whose capture cannot start is stopped. */
async function startCapture(socket: string | undefined, proxy: NodeProxy, tunnel?: CaptureTunnelOptions): Promise<CaptureServer | undefined> {
  if (!socket) return undefined;
  return CaptureServer.start(socket, proxy, log, tunnel).catch(async (error) => {
    await proxy.stop(0);
    throw error;
  });
}

async function startOne(file: string, captureSocket?: string): Promise<Served> {
  // The version /status shows: a hash of the file's text as last applied.
  const load = async () => {
    const text = await readFile(file);
    return { snapshot: await loadConfig(file), version: shortHash(text) };
  };
  let loaded = await load();
  const proxy = await NodeProxy.start(loaded.snapshot);
  proxy.reload = async () => {
    const next = await load();
    await proxy.apply(next.snapshot);
    loaded = next;
    log('info', `applied ${file}`);
  };
  // Capture (docs/capture.md) serves the CNI plugin once the proxy's listeners are up.
  const capture = await startCapture(captureSocket, proxy);
  proxy.status = () => ({ source: { file }, version: loaded.version, capturedPods: capture ? capture.capturedPods() : null });
  return { addresses: proxy.addresses(), view: proxy, reload: () => proxy.reload!(), stop: (ms) => drainBoth(capture, proxy, ms, (left) => proxy.stop(left)) };
}

/**
 * `sluice run --controller HOST:PORT`: node mode (docs/proxy.md#node-mode). The config comes from
 * the controller; the proxy starts on the last good config on disk or on the first good snapshot.
 * With `captureSocket`, the CNI plugin is served from then on.
 */
export async function runNodeAgent(opts: { controller: string; tokenFile?: string; nodeName?: string; stateDir?: string; controllerCa?: string; controllerPlaintext?: boolean; adminAddress?: string; drainMs: number; captureSocket?: string; tunnelListen?: string; metricsListen?: string }): Promise<number> {
  const nodeName = opts.nodeName ?? process.env.NODE_NAME ?? '';
  const stateDir = opts.stateDir ?? AGENT_DEFAULTS.stateDir;
  const controllerCa = opts.controllerCa ?? AGENT_DEFAULTS.controllerCa;
  if (opts.captureSocket) {
    // Said before anything starts: the agent would otherwise serve without the capture asked for.
    const why = captureUnavailable();
    if (why) throw new SluiceError('SLUICE_ERR_CAPTURE_UNAVAILABLE', `--capture-socket: capture cannot run here: ${why}`);
  }
  if (opts.captureSocket) shareNodePorts();
  let capture: CaptureServer | undefined;
  let tunnel: NodeTunnel | undefined;
  let stopping = false;
  let failed: ((error: Error) => void) | undefined;
  const captureFailed = new Promise<never>((_, reject) => (failed = reject));
  captureFailed.catch(() => undefined);
  const agent = new NodeAgent({
    controller: opts.controller,
    tokenFile: opts.tokenFile ?? AGENT_DEFAULTS.tokenFile,
    nodeName,
    stateDir,
    controllerCa,
    controllerPlaintext: opts.controllerPlaintext,
    adminAddress: opts.adminAddress,
    onServing: (proxy) => {
      proxy.status = () => ({
        source: { controller: opts.controller, node: nodeName },
        version: agent.version,
        capturedPods: capture ? capture.capturedPods() : null,
      });
      if (opts.captureSocket) {
        const socket = opts.captureSocket;
        takeOverWhenReady(socket, () => agent.proxy?.snapshot, agent.identities, () => stopping)
          .then(() => startTunnel(opts.tunnelListen, agent.identities, () => capture))
          .then((t) => {
            tunnel = t;
            proxy.extraMetrics = () => tunnelMetrics(t.server, t.client);
            const a = t.server.address();
            // Same-node traffic goes through the node's own tunnel too (the inbound filters see the caller's identity).
            const host = a.address === '0.0.0.0' ? '127.0.0.1' : a.address === '::' ? '::1' : a.address;
            return startCapture(opts.captureSocket, proxy, { client: t.client, local: { host, port: a.port } });
          })
          .then((c) => (capture = c), (error: Error) => failed!(error));
      }
    },
  });
  // Ready (the DaemonSet's probe) once the proxy serves and, with capture, has taken the node's
  // pods over: during an upgrade the old proxy is stopped only then (docs/operations.md#upgrade).
  const metricsSource = (): MetricsSource | undefined => {
    const proxy = agent.proxy;
    if (!proxy) return undefined;
    return { get ready() { return proxy.ready && (!opts.captureSocket || capture !== undefined); }, metrics: () => proxy.metrics() };
  };
  const metrics = opts.metricsListen ? await startMetrics(opts.metricsListen, metricsSource) : undefined;
  log('info', `node mode: controller ${opts.controller} (${opts.controllerPlaintext ? 'plaintext' : `TLS, trust bundle ${controllerCa}`}), node ${nodeName}, state in ${stateDir}`);
  try {
    await agent.start();
    await Promise.race([signalled(opts.drainMs), captureFailed]);
  } catch (error) {
    await tunnel?.server.close(0);
    tunnel?.client.close();
    await agent.stop(0);
    await closeServer(metrics);
    throw error;
  }
  stopping = true;
  await drainBoth(capture, agent.proxy, opts.drainMs, (ms) => agent.stop(ms), tunnel);
  await closeServer(metrics);
  log('info', 'stopped');
  return 0;
}

/**
 * With another proxy serving this node's pods (an upgrade with a surge), waits until this one can
 * serve them as well before its tunnel and pod listeners join the shared ports (the newer socket
 * gets every new connection at once): the certificates of the node's workloads, from the
 * controller, and the trust bundle. Until then the old proxy serves, and this one is not ready.
 * With no other proxy, at once: the pods' connections are refused until capture starts anyway.
 */
async function takeOverWhenReady(socket: string, snapshot: () => Snapshot | undefined, identities: IdentityStore, stopping: () => boolean): Promise<void> {
  if (!(await CaptureServer.running(socket))) return;
  const missing = () => {
    const wanted = [...new Set((snapshot()?.workloads ?? []).map((w) => w.identity))];
    return identities.trustBundle() === undefined ? ['the trust bundle', ...wanted] : wanted.filter((id) => identities.get(id) === undefined);
  };
  if (missing().length === 0) return;
  log('info', `capture: another proxy serves this node's pods; taking them over once this one has ${missing().join(', ')} from the controller`);
  while (missing().length > 0 && !stopping()) await new Promise((r) => setTimeout(r, 100));
  // Stopped meanwhile: nothing is taken over (the rejection is not reported: the drain has begun).
  if (stopping()) throw new SluiceError('SLUICE_ERR_CAPTURE_UNAVAILABLE', 'stopped before taking the pods over');
}
