// `sluice demo` (what `npm start` runs): the proxy on examples/local/sluice.yaml with a chain of
// the built-in filters, in front of two built-in upstreams that echo what they received (`echo`
// on 127.0.0.1:18080 and `echo-canary` on 18081), and curl commands that show each filter at work.

import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';
import { runProxy } from './run.ts';

export const UPSTREAMS = [
  { name: 'echo', port: 18080 },
  { name: 'echo-canary', port: 18081 },
];

const TRIES = [
  ['curl -si http://127.0.0.1:15001/anything', 'proxied to echo: x-hello, x-served-by and x-request-id on the answer (hello, headers, telemetry); the upstream saw x-client'],
  ['curl -si http://127.0.0.1:15001/forbidden', '403 from the hello filter'],
  ['curl -si http://127.0.0.1:15001/admin/users', '403 from authz, naming why'],
  ['curl -si -H "x-canary: 1" http://127.0.0.1:15001/anything', 'router: sent to echo-canary (x-sluice-cluster)'],
  ['for i in 1 2 3 4; do curl -s http://127.0.0.1:15001/split | grep upstream; done', 'router: a 3:1 split between echo and echo-canary'],
  ['curl -si http://127.0.0.1:15001/flaky', 'the upstream fails every other try with 503; retry makes it 200 (see x-sluice-attempt-count in the echo)'],
  ['for i in 1 2 3 4; do curl -s -o /dev/null -w "%{http_code} " -H "x-user: ann" http://127.0.0.1:15001/api/x; done', 'ratelimit: 200 200 200 429 (3 per user per 10 s), with x-ratelimit-* headers'],
  ['curl -si -H "x-chaos: 1" -H "x-envoy-fault-abort-request: 503" http://127.0.0.1:15001/anything', 'fault: an injected 503'],
  ['curl -s -o /dev/null -w "%{http_code} %{time_total}s\\n" -H "x-chaos: 1" -H "x-envoy-fault-delay-request: 500" http://127.0.0.1:15001/anything', 'fault: a 500 ms delay'],
  ['curl --http2-prior-knowledge -s http://127.0.0.1:15001/anything | grep upstream', 'the same port speaks HTTP/2 (h2c)'],
  ['curl -si http://127.0.0.1:15001/healthz', 'a direct response from the route table'],
  ['curl -s http://127.0.0.1:15000/stats/prometheus | grep -E "^(istio_requests_total|telemetry_|router_|ratelimit_|authz_)"', 'metrics'],
  ['curl -s http://127.0.0.1:15000/filters', 'each filter: digest, state, failures'],
];

export function echoUpstream(name: string): Server {
  let flaky = 0;
  return createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    // /flaky fails every other request, to show retries.
    if (req.url?.startsWith('/flaky') && flaky++ % 2 === 0) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end(`${name}: failing this try on purpose\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ upstream: name, method: req.method, path: req.url, headers: req.headers, body }, null, 2) + '\n');
  });
}

export async function runDemo(): Promise<number> {
  const servers = await Promise.all(
    UPSTREAMS.map(async ({ name, port }) => {
      const server = echoUpstream(name);
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
      return server;
    }),
  );
  const config = join(packageRoot(), 'examples/local/sluice.yaml');
  const tries = TRIES.map(([cmd, what]) => `  # ${what}\n  ${cmd}\n`).join('\n');
  const code = await runProxy(config, {
    drainMs: 2000,
    onReady: () =>
      process.stdout.write(
        `\nsluice is running ${config}\nin front of two echo upstreams (echo on 127.0.0.1:${UPSTREAMS[0]!.port}, echo-canary on ${UPSTREAMS[1]!.port}). Try:\n\n${tries}\nCtrl-C to stop.\n`,
      ),
  });
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  return code;
}
