// Each built-in filter's cost per request: the filter alone in a chain, driven with the bench's
// typical request (bench/chain.ts) or the one its bench.json gives, minus the empty chain.
// A filter takes part when filters/<name>/bench.json exists:
//   { "config": <handed to proxy_on_configure>, "targetUs": 5,
//     "request"?: [[name, value], ...], "response"?: [[name, value], ...] }

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { FilterChain, Plugin, createEnvironment } from '../runtime/index.ts';
import { REQUEST, RESPONSE, measure } from './chain.ts';
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
  const baseline = measure(await chainWith('', undefined), 20_000, 5);
  const rows: BenchRow[] = [{ name: 'stream through an empty chain', value: baseline, unit: 'µs/request' }];
  for (const name of names) {
    const bench = JSON.parse(readFileSync(new URL(`${name}/bench.json`, filtersDir), 'utf8')) as FilterBench;
    const chain = await chainWith(name, bench);
    const perRequest = measure(chain, 10_000, 5, bench.request ?? REQUEST, bench.response ?? RESPONSE);
    rows.push({ name: `${name}`, value: perRequest - baseline, unit: 'µs', target: `≤ ${bench.targetUs}` });
  }
  return rows;
}
