// Who may use the admin endpoint. It has no authentication and relies on a loopback (or node-local)
// bind, which a browser can still reach: through DNS rebinding (a name of the attacker's that
// resolves to 127.0.0.1) and through cross-site form or fetch POSTs. Both are refused here.

import type { IncomingMessage } from 'node:http';
import type { AdminConfig } from '../config/snapshot.ts';

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];
/** Methods a page elsewhere can make a browser send that change nothing here. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Content types a browser sends cross-origin without a CORS preflight (forms, sendBeacon). */
const SIMPLE_CONTENT_TYPES = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);

/** The host part of a Host header, lower case, IPv6 without brackets; undefined when it is not host[:port]. */
function hostOf(header: string): string | undefined {
  const text = header.trim().toLowerCase();
  const bracketed = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(text);
  if (bracketed) return bracketed[1];
  const plain = /^([^:\s[\]]+?)\.?(?::\d{1,5})?$/.exec(text);
  return plain?.[1];
}

const bracket = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/** The host names a request may carry in `Host`: loopback, the bind address, the address it reached, and the configured ones. */
function allowedHosts(req: IncomingMessage, admin: AdminConfig): string[] {
  const local = req.socket.localAddress?.replace(/^::ffff:/, '').toLowerCase();
  const bound = admin.host.toLowerCase();
  const hosts = [...LOOPBACK_NAMES, ...(bound === '0.0.0.0' || bound === '::' ? [] : [bound]), ...(local ? [local] : []), ...(admin.allowedHosts ?? [])];
  return [...new Set(hosts)];
}

/** Why `req` is refused (the 403 body), or undefined when it may be served. */
export function refusal(req: IncomingMessage, admin: AdminConfig): string | undefined {
  const hostHeader = req.headers.host;
  // No Host (HTTP/1.0): not a browser, nothing to rebind.
  if (hostHeader !== undefined) {
    const allowed = allowedHosts(req, admin);
    const host = hostOf(hostHeader);
    if (host === undefined || !allowed.includes(host)) {
      return (
        `sluice admin: refused Host ${JSON.stringify(hostHeader)}: this endpoint answers only to ${allowed.map(bracket).join(', ')} (any port), ` +
        `which protects it from DNS rebinding. If that name is yours, add it to admin.allowedHosts in the config.\n`
      );
    }
  }
  if (SAFE_METHODS.has(req.method ?? 'GET')) return undefined;
  const origin = req.headers.origin;
  if (origin !== undefined && (hostHeader === undefined || origin.toLowerCase() !== `http://${hostHeader.toLowerCase()}`)) {
    return `sluice admin: refused ${req.method} with Origin ${JSON.stringify(origin)}: state-changing requests are taken only from the admin's own origin${hostHeader === undefined ? '' : ` (http://${hostHeader})`} or from clients that send no Origin (curl -X POST).\n`;
  }
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') {
    return `sluice admin: refused ${req.method} with Sec-Fetch-Site: ${site}: a page on another site sent it; state-changing requests are taken only from the admin's own origin or from clients such as curl.\n`;
  }
  const type = req.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
  if (type !== undefined && SIMPLE_CONTENT_TYPES.has(type)) {
    return `sluice admin: refused ${req.method} with Content-Type ${type}: a browser form can send that from any site; send no body (curl -X POST) or a JSON one (Content-Type: application/json).\n`;
  }
  return undefined;
}
