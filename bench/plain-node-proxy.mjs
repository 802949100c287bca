// bench/proxy.ts: the plain Node.js proxy of the data-path issue, the yardstick sluice is measured
// against: http.createServer + undici Pool.request, the request streamed to the pool and the
// response streamed back, keep-alive on both sides, hop-by-hop headers dropped. Nothing else.
// Usage: node bench/plain-node-proxy.mjs PORT UPSTREAM_PORT (plain JavaScript: no loader in the process).

import { createServer } from 'node:http';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 128, keepAliveTimeout: 300_000 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function endToEnd(headers) {
  const out = {};
  for (const name in headers) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
  return out;
}

const server = createServer({ keepAliveTimeout: 300_000 }, (req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool
    .request({ method: req.method, path: req.url, headers: endToEnd(req.headers), body: hasBody ? req : null })
    .then(({ statusCode, headers, body }) => {
      res.writeHead(statusCode, endToEnd(headers));
      pipeline(body, res, () => {});
    })
    .catch((error) => {
      if (res.headersSent) return res.destroy(error);
      res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream: ${error.code ?? error.message}\n`);
    });
});
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  pool.destroy().then(() => process.exit(0));
});
