// Each built-in filter's cost per request inside the proxy, set beside bench/filters.ts (the same
// filter with the same config in a bare chain). One process holds a NodeProxy per filter (that
// filter alone in the listener's chain) plus one with an empty chain, an upstream (node:http,
// 1 KiB) and a client (undici Pool, 4 connections per proxy), over real loopback sockets. Also the
// hand-written WAT touch-headers filter (bench/chain.ts's "host's share"), to tell what any filter
// costs in the proxy from what a particular one adds.
// Cost is the CPU time of the main thread (/proc/self/task/<pid>/schedstat, ns) per request, minus
// the empty chain's: the thread that runs the filters, as bench/filters.ts's synchronous loop
// measures it; GC helper threads are left out because they only add noise to a difference of a few
// µs. Each proxy keeps its fastest of ROUNDS interleaved rounds of REQUESTS requests (on a shared
// machine the minimum is the stable estimate). Requests are the filter's bench.json request, else
// bench/chain.ts's typical 13-header request, as in bench/filters.ts.
// SLUICE_BENCH_ROUNDS / SLUICE_BENCH_REQUESTS shorten it (defaults 7 and 2,000; about 40 s).

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { NodeProxy, parseConfig } from '../runtime/index.ts';
import { REQUEST } from './chain.ts';
import { cell, type BenchRow, type Grid } from './table.ts';

const ROUNDS = Number(process.env.SLUICE_BENCH_ROUNDS ?? 7);
const REQUESTS = Number(process.env.SLUICE_BENCH_REQUESTS ?? 2_000);
const CONCURRENCY = 4;
const ROOT = new URL('..', import.meta.url);
// The issue's targets for a filter in the proxy: within 1.5× the chain bench; these three in µs.
const ABSOLUTE_TARGET_US: Record<string, number> = { router: 2, headers: 2, hello: 1.5 };

interface Entry {
  name: string;
  proxy: NodeProxy;
  pool: Pool;
  request: { method: string; path: string; headers: Record<string, string> };
  best: number;
  statuses: Map<number, number>;
}

function upstream(): Promise<Server> {
  const body = Buffer.alloc(1024, 'x');
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/html', 'content-length': body.length }).end(body);
  });
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done(server)));
}

async function proxyWith(name: string, config: unknown, upstreamPort: number, module = `build/filters/${name}.wasm`): Promise<NodeProxy> {
  const at = `127.0.0.1:${upstreamPort}`;
  // The clusters the filters' bench configs name all lead to the one upstream.
  const document = {
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'bench', address: '127.0.0.1:0', filters: name ? [name] : [], routes: [{ cluster: 'upstream' }] }],
    clusters: ['upstream', 'reviews-v1', 'reviews-canary'].map((c) => ({ name: c, endpoints: [at] })),
    filters: name ? [{ name, module: new URL(module, ROOT).pathname, ...(config === undefined ? {} : { config }) }] : [],
  };
  const snapshot = parseConfig(JSON.stringify(document), `bench:${name || 'empty'}`, new URL('.', ROOT).pathname);
  return NodeProxy.start(snapshot, { log: () => {} }, undefined, { admin: false });
}

function requestOf(pairs: Array<[string, string]>): Entry['request'] {
  const headers: Record<string, string> = {};
  let method = 'GET';
  let path = '/';
  for (const [k, v] of pairs) {
    if (k === ':method') method = v;
    else if (k === ':path') path = v;
    else if (k === ':authority') headers.host = v;
    else if (!k.startsWith(':') && k !== 'content-type') headers[k] = v; // a bodyless GET
  }
  return { method, path, headers };
}

const WAT = 'touch-headers (hand-written WAT)';
const WAT_CHAIN_ROW = "hand-written WAT filter (the host's share), chain of 1: per filter";

/** CPU µs of the main thread so far (schedstat's first field: ns on the CPU). */
function cpuNow(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e3;
}

/** CPU µs per request, for `n` requests through `e`'s proxy. */
async function round(e: Entry, n: number): Promise<number> {
  let left = n;
  const before = cpuNow();
  const client = async () => {
    while (left-- > 0) {
      const res = await e.pool.request(e.request);
      await res.body.dump();
      e.statuses.set(res.statusCode, (e.statuses.get(res.statusCode) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  return (cpuNow() - before) / n;
}

/**
 * `filterRows`: bench/filters.ts's rows (per filter µs beyond the empty chain), `chainRows`:
 * bench/chain.ts's; the in-proxy numbers are printed beside them.
 */
export async function benchFiltersInProxy(filterRows: BenchRow[], chainRows: BenchRow[]): Promise<Grid> {
  const filtersDir = new URL('filters/', ROOT);
  const names = readdirSync(filtersDir).filter((n) => existsSync(new URL(`${n}/bench.json`, filtersDir))).sort();
  const server = await upstream();
  const upstreamPort = (server.address() as AddressInfo).port;
  const entries: Entry[] = [];
  try {
    for (const name of ['', ...names]) {
      const bench = name ? (JSON.parse(readFileSync(new URL(`${name}/bench.json`, filtersDir), 'utf8')) as { config: unknown; request?: Array<[string, string]> }) : undefined;
      const proxy = await proxyWith(name, bench?.config, upstreamPort);
      const { port } = proxy.addresses().bench!;
      const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CONCURRENCY, keepAliveTimeout: 60_000 });
      entries.push({ name, proxy, pool, request: requestOf(bench?.request ?? REQUEST), best: Infinity, statuses: new Map() });
    }
    {
      const proxy = await proxyWith('touch-wat', undefined, upstreamPort, 'build/fixtures/bench/touch-headers.wasm');
      const pool = new Pool(`http://127.0.0.1:${proxy.addresses().bench!.port}`, { connections: CONCURRENCY, keepAliveTimeout: 60_000 });
      entries.push({ name: WAT, proxy, pool, request: requestOf(REQUEST), best: Infinity, statuses: new Map() });
    }
    for (const e of entries) await round(e, Math.min(REQUESTS, 1_000)); // warm-up: JIT, Wasm tier-up, connections
    for (const e of entries) e.statuses.clear();
    for (let r = 0; r < ROUNDS; r++) for (const e of entries) e.best = Math.min(e.best, await round(e, REQUESTS));
  } finally {
    for (const e of entries) {
      await e.pool.destroy();
      await e.proxy.stop(0);
    }
    server.closeAllConnections();
    server.close();
  }
  const base = entries[0]!.best;
  const inChain = new Map(filterRows.map((r) => [r.name, r.value]));
  const watInChain = chainRows.find((r) => r.name === WAT_CHAIN_ROW)?.value;
  if (watInChain !== undefined) inChain.set(WAT, watInChain);
  const statusNote = (e: Entry) => {
    const other = [...e.statuses].filter(([s]) => s !== 200);
    return other.length ? `answers: ${[...e.statuses].map(([s, c]) => `${c}× ${s}`).join(', ')}` : '';
  };
  const rows = entries.slice(1).map((e) => {
    const cost = e.best - base;
    const chainUs = inChain.get(e.name);
    const abs = ABSOLUTE_TARGET_US[e.name];
    const target = e.name === WAT ? '' : `≤ 1.5×${abs !== undefined ? `, ≤ ${abs} µs` : ''}`;
    return [e.name, cell(cost), cell(chainUs), chainUs ? cell(cost / chainUs) : '–', target, statusNote(e)];
  });
  const negative = entries.slice(1).filter((e) => e.best < base).map((e) => e.name);
  const noise = negative.length
    ? [`NOT MEANINGFUL THIS RUN: ${negative.join(', ')} came out cheaper than the empty chain, so the machine's noise (load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}) exceeded the differences measured; run 'npm run bench' again once the machine is quiet.`]
    : [];
  return {
    title: 'filters in the proxy vs in the chain bench (µs of main-thread CPU per request beyond the empty chain; one process: client + proxy + upstream)',
    header: ['filter', 'in the proxy', 'chain bench', 'proxy ÷ chain', 'target', 'note'],
    rows: [['(empty chain: the whole request)', cell(base), cell(inChain.get('stream through an empty chain')), '', '', statusNote(entries[0]!)], ...rows],
    notes: [
      `in the proxy: main-thread CPU (schedstat) per request, fastest of ${ROUNDS} interleaved rounds of ${REQUESTS.toLocaleString('en-US')} requests, ${CONCURRENCY} connections, minus the empty chain's; the first row is the whole request (client, proxy and upstream).`,
      'chain bench: bench/filters.ts above (the filter alone in a bare FilterChain, headers only, no sockets), and for the WAT filter bench/chain.ts\'s per-filter cost; the first row\'s is an empty chain stream.',
      'The WAT filter does the least a filter can (one header read, two writes): what it costs in the proxy beyond its chain-bench cost is what the proxy spends on any non-empty chain.',
      ...noise,
    ],
  };
}
