// `sluice demo` (what `npm start` runs): the example filters in front of a built-in upstream that
// echoes what it received, on 127.0.0.1, with curl commands that show each filter at work.
// It drives the real host exactly as the proxy does; `sluice run` (the proxy) replaces it.

import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';
import { FilterChain, HeaderMap, Plugin, createEnvironment, type Outcome } from '../host/index.ts';

interface DemoFilter {
  name: string;
  wasm: string;
  configuration: unknown;
  tries: string[];
}

const FILTERS: DemoFilter[] = [
  {
    name: 'hello',
    wasm: 'build/filters/hello.wasm',
    configuration: { header: 'x-hello', value: 'world', denyPath: '/forbidden' },
    tries: ['curl -si http://127.0.0.1:PORT/anything      # the response carries x-hello: world', 'curl -si http://127.0.0.1:PORT/forbidden     # 403, answered by the filter itself'],
  },
];

export async function runDemo({ port }: { port: number }): Promise<void> {
  const env = createEnvironment();
  const plugins: Plugin[] = [];
  for (const f of FILTERS) {
    const bytes = await readFile(join(packageRoot(), f.wasm)).catch(() => {
      throw new Error(`${f.wasm} is missing; run \`npm run build\` first`);
    });
    plugins.push(await Plugin.load(bytes, { name: f.name, rootId: f.name, configuration: f.configuration }, env));
  }
  const chain = new FilterChain(plugins, env);
  const server = createServer((req, res) => {
    handle(chain, req, res).catch((error) => {
      process.stderr.write(`demo: ${(error as Error).stack}\n`);
      if (!res.headersSent) res.writeHead(500).end('sluice demo: internal error\n');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as { port: number }).port;
  process.stdout.write(`sluice demo: ${plugins.map((p) => p.name).join(', ')} in front of an echo upstream on http://127.0.0.1:${actual}\n\ntry:\n`);
  for (const f of FILTERS) for (const t of f.tries) process.stdout.write(`  ${t.replaceAll('PORT', String(actual))}\n`);
  process.stdout.write('\nCtrl-C to stop.\n');
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  for (const p of plugins) p.close();
}

async function handle(chain: FilterChain, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const stream = chain.stream({
    source: { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 },
    destination: { address: req.socket.localAddress ?? '', port: req.socket.localPort ?? 0 },
    protocol: `HTTP/${req.httpVersion}`,
  });
  try {
    const headers = new HeaderMap([
      [':method', req.method ?? 'GET'],
      [':path', req.url ?? '/'],
      [':authority', req.headers.host ?? ''],
      [':scheme', 'http'],
    ]);
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i].toLowerCase();
      if (k !== 'host') headers.add(k, req.rawHeaders[i + 1]);
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    let out = await stream.requestHeaders(headers, body.length === 0);
    if (out.kind === 'continue' && body.length > 0) out = await stream.requestBody(body, true);
    if (reply(out, res)) return;
    // The echo upstream: what arrived after the request filters ran.
    const echo = Buffer.from(JSON.stringify({ method: headers.get(':method'), path: headers.get(':path'), headers: headers.toObject() }, null, 2) + '\n');
    const responseHeaders = new HeaderMap([[':status', '200'], ['content-type', 'application/json']]);
    out = await stream.responseHeaders(responseHeaders, false);
    if (reply(out, res)) return;
    out = await stream.responseBody(echo, true);
    if (reply(out, res)) return;
    send(res, responseHeaders, out.kind === 'continue' && out.data ? out.data : echo);
  } finally {
    stream.end();
  }
}

function reply(out: Outcome, res: ServerResponse): boolean {
  if (out.kind === 'reset') {
    res.destroy();
    return true;
  }
  if (out.kind === 'local-reply') {
    send(res, out.reply.headers, out.reply.body);
    return true;
  }
  return false;
}

function send(res: ServerResponse, headers: HeaderMap, body: Uint8Array): void {
  const status = Number(headers.get(':status') ?? 200);
  for (const [k, v] of headers) if (!k.startsWith(':') && k !== 'content-length') res.appendHeader(k, v);
  res.setHeader('content-length', body.byteLength);
  res.writeHead(status).end(body);
}
