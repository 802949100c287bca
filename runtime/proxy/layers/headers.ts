// Header conversions at the edges of the request path: the client's request into the filters'
// HeaderMap, that map into undici's flat list for the upstream, the upstream's answer back into a
// map, and maps into the flat lists node writes to the client. Hop-by-hop headers stop here.

import { randomUUID } from 'node:crypto';
import { HeaderMap } from '../../host/header-map.ts';
import { downstreamSocket, type DownstreamRequest } from '../downstream.ts';
import type { UpstreamResponse } from '../upstream-pool.ts';

/** Connection-level headers that never cross a proxy (RFC 9110 §7.6.1); `te: trailers` is kept (gRPC needs it). */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade', 'http2-settings']);

/** The client's request head as the filters see it, with the forwarding headers a proxy adds. */
export function requestHeaders(req: DownstreamRequest, tls: boolean): HeaderMap {
  const scheme = tls ? 'https' : 'http';
  const headers = new HeaderMap([
    [':method', req.method ?? 'GET'],
    [':path', req.url ?? '/'],
    [':authority', (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? ''],
    [':scheme', scheme],
  ]);
  // Headers the client names in Connection are hop-by-hop too.
  const named = req.headers.connection?.toLowerCase().split(',').map((s) => s.trim());
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i].toLowerCase();
    if (key.charCodeAt(0) === 58 /* ':' */ || key === 'host' || HOP_BY_HOP.has(key) || named?.includes(key)) continue;
    // node's server has already answered 100 Continue (as Envoy does by default); undici refuses
    // the header, and the upstream must not answer it again.
    if (key === 'expect' && /^100-continue$/i.test(raw[i + 1].trim())) continue;
    // TE is hop-by-hop, but "trailers" says the client takes trailers: gRPC needs it through.
    if (key === 'te') {
      if (/\btrailers\b/i.test(raw[i + 1])) headers.add('te', 'trailers');
      continue;
    }
    headers.add(key, raw[i + 1]);
  }
  const peer = downstreamSocket(req).remoteAddress ?? '';
  const forwarded = headers.get('x-forwarded-for');
  headers.set('x-forwarded-for', forwarded ? `${forwarded}, ${peer}` : peer);
  headers.set('x-forwarded-proto', scheme);
  if (!headers.has('x-request-id')) headers.set('x-request-id', randomUUID());
  return headers;
}

/** The filtered request headers as the upstream pool takes them: `host` first, no pseudo-headers. */
export function upstreamHeaders(headers: HeaderMap, hostRewrite: string | undefined): string[] {
  const out: string[] = ['host', hostRewrite ?? headers.get(':authority') ?? ''];
  const raw = headers.raw();
  for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 58 /* ':' */ && !HOP_BY_HOP.has(raw[i])) out.push(raw[i], raw[i + 1]);
  return out;
}

/** The upstream's response head as the filters see it. */
export function responseHeaders(answer: UpstreamResponse): HeaderMap {
  const headers = new HeaderMap([[':status', String(answer.statusCode)]]);
  for (const key in answer.headers) {
    const value = answer.headers[key];
    if (HOP_BY_HOP.has(key) || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.add(key, v);
    else headers.add(key, value);
  }
  return headers;
}

/** The headers to write to the client: no pseudo-headers, no hop-by-hop ones, nor `leaveOut`. */
export function downstreamHeaders(headers: HeaderMap, leaveOut?: string): string[] {
  const out: string[] = [];
  const raw = headers.raw();
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i];
    if (key.charCodeAt(0) !== 58 && !HOP_BY_HOP.has(key) && key !== leaveOut) out.push(key, raw[i + 1]);
  }
  return out;
}

/** The upstream's trailers as a map, or undefined when it sent none. */
export function trailerMap(trailers: UpstreamResponse['trailers']): HeaderMap | undefined {
  let map: HeaderMap | undefined;
  for (const key in trailers) {
    const value = trailers[key];
    if (value === undefined) continue;
    map ??= new HeaderMap([]);
    for (const v of [value].flat()) map.add(key, v);
  }
  return map;
}

/** Trailers as node's addTrailers takes them (repeated names joined). */
export function downstreamTrailers(trailers: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  const raw = trailers.raw();
  for (let i = 0; i < raw.length; i += 2) out[raw[i]] = out[raw[i]] === undefined ? raw[i + 1] : `${out[raw[i]]}, ${raw[i + 1]}`;
  return out;
}
