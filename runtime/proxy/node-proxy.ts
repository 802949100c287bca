// The node proxy's lifecycle: start from a snapshot (filters loaded and configured, listeners
// bound, then ready), apply a new snapshot hot (streams in flight finish on what they started
// with), and stop (not ready, stop accepting, drain within a deadline).

import type { AddressInfo, Server, Socket } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ClusterConfig, FilterConfig, ListenerConfig, Snapshot, WorkloadConfig } from '../config/snapshot.ts';
import { CONFIG_DEFAULTS } from '../config/index.ts';
import { createEnvironment, type HostEnvironment, type HttpCallResponse } from '../host/environment.ts';
import { FilterChain } from '../host/filter-chain.ts';
import { Plugin } from '../host/plugin.ts';
import { log } from '../log.ts';
import { AccessLog } from './access-log.ts';
import { adminServer } from './admin.ts';
import { downstreamServer, type Downstream } from './downstream.ts';
import { buildRequestPath, proxyRequest, type ListenerState } from './http-proxy.ts';
import { SpanExporter } from './span-export.ts';
import { Router } from './router.ts';
import { tcpServer } from './tcp-proxy.ts';
import { proxyUpgrade } from './upgrade.ts';
import { checkRequestHead, refuse, refuseOnSocket } from './request-head.ts';
import { Telemetry } from './telemetry.ts';
import { Cluster } from './upstreams.ts';
import { listenOn } from './shared-port.ts';

interface LoadedFilter {
  readonly key: string;
  readonly plugin: Plugin;
}

/** Downstream limits of every listener (Envoy's defaults). */
export interface ListenerLimits {
  /** A client that has not sent all its request headers by then gets 408 and is disconnected. */
  headersTimeoutMs: number;
  /** Request headers larger than this get 431. */
  maxHeaderBytes: number;
  /** The whole request must arrive within this. */
  requestTimeoutMs: number;
}

export const DEFAULT_LISTENER_LIMITS: ListenerLimits = { headersTimeoutMs: 10_000, maxHeaderBytes: 60 * 1024, requestTimeoutMs: 300_000 };

interface Listener {
  readonly server: Server;
  /** http listeners: their connections, for the drain. */
  readonly downstream?: Downstream;
  state: ListenerState;
}

export class NodeProxy {
  ready = false;
  /** Set by `sluice run`: re-reads the config file and applies it (SIGHUP, file change, POST /reload). */
  reload?: () => Promise<void>;
  /** Set by `sluice run`: what /status shows besides readiness and filters (admin.ts). */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Set by `sluice run`: more Prometheus text for /stats/prometheus (the node-to-node tunnel's). */
  extraMetrics?: () => string;
  readonly telemetry: Telemetry;
  readonly env: HostEnvironment;
  private current!: Snapshot;
  private filters = new Map<string, LoadedFilter>();
  private clusters = new Map<string, Cluster>();
  /** Span export, when the snapshot configures it. */
  private spans?: SpanExporter;
  private readonly listeners = new Map<string, Listener>();
  private admin?: Server;
  private inFlight = 0;
  /** Open connections of tcp listeners (and their upstreams), closed at the end of a drain. */
  private readonly tcpSockets = new Set<Socket>();
  private stopping?: Promise<void>;
  /** Node mode: the filter chains of the workloads in the current snapshot, made when first asked. */
  private workloadChains?: { snapshot: Snapshot; workloads: Map<string, WorkloadConfig>; chains: Map<string, FilterChain> };
  /** The clusters of the current snapshot by Service address (vips), made when first asked. */
  private services?: { snapshot: Snapshot; byAddress: Map<string, ClusterConfig> };
  private applying: Promise<void> = Promise.resolve();

  private readonly limits: ListenerLimits;

  private constructor(env?: Partial<HostEnvironment>, limits?: Partial<ListenerLimits>) {
    this.limits = { ...DEFAULT_LISTENER_LIMITS, ...limits };
    this.env = createEnvironment({
      hasCluster: (name) => this.clusters.has(name),
      httpCall: (_plugin, request, done) => void this.httpCall(request, done),
      ...env,
    });
    this.telemetry = new Telemetry(
      this.env.metrics,
      () => [...this.filters.values()].map((f) => f.plugin),
      () => [...this.clusters.values()],
      () => this.spans,
    );
  }

  /** `options.admin: false`: no admin endpoint (worker processes; the primary serves it). */
  static async start(snapshot: Snapshot, env?: Partial<HostEnvironment>, limits?: Partial<ListenerLimits>, options: { admin?: boolean } = {}): Promise<NodeProxy> {
    const proxy = new NodeProxy(env, limits);
    await proxy.apply(snapshot);
    if (options.admin !== false) {
      proxy.admin = adminServer(proxy);
      await listen(proxy.admin, snapshot.admin.host, snapshot.admin.port);
    }
    proxy.ready = true;
    return proxy;
  }

  get snapshot(): Snapshot {
    return this.current;
  }

  /**
   * Applies a snapshot: every filter is loaded and configured first; if one refuses, this throws
   * and the running snapshot stays. Unchanged filters keep their VMs.
   */
  apply(next: Snapshot): Promise<void> {
    // One apply at a time, in the order asked: each builds on the state the previous one left.
    const applied = this.applying.then(() => this.swap(next));
    this.applying = applied.catch(() => {});
    return applied;
  }

  private async swap(next: Snapshot): Promise<void> {
    const filters = new Map<string, LoadedFilter>();
    try {
      for (const f of next.filters) filters.set(f.name, await this.loadFilter(f));
    } catch (error) {
      for (const [name, f] of filters) if (this.filters.get(name) !== f) f.plugin.close();
      throw error;
    }
    const clusters = new Map(next.clusters.map((c) => [c.name, this.reuseCluster(c)]));
    const oldSpans = this.spans;
    if (JSON.stringify(next.tracing?.otlp) !== JSON.stringify(oldSpans?.config)) {
      this.spans = next.tracing ? new SpanExporter(next.tracing.otlp, log) : undefined;
      void oldSpans?.close();
    }
    const states = next.listeners.map((l) => this.listenerState(l, filters, clusters));
    for (const state of states) {
      const existing = this.listeners.get(state.config.name);
      if (existing && sameAddress(existing.state.config, state.config) && existing.state.config.protocol === state.config.protocol && !existing.state.config.tls === !state.config.tls) {
        if (state.config.tls && JSON.stringify(state.config.tls) !== JSON.stringify(existing.state.config.tls)) existing.downstream?.setTls?.(state.config.tls);
        const oldLog = existing.state.accessLog;
        existing.state = state;
        if (oldLog && oldLog !== state.accessLog) oldLog.close();
      } else {
        if (existing) await close(existing.server);
        this.listeners.set(state.config.name, await this.bind(state));
      }
    }
    for (const [name, l] of this.listeners) {
      if (!next.listeners.some((c) => c.name === name)) {
        this.listeners.delete(name);
        await close(l.server);
      }
    }
    const oldFilters = this.filters;
    const oldClusters = this.clusters;
    this.filters = filters;
    this.clusters = clusters;
    this.current = next;
    for (const [name, f] of oldFilters) if (filters.get(name) !== f) f.plugin.close();
    for (const [name, c] of oldClusters) if (clusters.get(name) !== c) void c.close();
  }

  /** Stops: /ready turns false, listeners stop accepting, in-flight requests get `graceMs` to finish. */
  stop(graceMs = 5000): Promise<void> {
    this.stopping ??= this.drain(graceMs);
    return this.stopping;
  }

  private async drain(graceMs: number): Promise<void> {
    this.ready = false;
    const servers = [...this.listeners.values()].map((l) => l.server);
    const http = [...this.listeners.values()].flatMap((l) => (l.downstream ? [l.downstream] : []));
    const closing = Promise.all(servers.map(close));
    for (const d of http) d.closeIdle();
    const deadline = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.inFlight > 0) log('warn', `drain deadline of ${graceMs} ms passed with ${this.inFlight} requests in flight; closing them`);
    for (const d of http) d.closeAll();
    for (const socket of this.tcpSockets) socket.destroy();
    await closing;
    for (const f of this.filters.values()) f.plugin.close();
    for (const l of this.listeners.values()) l.state.accessLog?.close();
    await Promise.all([...this.clusters.values()].map((c) => c.destroy()));
    await this.spans?.close();
    if (this.admin) await close(this.admin);
  }

  /** Where each listener is bound (port 0 in the config gives a free port). */
  addresses(): Record<string, AddressInfo> {
    const out: Record<string, AddressInfo> = {};
    for (const [name, l] of this.listeners) out[name] = l.server.address() as AddressInfo;
    if (this.admin) out.admin = this.admin.address() as AddressInfo;
    return out;
  }

  /** The current state of listener `name`: capture (runtime/capture) borrows its filters and access log. */
  currentListenerState(name: string): ListenerState | undefined {
    return this.listeners.get(name)?.state;
  }

  /**
   * Node mode: the chain of the filters the controller selected for pod `namespace`/`name` in
   * `direction` on destination `port` (the snapshot's workloads; a filter limited to some ports
   * runs only on those), or undefined when the snapshot does not describe the pod.
   */
  workloadChain(namespace: string, name: string, direction: 'outbound' | 'inbound', port: number): FilterChain | undefined {
    const snapshot = this.current;
    if (!snapshot.workloads) return undefined;
    if (this.workloadChains?.snapshot !== snapshot) {
      this.workloadChains = { snapshot, workloads: new Map(snapshot.workloads.map((w) => [`${w.namespace}/${w.name}`, w])), chains: new Map() };
    }
    const w = this.workloadChains.workloads.get(`${namespace}/${name}`);
    if (!w) return undefined;
    const limits = w.filters.ports?.[direction];
    // One chain per port some filter is limited to, and one for every other port.
    const limited = limits !== undefined && Object.values(limits).some((ports) => ports.includes(port));
    const key = `${namespace}/${name} ${direction} ${limited ? port : '*'}`;
    let chain = this.workloadChains.chains.get(key);
    if (!chain) {
      const names = w.filters[direction].filter((f) => limits?.[f] === undefined || limits[f]!.includes(port));
      chain = new FilterChain(names.map((f) => this.filters.get(f)!.plugin), this.env);
      this.workloadChains.chains.set(key, chain);
    }
    return chain;
  }

  /** The cluster of the current snapshot one of whose Service addresses (vips) is `address`:`port`. */
  serviceAt(address: string, port: number): ClusterConfig | undefined {
    const snapshot = this.current;
    if (this.services?.snapshot !== snapshot) {
      const byAddress = new Map<string, ClusterConfig>();
      for (const c of snapshot.clusters) for (const vip of c.vips ?? []) byAddress.set(`${vip.host.toLowerCase()} ${vip.port}`, c);
      this.services = { snapshot, byAddress };
    }
    return this.services.byAddress.get(`${address.toLowerCase()} ${port}`);
  }

  /** The Prometheus text of /stats/prometheus. */
  metrics(): string {
    // render() ends with a newline; so does the extra text.
    return this.telemetry.render() + (this.extraMetrics?.() ?? '');
  }

  filterStatus(): Array<Record<string, unknown>> {
    return [...this.filters.values()].map(({ plugin }) => ({
      name: plugin.name,
      digest: plugin.digest,
      state: plugin.state,
      failStrategy: plugin.spec.failStrategy,
      ...(plugin.unavailable === undefined ? {} : { unavailable: plugin.unavailable }),
      warnings: plugin.warnings,
      ...plugin.stats,
    }));
  }

  private async loadFilter(f: FilterConfig): Promise<LoadedFilter> {
    if (f.unavailable !== undefined) {
      // Loads nothing: the filter's fail strategy answers its streams (FilterChain, like a quarantined filter).
      const key = `${JSON.stringify(f)}\u0000unavailable`;
      const existing = this.filters.get(f.name);
      if (existing && existing.key === key) return existing;
      return { key, plugin: Plugin.unavailable(f, f.unavailable, this.env) };
    }
    const bytes = new Uint8Array(await readFile(f.module));
    const key = `${JSON.stringify(f)}\u0000${createHash('sha256').update(bytes).digest('hex')}`;
    const existing = this.filters.get(f.name);
    if (existing && existing.key === key && existing.plugin.state === 'active') return existing;
    const plugin = await Plugin.load(bytes, f, this.env);
    return { key, plugin };
  }

  private reuseCluster(c: ClusterConfig): Cluster {
    const existing = this.clusters.get(c.name);
    return existing && JSON.stringify(existing.config) === JSON.stringify(c) ? existing : new Cluster(c);
  }

  private listenerState(config: ListenerConfig, filters: Map<string, LoadedFilter>, clusters: Map<string, Cluster>): ListenerState {
    const plugins = config.filters.map((name) => filters.get(name)!.plugin);
    const previous = this.listeners.get(config.name)?.state.accessLog;
    // Keep the open log when its config is unchanged; a changed one is reopened.
    const accessLog = !config.accessLog ? undefined : previous && JSON.stringify(previous.config) === JSON.stringify(config.accessLog) ? previous : new AccessLog(config.accessLog);
    return { config, chain: new FilterChain(plugins, this.env), router: new Router(config.routes), clusters, accessLog, spans: this.spans, path: buildRequestPath() };
  }

  private async bind(state: ListenerState): Promise<Listener> {
    if (state.config.protocol === 'tcp') {
      const listener: Listener = {
        server: tcpServer(() => ({ name: listener.state.config.name, cluster: listener.state.clusters.get(listener.state.config.cluster!)! }), this.telemetry, this.tcpSockets),
        state,
      };
      await listen(listener.server, state.config.host, state.config.port);
      return listener;
    }
    const downstream = downstreamServer(this.limits, state.config.tls, {
      request: (req, res) => {
        this.inFlight++;
        res.once('close', () => this.inFlight--);
        const refusal = checkRequestHead(req, listener.state.config.maxRequestHeaders ?? CONFIG_DEFAULTS.maxRequestHeaders);
        if (refusal) {
          refuse(req, res, refusal);
          // Counted like any answer, so that refusals show on the dashboards.
          const protocol = 'stream' in req ? '2.0' : '1.1';
          return this.telemetry.request(listener.state.config.name, protocol, { status: refusal.status, requestBytes: 0, responseBytes: Buffer.byteLength(refusal.text), cluster: '' }, 0);
        }
        // Each request runs on the state of the snapshot current when it arrived.
        proxyRequest(listener.state, this.telemetry, req, res).catch(requestFailed);
      },
      upgrade: (req, socket, head, resume) => {
        const refusal = checkRequestHead(req, listener.state.config.maxRequestHeaders ?? CONFIG_DEFAULTS.maxRequestHeaders);
        if (refusal) return refuseOnSocket(socket, refusal);
        proxyUpgrade(listener.state, req, socket, head, this.tcpSockets, resume).catch((error: unknown) => {
          socket.destroy();
          requestFailed(error);
        });
      },
      rapidReset: () => this.telemetry.rapidReset(listener.state.config.name),
    });
    const listener: Listener = { server: downstream.server, downstream, state };
    await listen(downstream.server, state.config.host, state.config.port);
    return listener;
  }

  private async httpCall(
    request: { cluster: string; headers: Array<[string, string]>; body: Uint8Array; timeoutMs: number },
    done: (r: HttpCallResponse) => void,
  ): Promise<void> {
    const failed = { headers: [], body: new Uint8Array(0), trailers: [] };
    const host = this.clusters.get(request.cluster)?.pick();
    if (!host) return void setImmediate(() => done(failed));
    const pseudo = (k: string) => request.headers.find(([name]) => name === k)?.[1];
    const headers: string[] = ['host', pseudo(':authority') ?? ''];
    for (const [k, v] of request.headers) if (!k.startsWith(':')) headers.push(k, v);
    try {
      const res = await host.pool.request({
        method: pseudo(':method') ?? 'GET',
        path: pseudo(':path') ?? '/',
        headers,
        body: request.body.byteLength > 0 ? request.body : undefined,
        headersTimeout: request.timeoutMs || undefined,
        bodyTimeout: request.timeoutMs || undefined,
      });
      const body = new Uint8Array(await buffer(res.body));
      const out: Array<[string, string]> = [[':status', String(res.statusCode)]];
      for (const [k, v] of Object.entries(res.headers)) for (const one of [v].flat()) if (one !== undefined) out.push([k, one]);
      done({ headers: out, body, trailers: [] });
    } catch {
      done(failed);
    }
  }
}

/** A failure that escaped one request's own handling: it costs that request, never the process. */
function requestFailed(error: unknown): void {
  log('error', `request failed: ${String((error as Error)?.stack ?? error)}`);
}

function sameAddress(a: ListenerConfig, b: ListenerConfig): boolean {
  return a.host === b.host && a.port === b.port;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`cannot listen on ${host}:${port}: the address is in use (another sluice, or another service on that port?)`, { cause: error }) : error),
    );
    listenOn(server, host, port, () => resolve());
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
