// `sluice status`: what the node proxy on this machine runs, read from its admin endpoint's
// /status: where its config comes from and its version, each filter's health, the captured pods.

import { get } from 'node:http';
import { parseArgs } from 'node:util';
import { parseHostPort } from './metrics-listener.ts';

interface FilterStatus {
  name: string;
  digest?: string;
  state?: string;
  failStrategy?: string;
  /** Why the node has no module for it (state unavailable). */
  unavailable?: string;
  streams?: number;
  failures?: number;
  quarantines?: number;
  warnings?: string[];
  lastFailure?: { kind?: string; message?: string; callback?: string; at?: number };
}

/** A filter that failed this recently counts as failing; older failures are history. */
export const FAILING_WINDOW_MS = 5 * 60_000;
interface PodStatus {
  namespace?: string;
  name?: string;
  containerId?: string;
  outbound?: number;
  inbound?: number;
  refused?: number;
}
interface Status {
  ready: boolean;
  source?: { file?: string; controller?: string; node?: string };
  version?: string;
  filters: FilterStatus[];
  capturedPods?: PodStatus[] | null;
}

export const DEFAULT_ADMIN = '127.0.0.1:15000';

/** Exit codes: 0 ready and no filter quarantined, 1 not ready or a filter quarantined, 2 bad flags, 3 no answer. */
export async function runStatus(args: string[], out: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  const { values } = parseArgs({ args, options: { admin: { type: 'string', default: DEFAULT_ADMIN }, json: { type: 'boolean', default: false } } });
  const { host, port } = parseHostPort('--admin', values.admin!, DEFAULT_ADMIN);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/status`;
  let status: Status;
  try {
    const res = await getText(url);
    if (res.status === 404) {
      process.stderr.write(`sluice status: ${url} answered 404: the proxy there predates /status; upgrade it, or read /filters and /config_dump\n`);
      return 3;
    }
    if (res.status !== 200) {
      process.stderr.write(`sluice status: ${url} answered ${res.status}: ${res.body.trim()}\n`);
      return 3;
    }
    status = JSON.parse(res.body) as Status;
  } catch (error) {
    const e = error as Error & { code?: string };
    process.stderr.write(`sluice status: no answer from the node proxy's admin endpoint at ${url} (${e.code ?? e.message}); is \`sluice run\` running here? Its admin address is admin.address in its config (--admin to point elsewhere)\n`);
    return 3;
  }
  const unhealthy = !status.ready || status.filters.some((f) => f.state === 'quarantined' || (f.state === 'unavailable' && f.failStrategy !== 'FAIL_OPEN'));
  if (values.json) {
    out(`${JSON.stringify(status, null, 2)}\n`);
    return unhealthy ? 1 : 0;
  }
  out(render(status, values.admin!));
  return unhealthy ? 1 : 0;
}

/** A GET with node:http (fetch refuses some ports, and this is loopback plain HTTP anyway). */
function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer within 5 s'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

function render(s: Status, admin: string): string {
  const lines: string[] = [];
  lines.push(`proxy:    ${s.ready ? 'ready' : 'NOT READY'} (admin ${admin})`);
  const src = s.source ?? {};
  if (src.controller) lines.push(`config:   from the controller ${src.controller} for node ${src.node}, version ${s.version || '(none yet)'}`);
  else if (src.file) lines.push(`config:   file ${src.file}${s.version ? `, version ${s.version}` : ''}`);
  lines.push(`filters:  ${s.filters.length}`);
  for (const f of s.filters) {
    const recent = f.lastFailure?.at !== undefined && Date.now() - f.lastFailure.at < FAILING_WINDOW_MS;
    const health = f.state === 'quarantined' ? 'QUARANTINED' : f.state === 'unavailable' ? 'UNAVAILABLE' : recent ? 'failing' : 'healthy';
    lines.push(`  ${f.name}  ${f.state ?? '?'}  ${health}  ${f.failStrategy ?? ''}  sha256:${(f.digest ?? '').slice(0, 12)}  streams ${f.streams ?? 0}  failures ${f.failures ?? 0}  quarantines ${f.quarantines ?? 0}`);
    if (f.unavailable) lines.push(`    unavailable: ${f.unavailable}`);
    if (f.lastFailure && (recent || f.state === 'quarantined')) {
      const ago = Math.round((Date.now() - (f.lastFailure.at ?? Date.now())) / 1000);
      lines.push(`    last failure ${ago} s ago in ${f.lastFailure.callback ?? '?'}: ${f.lastFailure.kind ?? ''} ${f.lastFailure.message ?? ''}`.trimEnd());
    }
    for (const w of f.warnings ?? []) lines.push(`    warning: ${w}`);
  }
  if (s.capturedPods === null || s.capturedPods === undefined) lines.push('capture:  off (no --capture-socket)');
  else {
    lines.push(`captured pods: ${s.capturedPods.length}`);
    for (const p of s.capturedPods) lines.push(`  ${p.namespace || '?'}/${p.name || p.containerId}  outbound ${p.outbound ?? 0}  inbound ${p.inbound ?? 0}  refused ${p.refused ?? 0}`);
  }
  return `${lines.join('\n')}\n`;
}
