// The controller's plain-HTTP endpoints: /healthz (the process serves), /readyz (the cache has
// synced) and /metrics (Prometheus text).

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ControllerError } from './errors.ts';

export interface HttpServer {
  address: { host: string; port: number };
  close(): Promise<void>;
}

/** Parses `host:port` or `:port` (all interfaces). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `invalid listen address "${text}": give host:port or :port, e.g. :15014 or 127.0.0.1:0`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port };
}

export async function startHttpServer(listen: string, h: { healthy: () => boolean; ready: () => boolean; metrics: () => string }): Promise<HttpServer> {
  const { host, port } = parseListen(listen);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === '/healthz') return h.healthy() ? text(200, 'ok\n') : text(503, 'unhealthy\n');
    if (path === '/readyz') return h.ready() ? text(200, 'ok\n') : text(503, 'not ready: the WasmFilter cache has not synced yet\n');
    if (path === '/metrics') return text(200, h.metrics(), 'text/plain; version=0.0.4; charset=utf-8');
    text(404, 'not found: try /healthz, /readyz or /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `cannot listen on ${listen}: ${e.message}`, { cause: e })));
    server.listen(port, host, resolve);
  });
  const a = server.address() as AddressInfo;
  return {
    address: { host: a.address, port: a.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
