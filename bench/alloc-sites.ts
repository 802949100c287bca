// Where a Node-based proxy's per-request heap bytes are allocated: not part of `npm run bench`, a
// tool for finding what to remove. Runs one proxy (the plain Node.js proxy or sluice with one of
// bench/fixtures/sluice-*.yaml) with bench/alloc-probe.mjs preloaded and V8's sampling heap
// profiler on, drives it with N keep-alive GETs (4 connections) after 3,000 to warm up, and
// prints the sampled bytes per request by file and by allocating function, beside the probe's
// exact total. Upstream: a Node http server (1 KiB) in this process.
//   node --import=tsx bench/alloc-sites.ts [plain|no-filters|3-filters|8-filters] [N=10000] [top=25]

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Pool } from 'undici';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [which = '3-filters', n = '10000', top = '25'] = process.argv.slice(2);
const N = Number(n);
if (which !== 'plain' && !existsSync(join(ROOT, 'bench', 'fixtures', `sluice-${which}.yaml`))) {
  process.stderr.write(`alloc-sites: no bench/fixtures/sluice-${which}.yaml; use plain, no-filters, 3-filters or 8-filters\n`);
  process.exit(2);
}
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const dir = mkdtempSync(join(tmpdir(), 'sluice-alloc-sites-'));
const body = Buffer.alloc(1024, 'x');
const upstream = createServer({ keepAliveTimeout: 60_000 }, (_req, res) => res.writeHead(200, { 'content-type': 'text/html', 'content-length': 1024 }).end(body));
await new Promise<void>((done) => upstream.listen(0, '127.0.0.1', done));
const upstreamPort = (upstream.address() as AddressInfo).port;
const port = await new Promise<number>((done) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = (s.address() as AddressInfo).port;
    s.close(() => done(p));
  });
});
let args: string[];
if (which === 'plain') args = [join(ROOT, 'bench', 'plain-node-proxy.mjs'), String(port), String(upstreamPort)];
else {
  const config = join(dir, 'sluice.yaml');
  const vars: Record<string, string> = { ROOT, PORT: String(port), UPSTREAM_PORT: String(upstreamPort) };
  writeFileSync(config, readFileSync(join(ROOT, 'bench', 'fixtures', `sluice-${which}.yaml`), 'utf8').replace(/\{\{(\w+)\}\}/g, (_, k: string) => vars[k]!));
  args = [join(ROOT, 'bin', 'sluice.js'), 'run', '-c', config, '--drain-ms', '100'];
}
const totals = join(dir, 'alloc.jsonl');
const samples = join(dir, 'samples.heapprofile');
const probe = pathToFileURL(join(ROOT, 'bench', 'alloc-probe.mjs')).href;
const child = spawn(process.execPath, [`--import=${probe}`, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SLUICE_BENCH_ALLOC_FILE: totals, SLUICE_BENCH_HEAP_SAMPLES: samples } });
let log = ''; // the proxy's log, shown only if something fails
child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (log = (log + chunk).slice(-4000)));
const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 });
try {
  const drive = async (count: number) => {
    let left = count;
    const one = async () => {
      while (left-- > 0) {
        const res = await pool.request({ path: '/1k.html', method: 'GET', headers: { 'x-user': 'alice' } });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode} from the proxy`);
      }
    };
    await Promise.all([one(), one(), one(), one()]);
  };
  for (let i = 0; ; i++) {
    try {
      await drive(1);
      break;
    } catch (error) {
      if (i > 100 || child.exitCode !== null) throw error;
      await sleep(100);
    }
  }
  await drive(3_000);
  child.kill('SIGUSR2');
  await sleep(200); // the profiler starts from the process's event loop
  await drive(N);
  child.kill('SIGUSR2');
  for (let i = 0; i < 100 && !existsSync(samples); i++) await sleep(100);
  await sleep(200);
  const lines = readFileSync(totals, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { allocated: number });
  const profile = JSON.parse(readFileSync(samples, 'utf8')) as { head: ProfileNode };
  const byFile = new Map<string, number>();
  const byFunction = new Map<string, number>();
  const short = (url: string) => url.replace(/^file:\/\//, '').replace(ROOT, '').replace(/^node_modules\/([^/]+)\//, '$1/') || '(native)';
  const walk = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    byFile.set(short(url), (byFile.get(short(url)) ?? 0) + node.selfSize);
    const key = `${functionName || '(anonymous)'}  ${short(url)}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + node.selfSize);
    node.children.forEach(walk);
  };
  walk(profile.head);
  const sampled = [...byFile.values()].reduce((a, b) => a + b, 0);
  const print = (title: string, m: Map<string, number>) => {
    process.stdout.write(`\n${title}\n`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) process.stdout.write(`${String(Math.round(v / N)).padStart(8)}  ${k}\n`);
  };
  process.stdout.write(`${which}: ${N.toLocaleString('en-US')} requests; heap bytes per request: ${Math.round((lines.at(-1)!.allocated - lines[0]!.allocated) / N)} (alloc-probe, exact), ${Math.round(sampled / N)} (sampled)\n`);
  print('bytes per request, by file', byFile);
  print('bytes per request, by allocating function', byFunction);
} catch (error) {
  process.stderr.write(`alloc-sites: ${(error as Error).message}\nthe proxy's log:\n${log}`);
  process.exitCode = 1;
} finally {
  await pool.destroy();
  child.kill('SIGTERM');
  upstream.closeAllConnections();
  upstream.close();
  rmSync(dir, { recursive: true, force: true });
}
