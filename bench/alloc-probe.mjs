// bench/proxy.ts: preloaded (node --import) into the Node-based proxies under test to count the
// bytes they allocate on the V8 heap. V8 keeps no running total of allocation, so this one is
// derived: allocated since start = used heap now + everything the GCs freed so far, where what a
// GC freed is its used heap before minus after (v8.GCProfiler records both for every GC). Memory
// outside the V8 heap (Buffer/ArrayBuffer backing stores, Wasm memory, native) is not counted.
// On SIGUSR2 one JSON line {pid, allocated, gcs} is appended to $SLUICE_BENCH_ALLOC_FILE.
// It costs the process nothing per request, only a heap-statistics record per GC.

import { appendFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

const file = process.env.SLUICE_BENCH_ALLOC_FILE;
if (file) {
  let freed = 0;
  let gcs = 0;
  let profiler = new GCProfiler();
  profiler.start();
  process.on('SIGUSR2', () => {
    const { statistics } = profiler.stop();
    profiler = new GCProfiler();
    profiler.start();
    for (const gc of statistics) {
      freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
      gcs++;
    }
    appendFileSync(file, JSON.stringify({ pid: process.pid, allocated: getHeapStatistics().used_heap_size + freed, gcs }) + '\n');
  });
}
