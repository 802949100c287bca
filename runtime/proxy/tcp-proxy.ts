// Plain TCP passthrough on ports declared as tcp: each connection goes to an endpoint of the
// listener's cluster, bytes copied both ways untouched, counted in Istio's TCP metrics.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { PeerLabels } from './peer-labels.ts';
import type { Telemetry } from './telemetry.ts';
import type { Cluster } from './upstreams.ts';

export interface TcpListenerState {
  readonly name: string;
  readonly cluster: Cluster;
}

/** A tcp listener's server; `state()` gives the current snapshot's state for each new connection. */
export function tcpServer(state: () => TcpListenerState, telemetry: Telemetry, sockets: Set<Socket>): Server {
  return createServer((client) => {
    const { name, cluster } = state();
    const host = cluster.pick();
    if (!host) return void client.destroy();
    passthrough(client, connect(host.endpoint.port, host.endpoint.host), { listener: name, destination: cluster.name }, telemetry, sockets);
  });
}

/**
 * Copies bytes both ways between `client` and an `upstream` already connecting, counts the
 * connection under `labels` in the TCP metrics, and tracks both sockets in `sockets` (for a drain)
 * until either side closes. Also used by capture for connections to their original destination.
 */
export function passthrough(client: Socket, upstream: Socket, labels: { listener: string; destination: string; peers?: PeerLabels }, telemetry: Telemetry, sockets: Set<Socket>): void {
  sockets.add(client);
  sockets.add(upstream);
  telemetry.tcpOpened(labels.listener, labels.destination, labels.peers);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    client.destroy();
    upstream.destroy();
    sockets.delete(client);
    sockets.delete(upstream);
    telemetry.tcpClosed(labels.listener, labels.destination, client.bytesRead, client.bytesWritten, labels.peers);
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
  // Half-close is passed on: a client that ends its side lets the upstream answer, and back.
  client.pipe(upstream);
  upstream.pipe(client);
}
