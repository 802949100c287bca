// `sluice run --metrics-listen HOST:PORT`: a read-only endpoint for Prometheus and kubelet probes
// (/healthz, /ready, /stats/prometheus), apart from the admin endpoint, so that the admin (config
// dump, reload) can stay on loopback while the metrics are reachable on the node's address.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SluiceError } from '../errors.ts';
import { listenOn } from '../proxy/shared-port.ts';

/** What the endpoint reads; undefined while nothing serves yet (node mode before its first config). */
export interface MetricsSource {
  readonly ready: boolean;
  metrics(): string | Promise<string>;
}

export function parseHostPort(flag: string, text: string, example = '0.0.0.0:15020'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new SluiceError('SLUICE_ERR_CONFIG', `${flag} must be HOST:PORT, e.g. ${example}, got "${text}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function startMetricsListener(address: string, source: () => MetricsSource | undefined): Promise<{ server: Server; address: AddressInfo }> {
  const { host, port } = parseHostPort('--metrics-listen', address);
  const server = createServer(async (req, res) => {
    const send = (status: number, type: string, body: string) => res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'read-only: GET /healthz, /ready or /stats/prometheus\n');
    const s = source();
    switch ((req.url ?? '/').split('?')[0]) {
      case '/healthz':
        return send(200, 'text/plain', 'ok\n');
      case '/ready':
        return s?.ready ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', s ? 'not ready\n' : 'no config yet (waiting for the controller or the last good config)\n');
      case '/stats/prometheus':
        return send(200, 'text/plain; version=0.0.4', s ? await s.metrics() : '');
      default:
        return send(404, 'text/plain', 'this port serves /healthz, /ready and /stats/prometheus; the admin endpoint has the rest\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: Error & { code?: string }) =>
      reject(new SluiceError('SLUICE_ERR_CONFIG', `--metrics-listen ${address}: cannot listen (${error.code ?? error.message}); is another proxy on this node using the port?`, { cause: error })));
    listenOn(server, host, port, () => resolve());
  });
  return { server, address: server.address() as AddressInfo };
}
