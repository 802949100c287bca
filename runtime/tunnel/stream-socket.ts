// A tunnel stream dressed as the socket the proxy's HTTP stack, its upstream pools and TCP
// passthrough expect: the addresses of the connection it carries, byte counts, the socket calls
// they make, and the connection facts filters read (connection.mtls, the peer's URI SAN,
// sluice.peer_identity). The stream may come later (tunnelSocket): bytes written before it
// opens wait for it, and 'connect' is emitted once it is there, as a net.Socket's.

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { setConnectionFacts } from '../proxy/downstream.ts';
import type { ConnectionInfo } from '../host/stream.ts';

export interface StreamSocketFacts {
  remote: { address: string; port: number };
  local: { address: string; port: number };
  connection: Omit<ConnectionInfo, 'id'>;
}

type Pending = [chunk: Buffer, encoding: BufferEncoding, done: (error?: Error | null) => void];

/** `stream` (bytes of one tunneled connection) as a Socket-like Duplex. */
export function streamSocket(stream: Duplex, facts: StreamSocketFacts): Socket {
  const s = socketLike(facts);
  s.attach(stream);
  return s.socket;
}

/**
 * A Socket-like Duplex whose stream `open()` gives later (a CONNECT through the tunnel). A failed
 * open destroys it with that error (an upstream pool sees a connect failure, with its code).
 */
export function tunnelSocket(open: () => Promise<Duplex>, facts: StreamSocketFacts): Socket {
  const s = socketLike(facts);
  open().then(
    (stream) => {
      if (s.socket.destroyed) return void stream.destroy();
      s.attach(stream);
      s.socket.emit('connect');
    },
    (error: Error) => s.socket.destroy(error),
  );
  return s.socket;
}

function socketLike(facts: StreamSocketFacts): { socket: Socket; attach(stream: Duplex): void } {
  let stream: Duplex | undefined;
  let bytesRead = 0;
  let bytesWritten = 0;
  const pending: Pending[] = [];
  let ending: ((error?: Error | null) => void) | undefined;
  const wrapper = new Duplex({
    allowHalfOpen: true,
    read: () => void stream?.resume(),
    write: (chunk: Buffer, encoding, done) => {
      bytesWritten += chunk.length;
      if (stream) stream.write(chunk, encoding, done);
      else pending.push([chunk, encoding, done]);
    },
    final: (done) => {
      if (stream) stream.end(done);
      else ending = done;
    },
    destroy: (error, done) => {
      stream?.destroy(error ?? undefined);
      done(error);
    },
  });
  const attach = (s: Duplex) => {
    stream = s;
    s.on('data', (chunk: Buffer) => {
      bytesRead += chunk.length;
      if (!wrapper.push(chunk)) s.pause();
    });
    s.once('end', () => wrapper.push(null));
    s.once('close', () => wrapper.destroy());
    s.on('error', () => {});
    for (const [chunk, encoding, done] of pending.splice(0)) s.write(chunk, encoding, done);
    if (ending) s.end(ending);
  };
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
      (stream as unknown as { setTimeout?: (ms: number, fn?: () => void) => void } | undefined)?.setTimeout?.(ms, fn);
      return wrapper;
    },
    setNoDelay: () => wrapper,
    setKeepAlive: () => wrapper,
    resetAndDestroy: () => wrapper.destroy(),
  });
  setConnectionFacts(wrapper, facts.connection);
  return { socket: wrapper as unknown as Socket, attach };
}
