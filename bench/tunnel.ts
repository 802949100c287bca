// The node-to-node tunnel's benchmark (issue 12), as root: two "nodes" from network namespaces
// (test/tunnel/two-nodes.ts, the end-to-end test's setup), each with its node proxy, capture and
// the tunnel (test/tunnel/node-driver.ts), identities from a real CA.
//
// Standalone: node --import=tsx bench/tunnel.ts (after `npm run build`). About 2 × (warm-up +
// window) + 2 × window + ~15 s of setup. Environment:
//   SLUICE_BENCH_SECONDS=N   measured window of each run (default 10)
//   SLUICE_BENCH_TUNNEL_WARMUP=N  warm-up before each fixed-rate window (default 3)
//   SLUICE_BENCH_TUNNEL_PROF=DIR  run both node proxies with --cpu-prof into DIR/node1, DIR/node2 (whole run)
// Order: connection setup (tunnel, direct), then the fixed rate (tunnel, direct); the first runs
// warm the proxies up for the fixed-rate ones.
//
// What is measured, in one run:
// - "tunnel": pod A (node 1) → pod B (node 2), both captured, no filters: A's node proxy takes the
//   connection, sends it through the mTLS tunnel (HTTP/2 CONNECT over TLS 1.3 to node 2:15008),
//   node 2's proxy delivers it to B through B's inbound side. "direct": pod D (node 1) → pod E
//   (node 2), both opted out of capture (`sluice.dev/capture: disabled`), plain routing over the
//   same link. B and E run the same Node HTTP server (1 KiB body, keep-alive).
// - Latency at 1000 req/s, open loop: bench/proxy.ts's generator (--loadgen: undici Pool of up to
//   64 kept-alive connections, dispatch to last body byte) run inside the client pod's netns;
//   warm-up, then the window; p50/p99/p99.9 and the added p50/p99 (tunnel − direct).
// - CPU of each node proxy process (the node-driver's node process: utime+stime, /proc/<pid>/stat)
//   over the tunnel's measured window: cores, and µs per answered request.
// - Connection setup rate: closed loop, 16 concurrent clients in the client pod, each request on a
//   NEW TCP connection (agent: false, Connection: close); answered requests per second.
// Skipped with one line (never failing `npm run bench`) when not root or the lab cannot run.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labUnavailable, type Lab, type Pod } from '../test/capture/netns-lab.ts';
import { sid, testCa } from '../test/tunnel/tunnel-pki.ts';
import { addPod, LINK, nodeConfig, reload, startDriver, twoNodes, type TwoNodes } from '../test/tunnel/two-nodes.ts';
import { cpuSeconds, type RateResult } from './proxy.ts';
import { cell, type BenchRow, type Grid } from './table.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const PROXY_BENCH = join(ROOT, 'bench', 'proxy.ts');
const SECONDS = Number(process.env.SLUICE_BENCH_SECONDS ?? 10);
const WARMUP = Number(process.env.SLUICE_BENCH_TUNNEL_WARMUP ?? 3);
const RATE = 1000;
const CONNECT_CLIENTS = 16;
const CONNECT_WARMUP = 1;
const PORT = 8080;
const PATH = '/1k';
const BODY_BYTES = 1024;
const A = sid('bench-a', 'a');
const B = sid('bench-b', 'b');

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

interface ConnectResult {
  ok: number;
  failed: number;
  seconds: number;
  rps: number;
  firstError?: string;
}

/** Why the bench cannot run here, or undefined. */
export function tunnelBenchUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  return labUnavailable();
}

/** A child in `netns` printing lines; resolves with them once it closes, killed after `ms`. */
function runIn(lab: Lab, netns: string, args: string[], ms: number, onLine: (line: string) => void = () => {}): Promise<{ code: number | null; lines: string[]; stderr: string }> {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', netns, process.execPath, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  lab.children.push(child);
  const lines: string[] = [];
  let buffered = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      onLine(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
  return new Promise((done) => child.once('close', (code) => {
    clearTimeout(timer);
    done({ code, lines, stderr });
  }));
}

/** The fixed-rate run from `client` to `url`; `onMeasure` is called as the window opens and closes. */
function fixedRate(lab: Lab, client: Pod, url: string, onMeasure: (phase: 'start' | 'end') => void): Promise<RateResult> {
  return generate<RateResult>(lab, client, 'fixed-rate', [PROXY_BENCH, '--loadgen', url, String(RATE), String(WARMUP), String(SECONDS)], WARMUP, onMeasure);
}

/** The connection-setup run from `client` to `url`. */
function connectRate(lab: Lab, client: Pod, url: string, onMeasure: (phase: 'start' | 'end') => void): Promise<ConnectResult> {
  return generate<ConnectResult>(lab, client, 'connection-setup', [SELF, '--connect', url, String(CONNECT_CLIENTS), String(CONNECT_WARMUP), String(SECONDS)], CONNECT_WARMUP, onMeasure);
}

/** A generator (`script args`) run in `client`'s netns, telling its measured window, printing its result as one JSON line. */
async function generate<T>(lab: Lab, client: Pod, what: string, scriptArgs: string[], warmup: number, onMeasure: (phase: 'start' | 'end') => void): Promise<T> {
  const r = await runIn(lab, client.netns, ['--import=tsx', ...scriptArgs], (warmup + SECONDS + 30) * 1000, (line) => {
    if (line === 'measure-start') onMeasure('start');
    else if (line === 'measure-end') onMeasure('end');
  });
  const json = r.lines.find((l) => l.startsWith('{'));
  if (!json) throw new Error(`${what} generator in ${client.netns} failed (${r.code}): ${r.stderr.trim().slice(-500)}`);
  return JSON.parse(json) as T;
}

/** The closed-loop connection generator (a child process in the client pod's netns). */
async function connectLoad(url: string, clients: number, warmup: number, seconds: number): Promise<void> {
  const { get } = await import('node:http');
  const t0 = Date.now();
  const warmEnd = t0 + warmup * 1000;
  const end = warmEnd + seconds * 1000;
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  let measuring = false;
  const once = () =>
    new Promise<void>((done) => {
      const counted = measuring;
      const req = get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
        res.resume();
        res.once('end', () => {
          if (counted && Date.now() <= end) {
            if (res.statusCode === 200) ok++;
            else {
              failed++;
              firstError ??= `status ${res.statusCode}`;
            }
          }
          done();
        });
        res.once('error', () => done());
      }).once('error', (e: NodeJS.ErrnoException) => {
        if (counted) {
          failed++;
          firstError ??= e.code ?? e.message;
        }
        done();
      });
      req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
    });
  const client = async () => {
    while (Date.now() < end) {
      if (!measuring && Date.now() >= warmEnd) {
        measuring = true;
        process.stdout.write('measure-start\n');
      }
      await once();
    }
  };
  const opener = setTimeout(() => {
    if (!measuring) {
      measuring = true;
      process.stdout.write('measure-start\n');
    }
  }, warmEnd - Date.now());
  await Promise.all(Array.from({ length: clients }, client));
  clearTimeout(opener);
  process.stdout.write('measure-end\n');
  const result: ConnectResult = { ok, failed, seconds, rps: ok / seconds, firstError };
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** The server in B and E: 1 KiB, keep-alive; says which x-forwarded-for it saw (captured traffic has one). */
const SERVER = `const body = Buffer.alloc(${BODY_BYTES}, 'x');
  const s = require('http').createServer((q, r) => { r.setHeader('x-seen-xff', q.headers['x-forwarded-for'] || 'none'); r.setHeader('content-type', 'text/plain'); r.end(body); });
  s.keepAliveTimeout = 120000; s.listen(${PORT}, '0.0.0.0', () => console.log('ready'));`;

/** One GET from inside `client`: status, the server's x-seen-xff and the body's length. */
async function probe(lab: Lab, client: Pod, url: string): Promise<{ status: number; xff: string; bytes: number }> {
  const script = `require('http').get(process.argv[1], (r) => { let n = 0; r.on('data', (c) => (n += c.length)); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, xff: r.headers['x-seen-xff'], bytes: n }))); }).on('error', (e) => console.log(JSON.stringify({ status: 0, xff: e.code || e.message, bytes: 0 })))`;
  const r = await runIn(lab, client.netns, ['-e', script, url], 15_000);
  const json = r.lines.find((l) => l.startsWith('{'));
  if (!json) throw new Error(`probe ${url} from ${client.netns} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(json);
}

export interface TunnelBench {
  grid: Grid;
  summary: BenchRow[];
}

export async function benchTunnel(): Promise<TunnelBench> {
  let nodes: TwoNodes | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    void Promise.race([nodes?.destroy(), sleep(8000)]).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    const loadBefore = loadavg();
    nodes = await twoNodes();
    const { n1, n2 } = nodes;
    const ca = await testCa();
    const prof = process.env.SLUICE_BENCH_TUNNEL_PROF;
    const nodeArgs = (name: string) => (prof ? ['--cpu-prof', `--cpu-prof-dir=${join(resolve(prof), name)}`] : []); // one file per thread (the loader's too)
    await startDriver(n1, await ca.store([A]), nodeArgs('node1'));
    await startDriver(n2, await ca.store([B]), nodeArgs('node2'));

    const a = n1.lab.pod('a', 'bench-a');
    const d = n1.lab.pod('d', 'bench-d');
    const b = n2.lab.pod('b', 'bench-b');
    const e = n2.lab.pod('e', 'bench-e');
    const optOut = { 'sluice.dev/capture': 'disabled' };
    addPod(n1.lab, a);
    addPod(n1.lab, d, optOut);
    addPod(n2.lab, b);
    addPod(n2.lab, e, optOut);
    await reload(n1, nodeConfig({ workloads: [[a, A]], remote: [[b, B, `${LINK.n2}:15008`]] }));
    await reload(n2, nodeConfig({ workloads: [[b, B]], remote: [[a, A, `${LINK.n1}:15008`]] }));
    await n2.lab.spawnIn(b.netns, [process.execPath, '-e', SERVER], 'ready');
    await n2.lab.spawnIn(e.netns, [process.execPath, '-e', SERVER], 'ready');

    const tunnelUrl = `http://${b.ip}:${PORT}${PATH}`;
    const directUrl = `http://${e.ip}:${PORT}${PATH}`;
    // Each path is what it claims: the captured one went through the proxies (they add x-forwarded-for), the direct one did not.
    const pt = await probe(n1.lab, a, tunnelUrl);
    if (pt.status !== 200 || pt.bytes !== BODY_BYTES || !pt.xff.includes(a.ip!)) throw new Error(`A → B is not answered through the proxies: ${JSON.stringify(pt)}\n${n1.driver!.output().slice(-2000)}\n${n2.driver!.output().slice(-2000)}`);
    const pd = await probe(n1.lab, d, directUrl);
    if (pd.status !== 200 || pd.bytes !== BODY_BYTES || pd.xff !== 'none') throw new Error(`D → E is not answered directly: ${JSON.stringify(pd)}`);

    const pids = [n1.driver!.pid!, n2.driver!.pid!];
    let cpu0: number[] = [];
    let cpu: number[] = [];
    let t0 = 0;
    let wall = 0;
    const sample = (phase: 'start' | 'end') => {
      if (phase === 'start') {
        cpu0 = pids.map(cpuSeconds);
        t0 = performance.now();
      } else {
        cpu = pids.map((p, i) => cpuSeconds(p) - cpu0[i]!);
        wall = (performance.now() - t0) / 1000;
      }
    };
    // Connection setup first: its thousands of requests also warm the proxies up (JIT), so a queue
    // built while cold does not spill into the fixed-rate window (3 s of warm-up alone left p99 near 1 s).
    const connTunnel = await connectRate(n1.lab, a, tunnelUrl, sample);
    const connCpu = cpu;
    const connWall = wall;
    const connDirect = await connectRate(n1.lab, d, directUrl, () => {});
    const tunnel = await fixedRate(n1.lab, a, tunnelUrl, sample);
    const tunnelCpu = cpu;
    const tunnelWall = wall;
    const direct = await fixedRate(n1.lab, d, directUrl, () => {});

    const rateNote = (r: RateResult) => [r.failed ? `${r.failed} failed (${r.firstError})` : '', r.maxLagMs > 5 ? `generator lag up to ${r.maxLagMs.toFixed(0)} ms` : ''].filter(Boolean).join('; ');
    const connNote = (r: ConnectResult) => (r.failed ? `${r.failed} failed (${r.firstError})` : '');
    const grid: Grid = {
      title: `node-to-node tunnel (issue 12): pod → pod across two nodes, through both node proxies and the mTLS tunnel vs direct (${RATE} req/s open loop; ${CONNECT_CLIENTS} clients, a new connection per request)`,
      header: ['path', 'p50 ms', 'p99 ms', 'p99.9 ms', 'answered', 'new conn/s', 'note'],
      rows: [
        ['tunnel (A → B, captured both sides)', cell(tunnel.p50), cell(tunnel.p99), cell(tunnel.p999), String(tunnel.ok), cell(connTunnel.rps), [rateNote(tunnel), connNote(connTunnel)].filter(Boolean).join('; ')],
        ['direct (D → E, capture disabled)', cell(direct.p50), cell(direct.p99), cell(direct.p999), String(direct.ok), cell(connDirect.rps), [rateNote(direct), connNote(connDirect)].filter(Boolean).join('; ')],
        ['added by the tunnel', cell(tunnel.p50 - direct.p50), cell(tunnel.p99 - direct.p99), cell(tunnel.p999 - direct.p999), '', '', ''],
      ],
      notes: [
        `latency: dispatch to last body byte (1 KiB), bench/proxy.ts's open-loop generator (undici Pool, ≤ 64 kept-alive connections) in the client pod's netns; after the connection-setup runs, ${WARMUP} s warm-up, ${SECONDS} s measured.`,
        `new conn/s: closed loop, ${CONNECT_CLIENTS} clients, agent: false + Connection: close (through the tunnel: a new captured connection each, on the kept tunnel session); ${CONNECT_WARMUP} s warm-up, ${SECONDS} s measured.`,
        'node proxies: test/tunnel/node-driver.ts under tsx (proxy + capture + tunnel in one process, as `sluice run` wires them), not the built binary: the loader costs some memory and start-up, little per request.',
        `all processes share this machine's ${cpus().length} CPUs (no pinning); load average before ${loadBefore}, after ${loadavg()}${Number(loadBefore.split(' ')[0]) > cpus().length ? ' — the machine was busy: the numbers are noisy' : ''}.`,
      ],
    };
    const perReq = (s: number, n: number) => (n > 0 ? (s * 1e6) / n : NaN);
    const summary: BenchRow[] = [
      { name: `added p50 at ${RATE} req/s (tunnel − direct)`, value: tunnel.p50 - direct.p50, unit: 'ms' },
      { name: `added p99 at ${RATE} req/s (tunnel − direct)`, value: tunnel.p99 - direct.p99, unit: 'ms', target: '≤ 1', note: "Istio ambient's ztunnel adds 0.20 ms" },
      { name: `node 1 proxy (client side) CPU at ${RATE} req/s`, value: tunnelCpu[0]! / tunnelWall, unit: 'cores' },
      { name: `node 1 proxy (client side) CPU per request`, value: perReq(tunnelCpu[0]!, tunnel.ok), unit: 'µs/req' },
      { name: `node 2 proxy (server side) CPU at ${RATE} req/s`, value: tunnelCpu[1]! / tunnelWall, unit: 'cores' },
      { name: `node 2 proxy (server side) CPU per request`, value: perReq(tunnelCpu[1]!, tunnel.ok), unit: 'µs/req' },
      { name: 'connection setup through the tunnel', value: connTunnel.rps, unit: 'conn/s' },
      { name: 'connection setup direct', value: connDirect.rps, unit: 'conn/s' },
      { name: 'connection setup: tunnel ÷ direct', value: connTunnel.rps / connDirect.rps, unit: '×' },
      { name: 'node 1 + node 2 proxy CPU per new connection', value: perReq(connCpu[0]! + connCpu[1]!, connTunnel.ok), unit: 'µs/conn', note: `${cell((connCpu[0]! + connCpu[1]!) / connWall)} cores together` },
    ];
    return { grid, summary };
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await nodes?.destroy();
  }
}

/** `npm run bench`'s part: the tables, or one line saying why it was skipped. Never throws for a missing lab. */
export async function printTunnelBench(): Promise<void> {
  const { printGrid, printTable } = await import('./table.ts');
  const why = tunnelBenchUnavailable();
  if (why) {
    process.stdout.write(`\nnode-to-node tunnel: skipped (${why})\n`);
    return;
  }
  const { grid, summary } = await benchTunnel();
  printGrid(grid);
  printTable('node-to-node tunnel: the numbers of issue 12 (same run)', summary);
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === '--connect') {
    await connectLoad(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
  } else {
    process.stdout.write(`sluice bench: node ${process.version}, ${cpus().length} cpus\n`);
    await printTunnelBench();
  }
}
