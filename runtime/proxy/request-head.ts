// Checks of a request's head that node's HTTP parsers leave to the proxy, made before the request
// reaches the filters (where Envoy's codec makes them): the header count limit (a listener's
// maxRequestHeaders, Envoy's max_headers_count, 431), one valid Host on HTTP/1.x (RFC 9112 §3.2,
// 400), the major version (505), and an absolute-form target, turned into origin form with the
// URI's authority as Host (RFC 9112 §3.2.2).

import { STATUS_CODES } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import type { DownstreamRequest, DownstreamResponse } from './downstream.ts';

export interface Refusal {
  readonly status: 400 | 431 | 505;
  readonly text: string;
}

/**
 * What is wrong with the request's head, or undefined when nothing is. An absolute-form target
 * is rewritten in place (`req.url` to its path and query, Host to its authority), so routing,
 * filters, the access log and the upstream all see origin form.
 */
export function checkRequestHead(req: DownstreamRequest, maxHeaders: number): Refusal | undefined {
  const raw = req.rawHeaders;
  let count = 0;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].charCodeAt(0) === 58 /* ':' HTTP/2 pseudo-header */) continue;
    count++;
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++;
  }
  if (count > maxHeaders) return { status: 431, text: `sluice: the request has ${count} headers, more than this listener allows (maxRequestHeaders ${maxHeaders})\n` };
  if ((req as Http2ServerRequest).stream !== undefined) return undefined;

  if (req.httpVersionMajor !== 1) {
    return {
      status: 505,
      text: req.httpVersionMajor === 2
        ? `sluice: HTTP/${req.httpVersion} in an HTTP/1.x request line; HTTP/2 starts with its connection preface (prior knowledge) or h2 by ALPN\n`
        : `sluice: HTTP/${req.httpVersion} is not supported; this port speaks HTTP/1.1 and HTTP/2\n`,
    };
  }
  if (hosts > 1) return { status: 400, text: `sluice: the request has ${hosts} Host headers; HTTP/1.1 allows exactly one (RFC 9112 section 3.2)\n` };
  const host = req.headers.host;
  if (host === undefined && req.httpVersionMinor >= 1) return { status: 400, text: 'sluice: an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)\n' };
  if (host !== undefined && !validAuthority(host)) return { status: 400, text: `sluice: the Host header ${JSON.stringify(host)} is not a valid host[:port] (RFC 9112 section 3.2)\n` };

  const target = req.url ?? '/';
  if (target.startsWith('/') || target === '*') return undefined;
  const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(target);
  if (!absolute || absolute[1] === '' || !validAuthority(absolute[1]!)) {
    return { status: 400, text: `sluice: the request target ${JSON.stringify(target)} is not an absolute http(s) URI with a host (RFC 9112 section 3.2.2)\n` };
  }
  // RFC 9112 §3.2.2: the authority in the target wins over Host.
  req.url = absolute[2]!.startsWith('/') ? absolute[2]! : `/${absolute[2]!}`;
  req.headers.host = absolute[1]!;
  return undefined;
}

/** Answers a refused request; HTTP/1.x connections close after it (the rest of the request is not read). */
export function refuse(req: DownstreamRequest, res: DownstreamResponse, refusal: Refusal): void {
  const body = Buffer.from(refusal.text);
  const headers = ['content-type', 'text/plain', 'content-length', String(body.byteLength)];
  if ((req as Http2ServerRequest).stream === undefined) headers.push('connection', 'close');
  res.writeHead(refusal.status, headers);
  res.end(body);
}

/** The same on a connection an upgrade request took from the HTTP/1.1 server. */
export function refuseOnSocket(socket: Socket, refusal: Refusal): void {
  const body = Buffer.from(refusal.text);
  socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\ncontent-type: text/plain\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n\r\n`), body]));
}

// RFC 3986 host: an IP literal in brackets, or a reg-name / IPv4 address (unreserved, pct-encoded,
// sub-delims); then an optional port. No userinfo ("@"), no path, no spaces.
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::([0-9]*))?$/;

function validAuthority(text: string): boolean {
  const m = AUTHORITY.exec(text);
  return m !== null && (m[1] === undefined || m[1] === '' || Number(m[1]) <= 65535);
}
