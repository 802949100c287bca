// The proxy's listeners inside one pod's netns: 15001 for the pod's redirected outbound TCP,
// 15006 for inbound. Each accepted connection goes to its original destination over a socket
// the proxy opens in the same netns with PROXY_MARK, which the pod's rules let through: through
// the HTTP stack when it speaks HTTP/1.1 or HTTP/2 (capture-http.ts), as TCP passthrough otherwise.

import { createServer, Socket, type Server } from 'node:net';
import type { ClusterConfig, RemoteWorkloadConfig } from '../config/snapshot.ts';
import { SluiceError } from '../errors.ts';
import type { LogLevelName } from '../log.ts';
import type { ListenerState } from '../proxy/http-proxy.ts';
import type { Exchange } from '../proxy/layers/context.ts';
import { setOriginalDestination } from '../proxy/original-destination.ts';
import type { PeerLabels } from '../proxy/peer-labels.ts';
import { passthrough } from '../proxy/tcp-proxy.ts';
import { authorityOf, streamSocket, tunnelSocket, type TunnelRequest } from '../tunnel/index.ts';
import type { CaptureAddon, NetnsHandle } from './addon.ts';
import { clusterState, originalDestinationState, sniff, sniffedProtocol, type CaptureHttp, type ProxyParts } from './capture-http.ts';
import { INBOUND_PORT, OUTBOUND_PORT, PROXY_MARK, type Family } from './nft-rules.ts';
import type { CaptureTunnel } from './tunnel-routes.ts';
import { capturedPeers } from './workload-directory.ts';

export type Direction = 'outbound' | 'inbound';

export interface PodIdentity {
  readonly containerId: string;
  readonly netns: string;
  readonly namespace: string;
  readonly name: string;
}

export interface PodCounters {
  outbound: number;
  inbound: number;
  /** Connections refused: no original destination (a direct connection to 15001/15006) or a loop. */
  refused: number;
}

type Log = (level: LogLevelName, msg: string, extra?: Record<string, unknown>) => void;

/** What the pod's listeners hand connections to. */
export interface CaptureParts extends ProxyParts {
  readonly http: CaptureHttp;
  /** The node-to-node tunnel (node mode): connections to pods on other nodes go through it. */
  readonly tunnel?: CaptureTunnel;
}

/** HTTP states kept per pod (one per original destination and direction), oldest dropped first. */
const MAX_HTTP_STATES = 256;

/** Listener name in metrics (`sluice_listener`): capture-outbound / capture-inbound. */
export const listenerName = (d: Direction) => `capture-${d}`;

export class PodListeners {
  readonly counters: PodCounters = { outbound: 0, inbound: 0, refused: 0 };
  /** The pod's addresses (without prefix length): tunneled connections to them are delivered here. */
  ips: readonly string[] = [];
  private readonly servers: Server[] = [];
  private readonly httpStates = new Map<string, ListenerState>();
  /** Per direction, Service cluster and protocol: the state, and the cluster config it was made from. */
  private readonly serviceStates = new Map<string, { config: ClusterConfig; state: ListenerState }>();
  /** Where the upstream sockets are made: a thread parked in the pod's netns. */
  private netns?: NetnsHandle;

  private constructor(
    readonly pod: PodIdentity,
    private readonly addon: CaptureAddon,
    private readonly parts: CaptureParts,
    private readonly sockets: Set<Socket>,
    private readonly log: Log,
  ) {}

  /** Binds both listeners in the pod's netns; throws SLUICE_ERR_CAPTURE_NETNS naming the step. */
  static async open(pod: PodIdentity, families: readonly Family[], addon: CaptureAddon, parts: CaptureParts, sockets: Set<Socket>, log: Log): Promise<PodListeners> {
    const p = new PodListeners(pod, addon, parts, sockets, log);
    try {
      p.netns = addon.netnsOpen(pod.netns);
      // Outbound is REDIRECTed from OUTPUT, which lands on loopback; inbound from PREROUTING
      // lands on the pod's address, hence the wildcard. IPv6 sockets are v6-only (the addon sets
      // IPV6_V6ONLY), so both families can hold the same ports.
      if (families.includes('ip')) {
        await p.adopt('outbound', '127.0.0.1', OUTBOUND_PORT);
        await p.adopt('inbound', '0.0.0.0', INBOUND_PORT);
      }
      if (families.includes('ip6')) {
        await p.adopt('outbound', '::1', OUTBOUND_PORT);
        await p.adopt('inbound', '::', INBOUND_PORT);
      }
    } catch (error) {
      await p.close();
      const e = error as Error & { code?: string };
      throw new SluiceError('SLUICE_ERR_CAPTURE_NETNS', `cannot listen in the netns of ${describe(pod)} (${pod.netns}): ${e.message}`, { cause: error });
    }
    return p;
  }

  private async adopt(direction: Direction, host: string, port: number): Promise<void> {
    const fd = this.addon.listenInNetns(this.pod.netns, host, port, PROXY_MARK);
    const server = createServer((client) => this.accept(direction, client));
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => resolve());
    });
  }

  private accept(direction: Direction, client: Socket): void {
    // A reset while the first bytes are awaited must cost this connection only, not the process.
    client.on('error', () => client.destroy());
    const fd = (client as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let dst: { address: string; port: number; family: 4 | 6 };
    try {
      if (fd === undefined || fd < 0) throw new Error('the accepted socket has no file descriptor');
      dst = this.addon.originalDst(fd);
    } catch (error) {
      // Not redirected: someone connected to 15001/15006 directly. There is nowhere to send it.
      this.counters.refused++;
      this.log('warn', `capture: ${direction} connection in ${describe(this.pod)} from ${client.remoteAddress}:${client.remotePort} has no original destination; closed`, { error: (error as Error).message });
      return void client.destroy();
    }
    if ((dst.port === OUTBOUND_PORT || dst.port === INBOUND_PORT) && (dst.address === client.localAddress || dst.address.startsWith('127.') || dst.address === '::1')) {
      this.counters.refused++;
      this.log('warn', `capture: ${direction} connection in ${describe(this.pod)} to ${dst.address}:${dst.port} would loop into the proxy; closed`);
      return void client.destroy();
    }
    this.counters[direction]++;
    void this.forward(direction, client, dst);
  }

  /** `mtls`: the connection came through the node-to-node tunnel (inbound). */
  private async forward(direction: Direction, client: Socket, dst: { address: string; port: number; family: 4 | 6 }, mtls = false): Promise<void> {
    const first = await sniff(client);
    if (client.destroyed) return;
    // A Service address (ClusterIP): the connection goes to one of the Service's endpoints.
    const service = direction === 'outbound' ? this.parts.serviceAt?.(dst.address, dst.port) : undefined;
    const protocol = sniffedProtocol(first);
    // Filters see where the pod's client was going (destination.*), not the proxy's listener.
    setOriginalDestination(client, dst);
    // HTTP runs the filters here; its upstream connections go through the tunnel to pods on other
    // nodes (connector() decides per connection). Other TCP goes through it as bytes.
    if (protocol) return this.parts.http.serve(client, first, service ? this.serviceState(direction, service, protocol) : this.httpState(direction, dst, protocol), this.pod, dst.port);
    // A filter selected for this traffic that the node cannot run and that does not fail open:
    // the bytes would pass unfiltered, so the connection is closed (HTTP gets the chain's 503).
    const refusing = this.parts.workloadChain?.(this.pod.namespace, this.pod.name, direction, dst.port)?.refusingUnavailable();
    if (refusing) {
      this.counters.refused++;
      this.log('warn', `capture: ${direction} TCP connection of ${describe(this.pod)} to port ${dst.port} closed: filter "${refusing.name}" is unavailable (${refusing.unavailable}) and its failStrategy is ${refusing.spec.failStrategy}`);
      return void client.resetAndDestroy();
    }
    // TCP to a Service: a random endpoint per connection.
    const target = service ? service.endpoints[Math.floor(Math.random() * service.endpoints.length)]! : { host: dst.address, port: dst.port };
    const destination = service ? service.name : authorityOf(dst);
    const remote = direction === 'outbound' ? this.parts.tunnel?.remote(target.host) : undefined;
    if (remote) return this.tunnelOut(client, first, target, remote, destination);
    if (first.length > 0) client.unshift(first);
    let upstream: Socket;
    try {
      upstream = this.connect(target.host, target.port);
    } catch (error) {
      this.log('error', `capture: cannot open a socket in ${describe(this.pod)}'s netns for ${target.host}:${target.port}`, { error: (error as Error).message });
      return void client.destroy();
    }
    const peers = capturedPeers(this.parts.snapshot, this.pod, direction, direction === 'outbound' ? target.host : (client.remoteAddress ?? ''), mtls);
    passthrough(client, upstream, { listener: listenerName(direction), destination, peers }, this.parts.telemetry, this.sockets);
  }

  /**
   * The HTTP state for a Service's cluster, made again when a new snapshot came (its cluster
   * config is a new object then), so that no pooled connection outlives a change of where an
   * endpoint is reached (directly or through the tunnel).
   */
  private serviceState(direction: Direction, service: ClusterConfig, protocol: 'http1' | 'http2'): ListenerState {
    const key = `${direction} service ${service.name} ${protocol}`;
    const kept = this.serviceStates.get(key);
    if (kept?.config === service) return kept.state;
    if (kept) for (const c of kept.state.clusters.values()) void c.close();
    const state = clusterState(listenerName(direction), service, protocol, this.parts.env, this.connector(direction), this.requestPeers(direction));
    this.serviceStates.set(key, { config: service, state });
    return state;
  }

  /**
   * The workload labels of a captured request of this pod: the other side is the endpoint the
   * request went to (outbound: mTLS when that was through the tunnel) or the client (inbound).
   */
  private requestPeers(direction: Direction): (x: Exchange) => PeerLabels | undefined {
    return direction === 'outbound'
      ? (x) => {
          const host = x.current?.endpoint.host ?? x.connection.destination.address;
          return capturedPeers(this.parts.snapshot, this.pod, direction, host, this.parts.tunnel?.remote(host) !== undefined);
        }
      : (x) => capturedPeers(this.parts.snapshot, this.pod, direction, x.connection.source.address, x.connection.connection.mtls === true);
  }

  /**
   * A connection to a pod on another node: through the tunnel, with this pod's certificate, its
   * bytes untouched (the receiving node runs the inbound filters with this pod's identity). Never
   * in plaintext: without a certificate or a tunnel session it is refused (HTTP/1.x gets a 503).
   */
  private async tunnelOut(client: Socket, first: Buffer, target: { host: string; port: number }, remote: RemoteWorkloadConfig, destination: string): Promise<void> {
    let stream;
    try {
      stream = await this.openTunnel(target.host, target.port, client.remoteAddress);
    } catch (error) {
      const e = error as Error & { code?: string };
      this.counters.refused++;
      this.log('error', `capture: ${describe(this.pod)} to ${destination} (pod ${remote.namespace}/${remote.name} on ${remote.tunnel.host}) refused: ${e.message}`, { code: e.code });
      return void client.resetAndDestroy();
    }
    if (client.destroyed) return void stream.destroy();
    if (first.length > 0) client.unshift(first);
    const upstream = streamSocket(stream, { remote: { address: remote.tunnel.host, port: remote.tunnel.port }, local: { address: '', port: 0 }, connection: { mtls: true } });
    const peers = capturedPeers(this.parts.snapshot, this.pod, 'outbound', target.host, true);
    passthrough(client, upstream, { listener: listenerName('outbound'), destination, peers }, this.parts.telemetry, this.sockets);
  }

  /** A CONNECT through the tunnel to a pod on another node, with this pod's certificate. */
  private openTunnel(address: string, port: number, sourceAddress: string | undefined) {
    const tunnel = this.parts.tunnel;
    const remote = tunnel?.remote(address);
    if (!tunnel || !remote) return Promise.reject(new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `${address} is no longer a pod on another node`));
    const source = tunnel.identityOf(this.pod);
    if (!source) return Promise.reject(new SluiceError('SLUICE_ERR_TUNNEL_IDENTITY', `the controller has not described ${describe(this.pod)} (no identity for it yet); never sent in plaintext`));
    return tunnel.client.open({ node: remote.tunnel, target: { address, port }, source, expectedIdentity: remote.identity, sourceAddress });
  }

  /**
   * A connection that came through the tunnel for this pod: the inbound side as for a captured
   * one (HTTP through the capture-inbound filters, which see the peer's SPIFFE ID; other TCP
   * passed through), to the pod's server from the pod's netns.
   */
  deliverTunneled(r: TunnelRequest): void {
    this.counters.inbound++;
    const stream = r.accept();
    const client = streamSocket(stream, {
      remote: r.source ?? r.remote,
      local: r.target,
      connection: { mtls: true, tlsVersion: r.tlsVersion, peerUriSans: [r.peerIdentity], localUriSans: r.localIdentity ? [r.localIdentity] : [] },
    });
    void this.forward('inbound', client, { ...r.target, family: r.target.address.includes(':') ? 6 : 4 }, true);
  }

  /**
   * A connection from the pod's netns with the mark: it leaves with the pod's address and is not
   * redirected again (outbound), or reaches the pod's own server (inbound).
   */
  private connect(host: string, port: number): Socket {
    const fd = this.addon.netnsSocket(this.netns!, host.includes(':') ? 6 : 4, PROXY_MARK);
    // manualStart: the socket is not connected yet; reading starts once connect() completes.
    const socket = new Socket({ fd, manualStart: true } as ConstructorParameters<typeof Socket>[0]);
    return socket.connect(port, host);
  }

  private httpState(direction: Direction, dst: { address: string; port: number }, protocol: 'http1' | 'http2'): ListenerState {
    // Whether it goes through the tunnel is part of the key: a pod that became remote (or local)
    // gets a new state, never the pooled connections made the other way.
    const tunneled = direction === 'outbound' && this.parts.tunnel?.remote(dst.address) !== undefined;
    const key = `${direction} ${dst.address} ${dst.port} ${protocol}${tunneled ? ' tunnel' : ''}`;
    let state = this.httpStates.get(key);
    if (state) return state;
    state = originalDestinationState(listenerName(direction), dst.address, dst.port, protocol, this.parts.env, this.connector(direction), this.requestPeers(direction));
    this.httpStates.set(key, state);
    if (this.httpStates.size > MAX_HTTP_STATES) {
      const [oldestKey, oldest] = this.httpStates.entries().next().value!;
      this.httpStates.delete(oldestKey);
      for (const c of oldest.clusters.values()) void c.close();
    }
    return state;
  }

  /**
   * How captured HTTP's upstream connections are made: outbound, through the tunnel to a pod on
   * another node (or a captured pod here, through the node's own tunnel), else from the pod's
   * netns; inbound, always from the pod's netns to its own server.
   */
  private connector(direction: Direction): (host: string, port: number) => Socket {
    if (direction === 'inbound') return (host, port) => this.connect(host, port);
    return (host, port) => (this.parts.tunnel?.remote(host) ? this.tunnelConnect(host, port) : this.connect(host, port));
  }

  /** An upstream connection of captured HTTP to a pod on another node: a tunnel stream, opened with this pod's address as the source. */
  private tunnelConnect(host: string, port: number): Socket {
    const own = this.ips.find((ip) => ip.includes(':') === host.includes(':'));
    const remote = this.parts.tunnel?.remote(host);
    return tunnelSocket(() => this.openTunnel(host, port, own).catch((error: Error & { code?: string }) => {
      this.counters.refused++;
      this.log('error', `capture: ${describe(this.pod)} to ${host}:${port} (a pod on another node) refused: ${error.message}`, { code: error.code });
      throw error;
    }), { remote: { address: remote?.tunnel.host ?? '', port: remote?.tunnel.port ?? 0 }, local: { address: own ?? '', port: 0 }, connection: { mtls: true } });
  }

  /** The start of a drain: the pod's listeners stop accepting; connections and upstreams stay. */
  stopAccepting(): void {
    // Not awaited: a server's close callback waits for every connection to end.
    for (const s of this.servers) if (s.listening) s.close();
  }

  async close(): Promise<void> {
    for (const state of [...this.httpStates.values(), ...[...this.serviceStates.values()].map((s) => s.state)]) for (const c of state.clusters.values()) void c.destroy();
    this.httpStates.clear();
    this.serviceStates.clear();
    if (this.netns) this.addon.netnsClose(this.netns);
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  }
}

export function describe(pod: PodIdentity): string {
  return pod.namespace ? `pod ${pod.namespace}/${pod.name}` : `container ${pod.containerId}`;
}
