// The address a client dialled when it is not the socket's local address: a captured connection
// was redirected to the proxy's listener in the pod (127.0.0.1:15001), and filters must see where
// it was going (destination.address / destination.port), as Envoy's original_dst listener does.

import type { Socket } from 'node:net';

export interface Destination {
  readonly address: string;
  readonly port: number;
}

const dialled = new WeakMap<Socket, Destination>();

/** Records that `socket`'s client dialled `destination` (capture, before the socket is served). */
export function setOriginalDestination(socket: Socket, destination: Destination): void {
  dialled.set(socket, destination);
}

/** Where `socket`'s client was going: the recorded original destination, else the socket's own address. */
export function destinationOf(socket: Socket): Destination {
  return dialled.get(socket) ?? { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
}
