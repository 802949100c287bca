// `sluice demo` (what `npm start` runs): the proxy on examples/local/sluice.yaml with the example
// filters, in front of a built-in upstream on 127.0.0.1:18080 that echoes what it received, and
// curl commands that show each part at work.

import { createServer } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';
import { runProxy } from './run.ts';

const UPSTREAM_PORT = 18080;

const TRIES = [
  'curl -si http://127.0.0.1:15001/anything        # proxied to the echo upstream; the response carries x-hello: world',
  'curl -si http://127.0.0.1:15001/forbidden       # 403, answered by the hello filter itself',
  'curl -si http://127.0.0.1:15001/healthz         # a direct response from the route table',
  'curl -si http://127.0.0.1:15001/old             # a redirect from the route table',
  'curl -s  http://127.0.0.1:15000/stats/prometheus | grep -E "istio_requests_total|hello_"',
  'curl -s  http://127.0.0.1:15000/filters         # each filter: digest, state, failures',
];

export async function runDemo(): Promise<number> {
  const upstream = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ upstream: 'echo', method: req.method, path: req.url, headers: req.headers, body }, null, 2) + '\n');
  });
  await new Promise<void>((resolve, reject) => upstream.once('error', reject).listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  const config = join(packageRoot(), 'examples/local/sluice.yaml');
  const code = await runProxy(config, {
    drainMs: 2000,
    onReady: () => process.stdout.write(`\nsluice is running ${config}\nin front of an echo upstream on 127.0.0.1:${UPSTREAM_PORT}. Try:\n\n${TRIES.map((t) => `  ${t}`).join('\n')}\n\nCtrl-C to stop.\n`),
  });
  upstream.closeAllConnections();
  upstream.close();
  return code;
}
