// A tunnel stream dressed as the socket the proxy's HTTP stack and TCP passthrough expect: the
// addresses of the connection it carries, byte counts, the socket calls they make, and the
// connection facts filters read (connection.mtls, the peer's URI SAN, sluice.peer_identity).

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { setConnectionFacts } from '../proxy/downstream.ts';
import type { ConnectionInfo } from '../host/stream.ts';

export interface StreamSocketFacts {
  remote: { address: string; port: number };
  local: { address: string; port: number };
  connection: Omit<ConnectionInfo, 'id'>;
}

/** `stream` (bytes of one tunneled connection) as a Socket-like Duplex. */
export function streamSocket(stream: Duplex, facts: StreamSocketFacts): Socket {
  let bytesRead = 0;
  let bytesWritten = 0;
  const wrapper = new Duplex({
    allowHalfOpen: true,
    read: () => void stream.resume(),
    write: (chunk: Buffer, encoding, done) => {
      bytesWritten += chunk.length;
      stream.write(chunk, encoding, done);
    },
    final: (done) => void stream.end(done),
    destroy: (error, done) => {
      stream.destroy(error ?? undefined);
      done(error);
    },
  });
  stream.on('data', (chunk: Buffer) => {
    bytesRead += chunk.length;
    if (!wrapper.push(chunk)) stream.pause();
  });
  stream.once('end', () => wrapper.push(null));
  stream.once('close', () => wrapper.destroy());
  stream.on('error', () => {});
  wrapper.on('error', () => {});
  const props: Record<string, unknown> = {
    remoteAddress: facts.remote.address,
    remotePort: facts.remote.port,
    remoteFamily: facts.remote.address.includes(':') ? 'IPv6' : 'IPv4',
    localAddress: facts.local.address,
    localPort: facts.local.port,
  };
  for (const [k, v] of Object.entries(props)) Object.defineProperty(wrapper, k, { value: v });
  Object.defineProperty(wrapper, 'bytesRead', { get: () => bytesRead });
  Object.defineProperty(wrapper, 'bytesWritten', { get: () => bytesWritten });
  Object.assign(wrapper, {
    setTimeout: (ms: number, fn?: () => void) => {
      (stream as unknown as { setTimeout?: (ms: number, fn?: () => void) => void }).setTimeout?.(ms, fn);
      return wrapper;
    },
    setNoDelay: () => wrapper,
    setKeepAlive: () => wrapper,
    resetAndDestroy: () => wrapper.destroy(),
  });
  setConnectionFacts(wrapper, facts.connection);
  return wrapper as unknown as Socket;
}
