// Per-request cost of a filter chain: 1, 3 and 10 filters that each read one request header and
// set one request and one response header, driven through the real host the way the proxy drives
// it, with a typical 13-header request. The filter is built twice: with the SDK
// (test/fixtures/as/touch-headers.ts) and by hand in WAT (the host's own share of the cost).

import { readFile } from 'node:fs/promises';
import { FilterChain, HeaderMap, Plugin, createEnvironment } from '../runtime/index.ts';
import type { BenchRow } from './table.ts';

export const REQUEST: Array<[string, string]> = [
  [':method', 'GET'],
  [':path', '/api/v1/items?page=2'],
  [':authority', 'shop.example.svc.cluster.local'],
  [':scheme', 'http'],
  ['user-agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36'],
  ['accept', 'application/json'],
  ['accept-encoding', 'gzip, deflate, br'],
  ['accept-language', 'en-US,en;q=0.9'],
  ['x-user', 'alice'],
  ['x-request-id', '5f0c2a8e-4b1d-4c3a-9e7f-2d8b6a1c0e93'],
  ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ['cookie', 'session=abc123; theme=dark'],
  ['content-type', 'application/json'],
];
export const RESPONSE: Array<[string, string]> = [
  [':status', '200'],
  ['content-type', 'application/json'],
  ['content-length', '1024'],
  ['cache-control', 'no-store'],
  ['date', 'Sat, 28 Nov 2026 02:00:00 GMT'],
];

async function chainOf(n: number, bytes: Uint8Array): Promise<FilterChain> {
  const env = createEnvironment({ log: () => {} });
  const plugins: Plugin[] = [];
  for (let i = 0; i < n; i++) plugins.push(await Plugin.load(bytes, { name: `touch-${i}`, configuration: { tag: String(i) } }, env));
  return new FilterChain(plugins, env);
}

type Pairs = Array<[string, string]>;

export function run(chain: FilterChain, requests: number, request: Pairs = REQUEST, response: Pairs = RESPONSE): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < requests; i++) {
    const stream = chain.stream();
    stream.requestHeaders(new HeaderMap(request), true);
    stream.responseHeaders(new HeaderMap(response), true);
    stream.end();
  }
  return Number(process.hrtime.bigint() - started) / 1e3 / requests; // µs per request
}

/** Median of `rounds` runs of `requests` requests each, in µs per request. */
export function measure(chain: FilterChain, requests: number, rounds: number, request: Pairs = REQUEST, response: Pairs = RESPONSE): number {
  run(chain, requests, request, response); // warm-up: JIT, inline caches, guest allocator
  const samples = Array.from({ length: rounds }, () => run(chain, requests, request, response));
  return samples.sort((a, b) => a - b)[Math.floor(rounds / 2)];
}

export async function benchChain(): Promise<BenchRow[]> {
  const sdk = new Uint8Array(await readFile(new URL('../build/fixtures/touch-headers.wasm', import.meta.url)));
  const wat = new Uint8Array(await readFile(new URL('../build/fixtures/bench/touch-headers.wasm', import.meta.url)));
  const baseline = measure(await chainOf(0, sdk), 20_000, 5);
  const rows: BenchRow[] = [{ name: 'stream through an empty chain', value: baseline, unit: 'µs/request' }];
  for (const [label, bytes] of [['SDK filter', sdk], ['hand-written WAT filter (the host\'s share)', wat]] as const) {
    for (const n of [1, 3, 10]) {
      const perRequest = measure(await chainOf(n, bytes), n === 10 ? 4_000 : 10_000, 5);
      rows.push({ name: `${label}, chain of ${n}: per request`, value: perRequest, unit: 'µs/request' });
      rows.push({ name: `${label}, chain of ${n}: per filter`, value: (perRequest - baseline) / n, unit: 'µs', target: '≤ 2' });
    }
  }
  return rows;
}
