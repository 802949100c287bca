// HTTP/1.1 upgrades. One the listener allows (`upgrades`, WebSocket by default) passes the
// request-header filters and the route table like any request (a filter may refuse it) and goes to
// an endpoint of the route's cluster; only the upstream's 101 splices the two connections, bytes
// then flowing both ways untouched. Any other answer passes the response filters and is relayed as
// a plain response, and the client connection goes on speaking HTTP/1.1. Any other Upgrade (h2c
// always) is removed and the request handed back to the HTTP/1.1 server as a plain one: no Upgrade
// header takes a connection past the filters (Envoy's upgrade_configs).

import { STATUS_CODES, ServerResponse, request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { CONFIG_DEFAULTS } from '../config/index.ts';
import { log } from '../log.ts';
import { classifyUpstreamFailure, upstreamFailureStatus } from './upstream-errors.ts';
import { HeaderMap } from '../host/header-map.ts';
import type { HttpStream, Outcome } from '../host/http-stream.ts';
import { EMPTY } from '../host/stream.ts';
import type { ListenerState } from './layers/context.ts';
import { pickWeighted } from './router.ts';

/** Headers that belong to one connection: never relayed from the upstream's non-101 answer. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'trailer', 'upgrade']);

/** Client sockets that already have Sluice's error listener (a connection may upgrade many times). */
const guarded = new WeakSet<Socket>();

export async function proxyUpgrade(state: ListenerState, req: IncomingMessage, client: Socket, head: Buffer, sockets: Set<Socket>, resume: (bytes: Buffer) => void): Promise<void> {
  if (!guarded.has(client)) {
    guarded.add(client);
    client.on('error', () => client.destroy());
  }
  if (!upgradeAllowed(req, state.config.upgrades ?? CONFIG_DEFAULTS.upgrades)) return resume(Buffer.concat([plainRequestHead(req), head]));
  const stream = state.chain.stream({
    source: { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
    destination: { address: client.localAddress ?? '', port: client.localPort ?? 0 },
    protocol: `HTTP/${req.httpVersion}`,
  });
  try {
    const headers = new HeaderMap([
      [':method', req.method ?? 'GET'],
      [':path', req.url ?? '/'],
      [':authority', req.headers.host ?? ''],
      [':scheme', 'http'],
    ]);
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].toLowerCase() !== 'host') headers.add(req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]);
    const out: Outcome = await stream.requestHeaders(headers, true);
    if (out.kind === 'reset') return void client.destroy();
    if (out.kind === 'local-reply') return rawReply(client, out.reply.status, Buffer.from(out.reply.body));
    const route = state.router.route(headers);
    if (!route || route.action.kind !== 'cluster') return rawReply(client, 404, Buffer.from('sluice: no route for this upgrade\n'));
    const cluster = state.clusters.get(stream.state.property('sluice\u0000cluster') ?? pickWeighted(route.action.clusters));
    const host = cluster?.pick();
    if (!host) return rawReply(client, 503, Buffer.from('sluice: no upstream for this upgrade\n'));
    // The request as the filters left it; Connection and Upgrade stay: they are the point.
    const sent: string[] = ['host', route.action.hostRewrite ?? headers.get(':authority') ?? ''];
    for (const [k, v] of headers) if (!k.startsWith(':')) sent.push(k, v);
    await exchange(stream, client, req, head, sockets, resume, {
      host: host.endpoint.host,
      port: host.endpoint.port,
      address: host.address,
      method: headers.get(':method') ?? 'GET',
      path: headers.get(':path') ?? '/',
      headers: sent,
      timeoutMs: route.timeoutMs,
    });
  } catch (error) {
    // A bug here must cost one connection, never the proxy.
    log('error', 'upgrade failed', { error: String((error as Error)?.stack ?? error) });
    client.destroy();
  } finally {
    stream.end();
  }
}

/**
 * True when the request's Upgrade is one the listener honours: a single protocol named in
 * `allowed`, never h2c, on HTTP/1.1 (RFC 9110 §7.8: ignored in HTTP/1.0), without a request body
 * (one with a body is proxied as a plain request, so its body is framed as HTTP).
 */
export function upgradeAllowed(req: IncomingMessage, allowed: readonly string[]): boolean {
  if (req.httpVersion !== '1.1') return false;
  if ((req.headers['content-length'] ?? '0') !== '0' || req.headers['transfer-encoding'] !== undefined) return false;
  const value = (req.headers.upgrade ?? '').trim().toLowerCase();
  const name = value.split('/')[0]!;
  return !value.includes(',') && name !== 'h2c' && allowed.includes(name);
}

/**
 * The request's head as it came (in origin form, request-head.ts having normalised it), less
 * Upgrade and HTTP2-Settings and their Connection tokens.
 */
export function plainRequestHead(req: IncomingMessage): Buffer {
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  if (req.headers.host !== undefined) text += `host: ${req.headers.host}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name === 'upgrade' || name === 'http2-settings' || name === 'host') continue;
    if (name === 'connection') {
      const kept = raw[i + 1].split(',').map((s) => s.trim()).filter((s) => s !== '' && !/^(upgrade|http2-settings)$/i.test(s));
      if (kept.length > 0) text += `${raw[i]}: ${kept.join(', ')}\r\n`;
      continue;
    }
    text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  // llhttp hands header bytes over one to a character: latin1 gives them back unchanged.
  return Buffer.from(`${text}\r\n`, 'latin1');
}

interface UpstreamTarget {
  host: string;
  port: number;
  address: string;
  method: string;
  path: string;
  headers: string[];
  timeoutMs: number;
}

/** Sends the upgrade request upstream; splices on 101, relays any other answer as a response. */
function exchange(stream: HttpStream, client: Socket, req: IncomingMessage, head: Buffer, sockets: Set<Socket>, resume: (bytes: Buffer) => void, target: UpstreamTarget): Promise<void> {
  return new Promise<void>((done) => {
    const upstream = httpRequest({ host: target.host, port: target.port, method: target.method, path: target.path, headers: target.headers, agent: false, setHost: false });
    const clientGone = () => upstream.destroy();
    client.once('close', clientGone);
    let answered = false;
    const settle = () => {
      client.removeListener('close', clientGone);
      done();
    };
    if (target.timeoutMs > 0) {
      upstream.setTimeout(target.timeoutMs, () => upstream.destroy(new Error(`the upstream did not answer within the route's timeout of ${target.timeoutMs} ms`, { cause: 'timeout' })));
    }
    upstream.on('upgrade', (res: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
      answered = true;
      splice(client, socket, res, upstreamHead, head, sockets);
      settle();
    });
    upstream.on('response', (res: IncomingMessage) => {
      answered = true;
      relay(stream, client, req, res, head, resume).catch(() => client.destroy()).finally(settle);
    });
    upstream.on('error', (error: Error & { code?: string }) => {
      if (!answered && !client.destroyed) {
        const status = upstreamFailureStatus(error.cause === 'timeout' ? 'SLUICE_ERR_UPSTREAM_TIMEOUT' : classifyUpstreamFailure(error));
        rawReply(client, status, Buffer.from(`sluice: upgrade to ${target.address} failed: ${error.message}\n`));
      }
      settle();
    });
    upstream.end();
  });
}

/** The upstream switched protocols: its 101 goes to the client, then bytes flow both ways untouched. */
function splice(client: Socket, upstream: Socket, res: IncomingMessage, upstreamHead: Buffer, head: Buffer, sockets: Set<Socket>): void {
  let text = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\n`;
  for (let i = 0; i < res.rawHeaders.length; i += 2) text += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
  upstream.setTimeout(0);
  sockets.add(client);
  sockets.add(upstream);
  const close = () => {
    client.destroy();
    upstream.destroy();
    sockets.delete(client);
    sockets.delete(upstream);
  };
  upstream.on('error', close);
  upstream.on('close', close);
  client.on('close', close);
  client.write(Buffer.from(`${text}\r\n`, 'latin1'));
  if (upstreamHead.byteLength > 0) client.write(upstreamHead);
  if (head.byteLength > 0) upstream.write(head);
  client.pipe(upstream);
  upstream.pipe(client);
}

/**
 * The upstream answered the upgrade with something else than 101: that answer passes the response
 * filters and goes to the client as an ordinary response, and the client connection goes back to
 * HTTP/1.1 parsing (its next request passes the filters), or closes when the client asked for that.
 */
async function relay(stream: HttpStream, client: Socket, req: IncomingMessage, res: IncomingMessage, head: Buffer, resume: (bytes: Buffer) => void): Promise<void> {
  const named = new Set(String(res.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()));
  const headers = new HeaderMap([[':status', String(res.statusCode ?? 502)]]);
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i].toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named.has(name)) headers.add(name, res.rawHeaders[i + 1]);
  }
  const out = new ServerResponse(req);
  out.on('error', () => client.destroy());
  out.assignSocket(client);
  out.shouldKeepAlive = !/(^|,)\s*close\s*(,|$)/i.test(String(req.headers.connection ?? ''));
  res.on('error', () => client.destroy());
  const sent = new Promise<boolean>((resolve) => {
    out.once('finish', () => resolve(true));
    out.once('close', () => resolve(false));
  });

  let outcome = await stream.responseHeaders(headers, false);
  if (outcome.kind === 'reset') {
    res.destroy();
    return void client.destroy();
  }
  if (outcome.kind === 'local-reply') {
    res.destroy();
    const reply = outcome.reply;
    out.writeHead(reply.status, [...withoutPseudo(reply.headers, 'content-length'), 'content-length', String(reply.body.byteLength)]);
    out.end(reply.body);
  } else {
    out.writeHead(Number(headers.get(':status')), withoutPseudo(headers));
    for await (const chunk of res) {
      outcome = await stream.responseBody(chunk as Buffer, false);
      // The client already has the headers: a late local reply or reset can only end the connection.
      if (outcome.kind !== 'continue') return void client.destroy();
      if (outcome.data && outcome.data.byteLength > 0 && !out.write(outcome.data)) await drained(client);
    }
    outcome = await stream.responseBody(EMPTY, true);
    if (outcome.kind !== 'continue') return void client.destroy();
    out.end(outcome.data && outcome.data.byteLength > 0 ? outcome.data : undefined);
  }
  if (!(await sent)) return;
  out.detachSocket(client);
  if (out.shouldKeepAlive) resume(head);
  else client.end();
}

/** The headers to write: no pseudo-headers, nor `leaveOut`. */
function withoutPseudo(headers: HeaderMap, leaveOut?: string): string[] {
  const out: string[] = [];
  for (const [k, v] of headers) if (!k.startsWith(':') && k !== leaveOut) out.push(k, v);
  return out;
}

/** Resolves once the socket's write buffer drained, or it closed. */
function drained(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.removeListener('drain', done);
      socket.removeListener('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}

function rawReply(client: Socket, status: number, body: Buffer): void {
  client.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n\r\n${body.toString()}`);
}
