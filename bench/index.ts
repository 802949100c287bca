// `npm run bench`: every benchmark, one table each. Numbers are for this machine at this moment:
// run it on a quiet machine, and compare ratios rather than absolute values across machines.

import { benchChain } from './chain.ts';
import { benchEngine } from './engine.ts';
import { benchFilters } from './filters.ts';
import { printTable } from './table.ts';

process.stdout.write(`sluice bench: node ${process.version}, ${(await import('node:os')).cpus().length} cpus\n`);
printTable('filter chain (touch-headers filter: reads one request header, sets one request and one response header)', await benchChain());
printTable('built-in filters: each alone in a chain, cost per request beyond the empty chain (filters/<name>/bench.json)', await benchFilters());
printTable('engine (time budget, instantiate, memory)', await benchEngine());
printTable('data plane (proxy pinned to one core; wrk for max throughput, 1000 req/s open loop for latency, CPU, memory)', await (await import('./proxy.ts')).benchProxy());
await (await import('./controller.ts')).printControllerBench();
await (await import('./distribution.ts')).printDistributionBench();
