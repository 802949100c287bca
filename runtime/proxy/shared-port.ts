// Listening on a node port that a second proxy may share during an upgrade (docs/operations.md#upgrade):
// with a socket factory registered (the capture addon's listenShared, which sets SO_REUSEPORT and
// steers new connections to the newer socket), the old and the new proxy both hold the port and
// the new one gets every new connection as soon as it listens; without one, a plain listen.

import type { Server } from 'node:net';
import { isIP } from 'node:net';

/** A listening socket's fd on host:port (an address literal), shared with another process's. */
export type SharedSocketFactory = (host: string, port: number, v6only: boolean) => number;

let factory: SharedSocketFactory | undefined;

/** Registers (or, with undefined, removes) the factory; the CLI does so where the capture addon loads. */
export function shareListeningPorts(f: SharedSocketFactory | undefined): void {
  factory = f;
}

/**
 * Listens on host:port: shared when a factory is registered and the port is fixed (port 0 is the
 * kernel's choice, never another proxy's), else as `server.listen(port, host)`. An error (the port
 * held by a process that does not share it) is the server's 'error' event, as with a plain listen.
 */
export function listenOn(server: Server, host: string, port: number, callback?: () => void): void {
  if (factory && port !== 0 && isIP(host) !== 0) {
    let fd: number;
    try {
      fd = factory(host, port, false);
    } catch (error) {
      // As Node words a failed listen, so callers and operators read the same error either way.
      const e = error as Error & { code?: string };
      const shaped = Object.assign(new Error(`listen ${e.code ?? 'EIO'}: ${e.message}`, { cause: error }), { code: e.code, syscall: 'listen', address: host, port });
      process.nextTick(() => server.emit('error', shaped));
      return;
    }
    server.listen({ fd }, callback);
    return;
  }
  server.listen(port, host, callback);
}
