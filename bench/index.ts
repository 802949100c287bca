// `npm run bench`: every benchmark, one table each. Numbers are for this machine at this moment:
// run it on a quiet machine, and compare ratios rather than absolute values across machines.
// About 7–9 minutes on 2 CPUs (the tunnel bench, bench/tunnel.ts, needs root and skips without it); SLUICE_BENCH_SECONDS, SLUICE_BENCH_WARMUP, SLUICE_BENCH_TARGETS,
// SLUICE_BENCH_ROUNDS and SLUICE_BENCH_REQUESTS shorten it (bench/proxy.ts, bench/filters-in-proxy.ts).

import { benchChain } from './chain.ts';
import { benchEngine } from './engine.ts';
import { benchFilters } from './filters.ts';
import { benchFiltersInProxy } from './filters-in-proxy.ts';
import { printGrid, printTable } from './table.ts';

process.stdout.write(`sluice bench: node ${process.version}, ${(await import('node:os')).cpus().length} cpus\n`);
const chain = await benchChain();
printTable('filter chain (touch-headers filter: reads one request header, sets one request and one response header)', chain);
const filters = await benchFilters();
printTable('built-in filters: each alone in a chain, cost per request beyond the empty chain (filters/<name>/bench.json)', filters);
printGrid(await benchFiltersInProxy(filters, chain));
printTable('engine (time budget, instantiate, memory)', await benchEngine());
const { table, summary } = await (await import('./proxy.ts')).benchProxy();
printGrid(table);
printTable('data plane: the ratios of the data-path issue (same run)', summary);
await (await import('./controller.ts')).printControllerBench();
await (await import('./distribution.ts')).printDistributionBench();
await (await import('./tunnel.ts')).printTunnelBench();
