// Captured connections that open with an HTTP/1.1 request line or the HTTP/2 preface (h2c,
// gRPC) go through the proxy's HTTP stack (router, filter chain, x-forwarded-*, x-request-id,
// istio_requests_total) to their original destination, upstream in the same protocol.
// Everything else (TLS, other protocols, and server-first protocols, which send nothing within
// SNIFF_MS) passes through as TCP.

import { Socket } from 'node:net';
import { parseConfig } from '../config/index.ts';
import type { ClusterConfig, ListenerConfig, RouteConfig, Snapshot } from '../config/snapshot.ts';
import type { HostEnvironment } from '../host/environment.ts';
import { FilterChain } from '../host/filter-chain.ts';
import { downstreamServer, downstreamSocket, type Downstream } from '../proxy/downstream.ts';
import { buildRequestPath, proxyRequest, type ListenerState } from '../proxy/http-proxy.ts';
import { DEFAULT_LISTENER_LIMITS } from '../proxy/node-proxy.ts';
import { Router } from '../proxy/router.ts';
import type { Telemetry } from '../proxy/telemetry.ts';
import { proxyUpgrade } from '../proxy/upgrade.ts';
import { Cluster } from '../proxy/upstreams.ts';

/**
 * How long a captured connection may stay silent before it is taken for a server-first protocol
 * (SMTP, MySQL, SSH) and passed through; such protocols pay this once, at connect.
 */
export const SNIFF_MS = 100;

/** An HTTP/1.x request line's start (RFC 9110 methods). HTTP/2's preface ("PRI * ") is not one. */
const HTTP1 = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT) \S/;

const H2_PREFACE = 'PRI * HTTP/2.0\r\n';

/** The protocol a captured connection's first bytes announce, or undefined for anything else. */
export function sniffedProtocol(first: Buffer): 'http1' | 'http2' | undefined {
  const head = first.subarray(0, 16).toString('latin1');
  if (head.startsWith(H2_PREFACE)) return 'http2';
  return HTTP1.test(head) ? 'http1' : undefined;
}

/** The pod a captured connection belongs to. */
export interface CapturedPod {
  readonly namespace: string;
  readonly name: string;
}

/** A captured HTTP connection: the state it runs on, its pod, its destination port. */
interface Served {
  readonly state: ListenerState;
  readonly pod: CapturedPod;
  readonly port: number;
}

/** The proxy parts captured HTTP runs on. */
export interface ProxyParts {
  readonly telemetry: Telemetry;
  readonly env: HostEnvironment;
  /** A configured listener's current state: one named capture-outbound/-inbound lends its filters. */
  currentListenerState?(name: string): ListenerState | undefined;
  /** Node mode: the chain of the filters selected for a pod in a direction, when the snapshot describes the pod. */
  workloadChain?(namespace: string, name: string, direction: 'outbound' | 'inbound', port: number): FilterChain | undefined;
  /** The snapshot in force: its workloads (and remote workloads) route captured connections into the tunnel and label their metrics. */
  readonly snapshot?: Snapshot;
  /** The cluster whose Service address (vips) a captured outbound connection dialled. */
  serviceAt?(address: string, port: number): ClusterConfig | undefined;
}

interface Template {
  readonly listener: ListenerConfig;
  readonly route: RouteConfig;
  readonly cluster: ClusterConfig;
}

let template: Template | undefined;

/** Listener, route and cluster with the config schema's defaults (one place for defaults). */
function defaults(): Template {
  if (template) return template;
  const snapshot = parseConfig(
    `admin: { address: 127.0.0.1:0 }
listeners:
  - { name: capture, address: 127.0.0.1:15001, protocol: http, routes: [{ name: original-destination, match: { prefix: / }, cluster: original-destination }] }
clusters:
  - { name: original-destination, endpoints: [127.0.0.1:1] }
`,
    'capture defaults',
    '/',
  );
  template = { listener: snapshot.listeners[0], route: snapshot.listeners[0].routes[0], cluster: snapshot.clusters[0] };
  return template;
}

/**
 * The state of one (pod, direction, original destination, protocol): a route to a one-endpoint
 * cluster speaking the client's protocol, whose connections `connect` makes (in the pod's netns,
 * marked). Its own chain is empty; CaptureHttp swaps in the filters of the listener named like
 * the direction when the config has one.
 */
export function originalDestinationState(
  name: string,
  address: string,
  port: number,
  protocol: 'http1' | 'http2',
  env: HostEnvironment,
  connect: (host: string, port: number) => Socket,
  peers?: ListenerState['peers'],
): ListenerState {
  const t = defaults();
  const clusterName = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  return clusterState(name, { ...t.cluster, name: clusterName, endpoints: [{ host: address, port }] }, protocol, env, connect, peers);
}

/**
 * A state whose one route sends every request to `cluster`, spoken to in the client's protocol,
 * with connections made by `connect`, its metrics labelled by `peers`. For a captured connection
 * to a Service address (one of `cluster.vips`), the Service's endpoints are picked by the
 * cluster's load balancing.
 */
export function clusterState(name: string, cluster: ClusterConfig, protocol: 'http1' | 'http2', env: HostEnvironment, connect: (host: string, port: number) => Socket, peers?: ListenerState['peers']): ListenerState {
  const t = defaults();
  const route: RouteConfig = { ...t.route, action: { kind: 'cluster', clusters: [{ cluster: cluster.name, weight: 1 }] } };
  return {
    config: { ...t.listener, name, routes: [route] },
    chain: new FilterChain([], env),
    router: new Router([route]),
    clusters: new Map([[cluster.name, new Cluster({ ...cluster, protocol }, connect)]]),
    ...(peers && { peers }),
  };
}

/** One HTTP server (never listening) that captured HTTP connections are handed to. */
export class CaptureHttp {
  private readonly downstream: Downstream;
  private readonly states = new WeakMap<Socket, Served>();
  /** Captured HTTP requests not answered yet (a drain waits for them). */
  inFlight = 0;

  constructor(proxy: ProxyParts, sockets: Set<Socket>) {
    // Each request runs on the borrowed listener's state current when it arrives (hot reload),
    // with the chain of the filters selected for the pod in node mode.
    const current = (served: Served | undefined): ListenerState | undefined => {
      if (!served) return undefined;
      const base = served.state;
      const lent = proxy.currentListenerState?.(base.config.name);
      if (!lent || lent.config.protocol !== 'http') return base;
      const direction = base.config.name === 'capture-inbound' ? 'inbound' : 'outbound';
      const { pod } = served;
      const chain = proxy.workloadChain?.(pod.namespace, pod.name, direction, served.port) ?? lent.chain;
      // The composed request path is kept on the base state: composing it per request would cost.
      return { ...base, config: { ...base.config, filters: chain === lent.chain ? lent.config.filters : chain.plugins.map((p) => p.name), accessLog: lent.config.accessLog }, chain, accessLog: lent.accessLog, spans: lent.spans, path: (base.path ??= buildRequestPath()) };
    };
    this.downstream = downstreamServer(DEFAULT_LISTENER_LIMITS, undefined, {
      request: (req, res) => {
        const state = current(this.states.get(downstreamSocket(req)));
        if (!state) return void res.destroy();
        this.inFlight++;
        res.once('close', () => this.inFlight--);
        proxyRequest(state, proxy.telemetry, req, res).catch(() => res.destroy());
      },
      upgrade: (req, socket, head, resume) => {
        const state = current(this.states.get(socket));
        if (!state) return void socket.destroy();
        proxyUpgrade(state, req, socket, head, sockets, resume).catch(() => socket.destroy());
      },
    });
    // The server never listens itself; 'listening' starts the HTTP/1.1 header and request timeouts.
    this.downstream.server.emit('listening');
  }

  /**
   * Serves `client` of `pod`, whose `first` bytes were read while sniffing, with `state`; `port`
   * is the destination port (the one dialled outbound, the pod's inbound).
   */
  serve(client: Socket, first: Buffer, state: ListenerState, pod: CapturedPod, port: number): void {
    this.states.set(client, { state, pod, port });
    client.unshift(first);
    this.downstream.server.emit('connection', client);
    client.resume();
  }

  /** A drain: closes the connections with no request in flight (the others close after theirs). */
  closeIdle(): void {
    this.downstream.closeIdle();
  }

  /** Closes every captured HTTP connection and stops the timeout checks. */
  close(): void {
    this.downstream.closeAll();
    this.downstream.server.emit('close');
  }
}

/**
 * Waits for the client's first bytes (paused, not consumed): `first` is empty when the client
 * stayed silent for SNIFF_MS or ended.
 */
export function sniff(client: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const done = (first: Buffer) => {
      clearTimeout(timer);
      client.off('data', onData).off('end', onEnd).off('close', onEnd);
      client.pause();
      resolve(first);
    };
    const onData = (chunk: Buffer) => done(chunk);
    const onEnd = () => done(Buffer.alloc(0));
    const timer = setTimeout(() => done(Buffer.alloc(0)), SNIFF_MS);
    client.on('data', onData).once('end', onEnd).once('close', onEnd);
  });
}
