// HTTP/1.1 upgrades (WebSocket): the request headers pass the filter chain and the route table
// like any request (a filter may refuse it); then the connection is spliced to an endpoint of the
// route's cluster and bytes flow both ways untouched, the upstream's 101 included.

import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { HeaderMap } from '../host/header-map.ts';
import type { Outcome } from '../host/http-stream.ts';
import type { ListenerState } from './http-proxy.ts';
import { pickWeighted } from './router.ts';

export async function proxyUpgrade(state: ListenerState, req: IncomingMessage, client: Socket, head: Buffer, sockets: Set<Socket>): Promise<void> {
  client.on('error', () => client.destroy());
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
    const upstream = connect(host.endpoint.port, host.endpoint.host);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.on('error', () => {
      if (!upstream.bytesRead) rawReply(client, 503, Buffer.from(`sluice: upstream connect error to ${host.address}\n`));
      close();
    });
    upstream.on('close', close);
    client.on('close', close);
    upstream.on('connect', () => {
      // The request as the filters left it; Connection and Upgrade stay: they are the point.
      let head0 = `${headers.get(':method')} ${headers.get(':path')} HTTP/1.1\r\nhost: ${headers.get(':authority')}\r\n`;
      for (const [k, v] of headers) if (!k.startsWith(':')) head0 += `${k}: ${v}\r\n`;
      upstream.write(head0 + '\r\n');
      if (head.byteLength > 0) upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  } finally {
    stream.end();
  }
}

function rawReply(client: Socket, status: number, body: Buffer): void {
  client.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-length: ${body.byteLength}\r\nconnection: close\r\n\r\n${body.toString()}`);
}
