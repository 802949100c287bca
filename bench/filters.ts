// Each built-in filter's cost per request: the filter alone in a chain, driven with the bench's
// typical request (bench/chain.ts) or the one its bench.json gives, minus the empty chain; the
// fastest of 7 interleaved rounds of 5,000 requests.
// A filter takes part when filters/<name>/bench.json exists:
//   { "config": <handed to proxy_on_configure>, "targetUs": 5,
//     "request"?: [[name, value], ...], "response"?: [[name, value], ...] }

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { FilterChain, Plugin, createEnvironment } from '../runtime/index.ts';
import { run } from './chain.ts';
import type { BenchRow } from './table.ts';

interface FilterBench {
  config: unknown;
  targetUs: number;
  request?: Array<[string, string]>;
  response?: Array<[string, string]>;
}

const filtersDir = new URL('../filters/', import.meta.url);

async function chainWith(name: string, bench: FilterBench | undefined): Promise<FilterChain> {
  const env = createEnvironment({ log: () => {}, hasCluster: () => true });
  const plugins: Plugin[] = [];
  if (bench) {
    const bytes = new Uint8Array(readFileSync(new URL(`../build/filters/${name}.wasm`, import.meta.url)));
    plugins.push(await Plugin.load(bytes, { name, rootId: name, configuration: bench.config }, env));
  }
  return new FilterChain(plugins, env);
}

export async function benchFilters(): Promise<BenchRow[]> {
  const names = readdirSync(filtersDir).filter((n) => existsSync(new URL(`${n}/bench.json`, filtersDir))).sort();
  const entries = [{ name: '', bench: undefined as FilterBench | undefined, chain: await chainWith('', undefined) }];
  for (const name of names) {
    const bench = JSON.parse(readFileSync(new URL(`${name}/bench.json`, filtersDir), 'utf8')) as FilterBench;
    entries.push({ name, bench, chain: await chainWith(name, bench) });
  }
  // Rounds interleave the filters, and each keeps its fastest round: on a shared machine the
  // minimum is the stable estimate of what a request costs.
  const best = entries.map(() => Infinity);
  for (const [i, e] of entries.entries()) run(e.chain, 5_000, e.bench?.request, e.bench?.response); // warm-up
  for (let round = 0; round < 7; round++) {
    for (const [i, e] of entries.entries()) best[i] = Math.min(best[i]!, run(e.chain, 5_000, e.bench?.request, e.bench?.response));
  }
  const baseline = best[0]!;
  const rows: BenchRow[] = [{ name: 'stream through an empty chain', value: baseline, unit: 'µs/request' }];
  entries.slice(1).forEach((e, i) => rows.push({ name: e.name, value: best[i + 1]! - baseline, unit: 'µs', target: `≤ ${e.bench!.targetUs}` }));
  return rows;
}
