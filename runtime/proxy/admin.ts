// The admin endpoint (loopback by default, port 15000): readiness, health, Prometheus metrics,
// the active snapshot and each filter's state, and an index page a person can read. It answers
// only to its own host names and refuses what a browser page elsewhere could send (admin-guard.ts).

import { createServer, type Server } from 'node:http';
import type { Snapshot } from '../config/snapshot.ts';
import { refusal } from './admin-guard.ts';
import { redactedSnapshot } from './config-dump.ts';

/** What the admin pages show: one proxy's, or (with worker processes) the sum of theirs. */
export interface AdminView {
  readonly ready: boolean;
  readonly snapshot: Snapshot;
  metrics(): string | Promise<string>;
  filterStatus(): unknown;
  /** Worker processes, when there are several. */
  workers?(): unknown;
  reload?: () => Promise<void>;
  /** What `sluice run` adds to /status: where the config comes from, its version, captured pods. */
  status?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
}

const INDEX = `sluice admin

  /ready              200 once every listener is bound and every filter configured; 503 otherwise
  /healthz            200 while the process is up
  /stats/prometheus   metrics in the Prometheus text format
  /config_dump        the active snapshot, as JSON (what may carry a secret redacted; see admin.configDump.show)
  /filters            each filter: module digest, state, failures, quarantines
  /status             what this proxy runs, as JSON: config source and version, filters, captured pods (sluice status)
  /workers            with --workers: each worker process, its pid and requests served
  POST /reload        re-read the config file and apply it (sluice run)
`;

export function adminServer(proxy: AdminView): Server {
  return createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    };
    const refused = refusal(req, proxy.snapshot.admin);
    if (refused !== undefined) return send(403, 'text/plain; charset=utf-8', refused);
    switch (path) {
      case '/':
        return send(200, 'text/plain; charset=utf-8', INDEX);
      case '/ready':
        return proxy.ready ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', 'not ready\n');
      case '/healthz':
        return send(200, 'text/plain', 'ok\n');
      case '/stats/prometheus':
        return send(200, 'text/plain; version=0.0.4', await proxy.metrics());
      case '/config_dump':
        return send(200, 'application/json', JSON.stringify(redactedSnapshot(proxy.snapshot), null, 2) + '\n');
      case '/filters':
        return send(200, 'application/json', JSON.stringify(await proxy.filterStatus(), null, 2) + '\n');
      case '/status':
        return send(200, 'application/json', JSON.stringify({ ready: proxy.ready, ...(await proxy.status?.()), filters: await proxy.filterStatus() }, null, 2) + '\n');
      case '/workers':
        if (!proxy.workers) return send(404, 'text/plain', 'one process, no workers (sluice run --workers N starts several)\n');
        return send(200, 'application/json', JSON.stringify(await proxy.workers(), null, 2) + '\n');
      case '/reload':
        if (req.method !== 'POST') return send(405, 'text/plain', 'use POST /reload\n');
        if (!proxy.reload) return send(404, 'text/plain', 'this proxy has no config file to reload\n');
        return void proxy.reload().then(
          () => send(200, 'text/plain', 'reloaded\n'),
          (error: Error) => send(400, 'text/plain', `reload refused, the running config stays: ${error.message}\n`),
        );
      default:
        return send(404, 'text/plain', `no admin page ${path}; see /\n`);
    }
  });
}
