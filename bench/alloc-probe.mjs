// bench/proxy.ts: preloaded (node --import) into the Node-based proxies under test to count the
// bytes they allocate on the V8 heap. V8 keeps no running total of allocation, so this one is
// derived: allocated since start = used heap now + everything the GCs freed so far, where what a
// GC freed is its used heap before minus after (v8.GCProfiler records both for every GC). Memory
// outside the V8 heap (Buffer/ArrayBuffer backing stores, Wasm memory, native) is not counted.
// On SIGUSR2 one JSON line {pid, allocated, gcs} is appended to $SLUICE_BENCH_ALLOC_FILE.
// It costs the process nothing per request, only a heap-statistics record per GC.
// With $SLUICE_BENCH_HEAP_SAMPLES set (bench/alloc-sites.ts), the first SIGUSR2 also starts V8's
// sampling heap profiler (every ~256 bytes, objects already collected included) and the second
// writes its profile there: where the bytes are allocated. That one does slow the process down.

import { appendFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { GCProfiler, getHeapStatistics } from 'node:v8';

const file = process.env.SLUICE_BENCH_ALLOC_FILE;
const samples = process.env.SLUICE_BENCH_HEAP_SAMPLES;
let session;
let sampling = false;
if (samples) {
  session = new Session();
  session.connect();
}
const post = (method, params) => new Promise((done, fail) => session.post(method, params, (error, result) => (error ? fail(error) : done(result))));

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
    if (!session) return;
    sampling = !sampling;
    if (sampling) void post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    else void post('HeapProfiler.stopSampling').then(({ profile }) => writeFileSync(samples, JSON.stringify(profile)));
  });
}
