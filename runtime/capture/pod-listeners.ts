// The proxy's listeners inside one pod's netns: 15001 for the pod's redirected outbound TCP,
// 15006 for inbound. Each accepted connection goes to its original destination over a socket
// the proxy opens in the same netns with PROXY_MARK, which the pod's rules let through.

import { createServer, Socket, type Server } from 'node:net';
import { SluiceError } from '../errors.ts';
import { passthrough } from '../proxy/tcp-proxy.ts';
import type { Telemetry } from '../proxy/telemetry.ts';
import type { CaptureAddon, NetnsHandle } from './addon.ts';
import { INBOUND_PORT, OUTBOUND_PORT, PROXY_MARK, type Family } from './nft-rules.ts';

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

type Log = (level: string, msg: string, extra?: Record<string, unknown>) => void;

/** Listener name in metrics (`sluice_listener`): capture-outbound / capture-inbound. */
export const listenerName = (d: Direction) => `capture-${d}`;

export class PodListeners {
  readonly counters: PodCounters = { outbound: 0, inbound: 0, refused: 0 };
  private readonly servers: Server[] = [];
  /** Where the upstream sockets are made: a thread parked in the pod's netns. */
  private netns?: NetnsHandle;

  private constructor(
    readonly pod: PodIdentity,
    private readonly addon: CaptureAddon,
    private readonly telemetry: Telemetry,
    private readonly sockets: Set<Socket>,
    private readonly log: Log,
  ) {}

  /** Binds both listeners in the pod's netns; throws SLUICE_ERR_CAPTURE_NETNS naming the step. */
  static async open(pod: PodIdentity, families: readonly Family[], addon: CaptureAddon, telemetry: Telemetry, sockets: Set<Socket>, log: Log): Promise<PodListeners> {
    const p = new PodListeners(pod, addon, telemetry, sockets, log);
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
    let upstream: Socket;
    try {
      // Opened in the pod's netns with the mark: it leaves with the pod's address and is not
      // redirected again (outbound), or reaches the pod's own server (inbound).
      const ufd = this.addon.netnsSocket(this.netns!, dst.family, PROXY_MARK);
      // manualStart: the socket is not connected yet; reading starts once connect() completes.
      upstream = new Socket({ fd: ufd, manualStart: true } as ConstructorParameters<typeof Socket>[0]);
    } catch (error) {
      this.log('error', `capture: cannot open a socket in ${describe(this.pod)}'s netns for ${dst.address}:${dst.port}`, { error: (error as Error).message });
      return void client.destroy();
    }
    upstream.connect(dst.port, dst.address);
    passthrough(client, upstream, { listener: listenerName(direction), destination: `${dst.address}:${dst.port}` }, this.telemetry, this.sockets);
  }

  async close(): Promise<void> {
    if (this.netns) this.addon.netnsClose(this.netns);
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
  }
}

export function describe(pod: PodIdentity): string {
  return pod.namespace ? `pod ${pod.namespace}/${pod.name}` : `container ${pod.containerId}`;
}
