// The data-plane benchmark: sluice against the same upstream reached directly, through a plain
// Node.js proxy, through nginx and through HAProxy, with one load generator setup for all of them.
//
// Standalone: node --import=tsx bench/proxy.ts (after `npm run build`). About 4 minutes (plus the
// apt-get install the first time). Environment, for a quick look:
//   SLUICE_BENCH_SECONDS=N   measured window of each run (default 10; SLUICE_BENCH_PROXY_SECONDS too)
//   SLUICE_BENCH_WARMUP=N    warm-up before the fixed-rate window (default 5; wrk's is min(N, 2))
//   SLUICE_BENCH_TARGETS=a,b only the targets whose label contains one of these (e.g. "plain,3 filters")
//   SLUICE_BENCH_WORKERS2=shared  measure `--workers 2` on a machine with fewer than 4 CPUs too
//   SLUICE_BENCH_PROF=DIR    run the Node-based proxies with --cpu-prof into DIR/<label>/ (whole run)
//                            (both cores, shared with the load generator and the upstream: not fair)
//
// Setup (2-CPU machine assumed; with more CPUs the same two cores are used):
// - the proxy under test is pinned to core 1 (`taskset -c 1`) and is the only thing there;
// - the load generator AND the upstream share core 0. The upstream is nginx serving a 1 KiB static
//   file from one process (bench/fixtures/nginx-upstream.conf); a Node http server if nginx cannot
//   be installed. "direct" is wrk → upstream with the same placement, so it is the ceiling of
//   this rig: a proxy that reaches it is limited by core 0, not by itself.
// - The proxies: the plain Node.js proxy (bench/plain-node-proxy.mjs: http.createServer + undici
//   Pool.request, the yardstick of the data-path issue); sluice with no filters, with router +
//   headers + telemetry, and with the eight filters of `npm start` (bench/fixtures/sluice-*.yaml);
//   nginx (one process) and HAProxy (one thread). Each is started fresh, measured, and stopped.
// - `sluice --workers 2` (3 filters) gets a max-throughput run only, and only where it can have two
//   cores of its own (cores 1–2, 4 CPUs or more); on 2 CPUs its row says why it was skipped.
// - Max throughput: wrk -t1 -c32, 2 s warm-up then 10 s, requests/s.
// - At a fixed rate of 1000 req/s: Debian has no wrk2, so an open-loop generator in Node (this
//   file, run as a separate process with --loadgen) sends on schedule with undici, whatever the
//   responses do (a pool of up to 64 connections, so a slow response does not hold the next
//   request back). Latency is from dispatch to the last byte of the body; the generator's own lag
//   behind the schedule is reported in the notes. 5 s warm-up, then 10 s measured. This runs first,
//   on a freshly started proxy; max throughput after it (so the proxy is warm by then).
//   CPU of the proxy process (utime+stime of every thread, /proc/<pid>/stat) over the measured
//   10 s, divided by the requests answered in it, is the CPU µs per request; divided by the
//   seconds, the cores used.
// - Bytes allocated per request (Node-based proxies only): they run with bench/alloc-probe.mjs
//   preloaded (node --import), which derives the V8 heap bytes allocated from v8.GCProfiler
//   (used heap now + what every GC freed); the bench asks for the total (SIGUSR2) as the measured
//   window opens and closes. Off-heap memory (Buffer backing stores, Wasm memory) is not in it.
// - Noise check: how long the proxy's main thread was runnable but off its core
//   (/proc/<pid>/schedstat) is in the notes; a large number means the core was shared (with the
//   proxy's own V8 helper threads, or with other work on the machine) and the numbers suffer.
// - Peak RSS is VmHWM (/proc/<pid>/status), read after the fixed-rate run and again after the
//   max-throughput run. MB here is 10^6 bytes.
// - Every request carries `x-user: alice`.
// Tools missing are installed from Debian (apt-get, root only); what cannot be installed turns
// into rows that say why instead of numbers. Every process started is stopped, also on error.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from './ports-and-proc.ts';
import { cell, type BenchRow, type Grid } from './table.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const FIXTURES = join(ROOT, 'bench', 'fixtures');
const SECONDS = Number(process.env.SLUICE_BENCH_SECONDS ?? process.env.SLUICE_BENCH_PROXY_SECONDS ?? 10); // measured window
// Warm-up before each measured window. The fixed-rate run comes first and gets longer: sluice
// needs a few seconds of JIT (and Wasm tier-up) before it keeps up with 1000 req/s, and a queue
// built while cold would otherwise spill into the measured window (p99 ~1 s after 2 s, ~40 ms after 5 s).
const RATE_WARMUP = Number(process.env.SLUICE_BENCH_WARMUP ?? process.env.SLUICE_BENCH_PROXY_WARMUP ?? 5);
const WRK_WARMUP = Math.min(RATE_WARMUP, 2);
const RATE = 1000;
const CONNECTIONS = 32;
const PATH = '/1k.html';
const BODY_BYTES = 1024;
const HEADERS = { 'x-user': 'alice' };
const PROXY_CORE = '1';
const CLIENT_CORE = '0';
const ALLOC_PROBE = pathToFileURL(join(ROOT, 'bench', 'alloc-probe.mjs')).href;

// ---------------------------------------------------------------------------------------------
// Processes: every child goes through start(), and stopAll() ends them (SIGTERM, then SIGKILL).

const children = new Set<ChildProcess>();

function start(argv: string[], opts: { core?: string; log: string; cwd?: string; env?: Record<string, string> }): ChildProcess {
  const [cmd, ...args] = opts.core !== undefined && hasTaskset ? ['taskset', '-c', opts.core, ...argv] : argv;
  const fd = openSync(opts.log, 'a');
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, stdio: ['ignore', fd, fd], env: opts.env ? { ...process.env, ...opts.env } : undefined });
  closeSync(fd);
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

async function stopAll(): Promise<void> {
  await Promise.all([...children].map(stop));
}

// A last resort if the bench process itself goes away (an uncaught error, Ctrl-C).
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// Tools.

const hasTaskset = spawnSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).status === 0;

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

/** Makes sure wrk, nginx and haproxy are there; for each one that is not, why. */
function ensureTools(): Record<'wrk' | 'nginx' | 'haproxy', string | undefined> {
  const wanted = { wrk: 'wrk', nginx: 'nginx-light', haproxy: 'haproxy' } as const;
  const missing = (Object.keys(wanted) as Array<keyof typeof wanted>).filter((t) => !which(t));
  const why: Record<'wrk' | 'nginx' | 'haproxy', string | undefined> = { wrk: undefined, nginx: undefined, haproxy: undefined };
  if (missing.length === 0) return why;
  const tail = (s: string) => s.trim().split('\n').slice(-1)[0]?.slice(0, 120) ?? '';
  if (process.getuid?.() !== 0) {
    for (const t of missing) why[t] = `${t} not installed and not root, so not installed (apt-get install ${wanted[t]})`;
    return why;
  }
  process.stderr.write(`bench/proxy: installing ${missing.map((t) => wanted[t]).join(' ')} (apt-get)\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], { encoding: 'utf8', env, timeout: 120_000 });
  if (update.status !== 0) {
    for (const t of missing) why[t] = `${t} not installed; apt-get update failed: ${tail(update.stderr || update.error?.message || '')}`;
    return why;
  }
  // One package at a time, so one that cannot be had does not keep the others out.
  for (const t of missing) {
    const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', wanted[t]], { encoding: 'utf8', env, timeout: 180_000 });
    if (!which(t)) why[t] = `${t} not installed; apt-get install ${wanted[t]} failed: ${tail(r.stderr || r.stdout || r.error?.message || '')}`;
  }
  return why;
}

// ---------------------------------------------------------------------------------------------
// Ports, readiness, /proc.


interface Probe {
  status: number;
  bytes: number;
  headers: Record<string, string | string[] | undefined>;
}

async function probe(port: number): Promise<Probe> {
  const { request } = await import('undici');
  const res = await request(`http://127.0.0.1:${port}${PATH}`, { headers: HEADERS, reset: true });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, bytes: body.length, headers: res.headers };
}

/** Waits until the server on `port` answers a request (or the process dies, or 15 s pass). */
async function ready(port: number, child: ChildProcess, log: string): Promise<Probe> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${lastLines(log)}`);
    const open = await new Promise<boolean>((done) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), done(true)));
      s.once('error', () => done(false));
    });
    if (open) {
      try {
        return await probe(port);
      } catch {
        /* not quite up yet */
      }
    }
    if (Date.now() > deadline) throw new Error(`not answering on 127.0.0.1:${port} after 15 s: ${lastLines(log)}`);
    await sleep(100);
  }
}

function lastLines(file: string, n = 3): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join(' | ').slice(0, 300);
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** utime + stime of the whole process (every thread), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / TICK; // fields 14 and 15
}

/**
 * Time the process's main thread was runnable but off its CPU, in ms (/proc/<pid>/schedstat): the
 * core was busy with something else, other processes or the process's own helper threads (V8's GC
 * and compiler threads share the pinned core).
 */
function waitedMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return NaN;
  }
}

/** VmHWM and VmRSS in MB (10^6 bytes). */
function memory(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { peak: (kb('VmHWM') * 1024) / 1e6, now: (kb('VmRSS') * 1024) / 1e6 };
}

// ---------------------------------------------------------------------------------------------
// Load: wrk for max throughput; the fixed-rate generator (this file with --loadgen).

interface WrkResult {
  rps: number;
  problems: string[];
}

async function wrk(port: number, seconds: number, log: string): Promise<WrkResult> {
  const out = join(log + '.out');
  writeFileSync(out, '');
  const args = ['wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '-H', 'x-user: alice', `http://127.0.0.1:${port}${PATH}`];
  const child = start(args, { core: CLIENT_CORE, log: out });
  const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
  const text = readFileSync(out, 'utf8');
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const problems: string[] = [];
  if (code !== 0 || Number.isNaN(rps)) problems.push(`wrk failed (${code}): ${text.trim().slice(-200)}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1];
  if (non2xx) problems.push(`${non2xx} non-2xx responses`);
  const socket = /Socket errors:(.*)/.exec(text)?.[1];
  if (socket) problems.push(`socket errors:${socket.trim()}`);
  return { rps, problems };
}

export interface RateResult {
  sent: number;
  ok: number;
  failed: number;
  seconds: number;
  p50: number;
  p99: number;
  p999: number;
  maxLagMs: number;
  firstError?: string;
}

/**
 * Runs the fixed-rate generator for warm-up + measured seconds; calls `onMeasure('start' | 'end')`
 * as the measured window opens and closes (the caller samples the proxy's CPU then).
 */
async function fixedRate(port: number, log: string, onMeasure: (phase: 'start' | 'end') => void): Promise<RateResult> {
  const args = [process.execPath, '--import=tsx', SELF, '--loadgen', `http://127.0.0.1:${port}${PATH}`, String(RATE), String(RATE_WARMUP), String(SECONDS)];
  const [cmd, ...rest] = hasTaskset ? ['taskset', '-c', CLIENT_CORE, ...args] : args;
  const errFd = openSync(log, 'a');
  const child = spawn(cmd, rest, { cwd: ROOT, stdio: ['ignore', 'pipe', errFd] });
  closeSync(errFd);
  children.add(child);
  child.once('exit', () => children.delete(child));
  let buffered = '';
  let result: RateResult | undefined;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line === 'measure-start') onMeasure('start');
      else if (line === 'measure-end') onMeasure('end');
      else if (line.startsWith('{')) result = JSON.parse(line) as RateResult;
    }
  });
  // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
  const code = await new Promise<number | null>((done) => child.once('close', (c) => done(c)));
  if (!result) throw new Error(`fixed-rate generator failed (${code}): ${lastLines(log)}`);
  return result;
}

/** The generator itself (a separate process, pinned to the client core). */
async function loadgen(url: string, rate: number, warmup: number, seconds: number): Promise<void> {
  const { Pool } = await import('undici');
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 300_000 });
  const interval = 1e9 / rate; // ns
  const t0 = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - t0);
  const warmEnd = warmup * 1e9;
  const end = (warmup + seconds) * 1e9;
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let maxLag = 0;
  let inFlight = 0;
  let firstError: string | undefined;
  let measuring = false;
  let next = 0;

  const fire = (counted: boolean) => {
    const started = process.hrtime.bigint();
    inFlight++;
    if (counted) sent++;
    pool
      .request({ path: u.pathname, method: 'GET', headers: HEADERS })
      .then(async (res) => {
        await res.body.dump({ limit: 1 << 20 });
        if (counted) {
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
          if (res.statusCode === 200) ok++;
          else {
            failed++;
            firstError ??= `status ${res.statusCode}`;
          }
        }
      })
      .catch((e: Error) => {
        if (counted) {
          failed++;
          firstError ??= e.message;
        }
      })
      .finally(() => inFlight--);
  };

  await new Promise<void>((done) => {
    const tick = () => {
      const t = now();
      if (!measuring && t >= warmEnd) {
        measuring = true;
        process.stdout.write('measure-start\n');
      }
      while (next <= t && next < end) {
        if (next >= warmEnd) maxLag = Math.max(maxLag, (t - next) / 1e6);
        fire(next >= warmEnd);
        next += interval;
      }
      if (next >= end) return done();
      setTimeout(tick, Math.max(0, (next - now()) / 1e6));
    };
    tick();
  });
  // Let the last requests finish (at most 5 s).
  const waitUntil = Date.now() + 5000;
  while (inFlight > 0 && Date.now() < waitUntil) await sleep(5);
  process.stdout.write('measure-end\n');
  latencies.sort((a, b) => a - b);
  const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN);
  const result: RateResult = { sent, ok, failed, seconds, p50: q(0.5), p99: q(0.99), p999: q(0.999), maxLagMs: maxLag, firstError };
  process.stdout.write(JSON.stringify(result) + '\n');
  await pool.destroy();
}

/** The fallback upstream when nginx is not available: 1 KiB, keep-alive. */
function nodeUpstream(port: number): void {
  const body = Buffer.alloc(BODY_BYTES, 'x');
  const server = createHttpServer({ keepAliveTimeout: 300_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html', 'content-length': BODY_BYTES });
    res.end(body);
  });
  server.listen(port, '127.0.0.1');
}

// ---------------------------------------------------------------------------------------------
// The targets.

interface Target {
  label: string;
  /** Starts the proxy (pinned to the proxy core) on `port`; undefined for "direct". */
  start?: (port: number) => { child: ChildProcess; log: string };
  /** Why this target cannot run, if it cannot. */
  skip?: string;
  /** What a correct response carries, checked once before measuring. */
  expectHeaders?: string[];
  /** Where the proxy's alloc-probe (a Node-based proxy) writes its totals. */
  allocFile?: string;
  /** Max throughput only (no fixed-rate run). */
  maxOnly?: boolean;
}

interface Measured {
  rps?: number;
  rpsNote?: string;
  rate?: RateResult;
  /** CPU µs per request at the fixed rate. */
  cpuUs?: number;
  cores?: number;
  /** V8 heap bytes allocated per request at the fixed rate, and the GCs in that window. */
  allocBytes?: number;
  gcs?: number;
  /** ms the proxy waited for its CPU during the fixed-rate window, and during the max-throughput run. */
  waitedAtRate?: number;
  waitedAtMax?: number;
  rssAtRate?: { peak: number; now: number };
  rssPeak?: number;
  error?: string;
  /** Which process CPU and memory are of. */
  of: string;
}

function fill(template: string, vars: Record<string, string | number>): string {
  return readFileSync(join(FIXTURES, template), 'utf8').replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in vars)) throw new Error(`${template}: no value for {{${k}}}`);
    return String(vars[k]);
  });
}

async function measure(target: Target, upstream: { port: number; child: ChildProcess }, dir: string, wrkMissing: string | undefined): Promise<Measured> {
  let port = upstream.port;
  let proc = upstream.child;
  let of = 'the upstream';
  let started: ChildProcess | undefined;
  try {
    if (target.start) {
      port = await freePort();
      const { child, log } = target.start(port);
      started = proc = child;
      of = 'the proxy';
      const first = await ready(port, child, log);
      const missing = (target.expectHeaders ?? []).filter((h) => first.headers[h] === undefined);
      if (first.status !== 200 || first.bytes !== BODY_BYTES || missing.length > 0) {
        throw new Error(`wrong response through the proxy: ${first.status}, ${first.bytes} bytes${missing.length ? `, missing ${missing.join(', ')}` : ''}`);
      }
    }
    const pid = proc.pid!;
    const m: Measured = { of };

    // 1. Fixed rate: latency, CPU, allocation, memory.
    if (!target.maxOnly) await fixedRatePhase(target, port, pid, dir, m);

    // 2. Max throughput.
    if (wrkMissing) m.rpsNote = `skipped: ${wrkMissing}`;
    else {
      const wlog = join(dir, `${slug(target.label)}-wrk`);
      if (WRK_WARMUP > 0) await wrk(port, WRK_WARMUP, wlog + '-warmup');
      const waitStart = waitedMs(pid);
      const w = await wrk(port, SECONDS, wlog);
      m.waitedAtMax = waitedMs(pid) - waitStart;
      m.rps = w.rps;
      if (w.problems.length) m.rpsNote = w.problems.join('; ');
    }
    m.rssPeak = memory(pid).peak;
    return m;
  } catch (error) {
    return { of, error: (error as Error).message };
  } finally {
    if (started) await stop(started);
  }
}

async function fixedRatePhase(target: Target, port: number, pid: number, dir: string, m: Measured): Promise<void> {
  const askAlloc = () => target.allocFile && process.kill(pid, 'SIGUSR2');
  let cpuStart = 0;
  let wallStart = 0n;
  let cpu: number | undefined;
  let waitStart = 0;
  const rlog = join(dir, `${slug(target.label)}-loadgen.log`);
  m.rate = await fixedRate(port, rlog, (phase) => {
    if (phase === 'start') {
      askAlloc();
      cpuStart = cpuSeconds(pid);
      waitStart = waitedMs(pid);
      wallStart = process.hrtime.bigint();
    } else {
      askAlloc();
      cpu = cpuSeconds(pid) - cpuStart;
      const wall = Number(process.hrtime.bigint() - wallStart) / 1e9;
      m.cores = cpu / wall;
      m.rssAtRate = memory(pid);
      m.waitedAtRate = waitedMs(pid) - waitStart;
    }
  });
  const answered = m.rate.ok + m.rate.failed;
  if (cpu !== undefined && answered > 0) m.cpuUs = (cpu / answered) * 1e6;
  if (target.allocFile && answered > 0) {
    // The probe answers a signal from its event loop: give it a moment to write the second line.
    let totals: Array<{ allocated: number; gcs: number }> = [];
    for (let i = 0; i < 20 && totals.length < 2; i++) {
      await sleep(50);
      totals = existsSync(target.allocFile) ? readFileSync(target.allocFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    }
    if (totals.length >= 2) {
      m.allocBytes = (totals[totals.length - 1]!.allocated - totals[0]!.allocated) / answered;
      m.gcs = totals[totals.length - 1]!.gcs - totals[0]!.gcs;
    }
  }
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** What the data-plane benchmark prints: one row per proxy, then the ratios the data-path issue's targets are stated in. */
export interface ProxyBench {
  table: Grid;
  summary: BenchRow[];
}

const LABELS = {
  direct: 'direct to the upstream',
  plain: 'plain Node.js proxy',
  none: 'sluice, no filters',
  three: 'sluice, router + headers + telemetry',
  eight: 'sluice, npm start chain of 8',
  workers: 'sluice --workers 2, 3 filters',
  nginx: 'nginx proxy, 1 worker',
  haproxy: 'HAProxy, 1 thread',
} as const;

export async function benchProxy(): Promise<ProxyBench> {
  const table: Grid = {
    title: `data plane, per proxy (pinned to core ${PROXY_CORE}; max: wrk -t1 -c${CONNECTIONS}; CPU, heap, latency: open loop at ${RATE} req/s)`,
    header: ['proxy', 'max req/s', `CPU µs/req`, 'cores', 'heap B/req', 'GCs', 'p50 ms', 'p99 ms', 'p99.9 ms', 'RSS MB', 'note'],
    rows: [],
    notes: [],
  };
  const summary: BenchRow[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-proxy-'));
  chmodSync(dir, 0o755); // nginx may read as another user
  let keep = false;
  // Ctrl-C or a kill while this runs: take the children along (the 'exit' hook does not run then).
  const onSignal = (signal: NodeJS.Signals) => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const skipRow = (label: string, why: string) => table.rows.push([label, '', '', '', '', '', '', '', '', '', `skipped: ${why}`]);
  try {
    const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    if (Number(loadBefore.split(' ')[0]) > cpus().length) {
      table.notes!.push(`THE MACHINE IS BUSY: load average ${loadBefore.split(' ')[0]} on ${cpus().length} CPUs before the run. The proxy's core is shared with other work (see "off-CPU while runnable"): compare nothing across runs, and ratios within this run only roughly.`);
    }
    const tools = ensureTools();
    if (!hasTaskset) table.notes!.push('taskset missing: nothing is pinned, numbers are noisier');
    const sluiceMain = join(ROOT, 'dist', 'runtime', 'cli', 'main.js');
    const missingBuild = ['router', 'headers', 'telemetry', 'authz', 'ratelimit', 'fault', 'retry', 'hello'].filter((f) => !existsSync(join(ROOT, 'build', 'filters', `${f}.wasm`)));
    const sluiceSkip = !existsSync(sluiceMain) ? 'dist/ missing: run npm run build' : undefined;
    const filtersSkip = sluiceSkip ?? (missingBuild.length ? `build/filters/${missingBuild[0]}.wasm missing: run npm run build` : undefined);

    // The upstream, on the client core.
    mkdirSync(join(dir, 'www'));
    writeFileSync(join(dir, 'www', '1k.html'), Buffer.alloc(BODY_BYTES, 'x'));
    chmodSync(join(dir, 'www'), 0o755);
    const upstreamPort = await freePort();
    const ulog = join(dir, 'upstream.log');
    const startNodeUpstream = () => start([process.execPath, '--import=tsx', SELF, '--upstream', String(upstreamPort)], { core: CLIENT_CORE, log: ulog });
    let upstreamKind: string;
    let upstreamChild: ChildProcess;
    try {
      if (tools.nginx) throw new Error(tools.nginx);
      upstreamKind = 'nginx (1 KiB static file, one process)';
      const conf = join(dir, 'nginx-upstream.conf');
      writeFileSync(conf, fill('nginx-upstream.conf', { DIR: dir, PORT: upstreamPort }));
      upstreamChild = start(['nginx', '-p', dir, '-e', join(dir, 'nginx-upstream.err'), '-c', conf], { core: CLIENT_CORE, log: ulog });
      await ready(upstreamPort, upstreamChild, ulog);
    } catch (error) {
      upstreamKind = `Node http server (1 KiB; nginx unavailable: ${(error as Error).message})`;
      try {
        upstreamChild = startNodeUpstream();
        await ready(upstreamPort, upstreamChild, ulog);
      } catch (error2) {
        keep = true;
        skipRow('upstream', `no upstream, nothing measured: ${(error2 as Error).message} (logs kept in ${dir})`);
        return { table, summary };
      }
    }
    process.stderr.write(`bench/proxy: upstream ${upstreamKind} on 127.0.0.1:${upstreamPort}; ${SECONDS} s per measurement after ${RATE_WARMUP} s (fixed rate) / ${WRK_WARMUP} s (wrk) warm-up\n`);

    // Node-based proxies run with the allocation probe preloaded.
    const node = (label: string, args: string[], core = PROXY_CORE) => (port: number) => {
      const log = join(dir, `${slug(label)}.log`);
      const allocFile = join(dir, `${slug(label)}.alloc`);
      const prof = process.env.SLUICE_BENCH_PROF ? [`--cpu-prof`, `--cpu-prof-dir=${join(process.env.SLUICE_BENCH_PROF, slug(label))}`] : [];
      const child = start([process.execPath, ...prof, `--import=${ALLOC_PROBE}`, ...args.map((a) => a.replace('{{PORT}}', String(port)))], { core, log, env: { SLUICE_BENCH_ALLOC_FILE: allocFile } });
      return { child, log };
    };
    const sluice = (label: string, config: string, extra: string[] = [], core = PROXY_CORE) => (port: number) => {
      const file = join(dir, `${slug(label)}.yaml`);
      writeFileSync(file, fill(config, { ROOT, PORT: port, UPSTREAM_PORT: upstreamPort }));
      return node(label, [join(ROOT, 'bin', 'sluice.js'), 'run', '-c', file, '--drain-ms', '500', ...extra], core)(port);
    };
    // Two workers need two cores of their own, with the load generator and the upstream elsewhere.
    const manyCpus = cpus().length >= 4;
    const workersShared = !manyCpus && process.env.SLUICE_BENCH_WORKERS2 === 'shared';
    const workersCores = manyCpus ? '1,2' : '0,1';
    const workersSkip =
      filtersSkip ??
      (manyCpus || workersShared
        ? undefined
        : `${cpus().length} CPUs: two workers would share core ${CLIENT_CORE} with wrk and the upstream, so the ratio to one worker would not be fair (needs 4 CPUs; SLUICE_BENCH_WORKERS2=shared measures it anyway)`);
    const targets: Target[] = [
      { label: LABELS.direct },
      { label: LABELS.plain, start: node(LABELS.plain, [join(ROOT, 'bench', 'plain-node-proxy.mjs'), '{{PORT}}', String(upstreamPort)]) },
      { label: LABELS.none, start: sluice(LABELS.none, 'sluice-no-filters.yaml'), skip: sluiceSkip },
      { label: LABELS.three, start: sluice(LABELS.three, 'sluice-3-filters.yaml'), skip: filtersSkip, expectHeaders: ['x-served-by', 'x-request-id', 'x-trace-id'] },
      { label: LABELS.eight, start: sluice(LABELS.eight, 'sluice-8-filters.yaml'), skip: filtersSkip, expectHeaders: ['x-served-by', 'x-request-id', 'x-hello'] },
      {
        label: LABELS.workers,
        start: sluice(LABELS.workers, 'sluice-3-filters.yaml', ['--workers', '2'], workersCores),
        skip: workersSkip,
        expectHeaders: ['x-served-by'],
        maxOnly: true,
      },
      {
        label: LABELS.nginx,
        skip: tools.nginx,
        start: (port) => {
          const conf = join(dir, 'nginx-proxy.conf');
          writeFileSync(conf, fill('nginx-proxy.conf', { DIR: dir, PORT: port, UPSTREAM_PORT: upstreamPort }));
          const log = join(dir, 'nginx-proxy.log');
          return { child: start(['nginx', '-p', dir, '-e', join(dir, 'nginx-proxy.err'), '-c', conf], { core: PROXY_CORE, log }), log };
        },
      },
      {
        label: LABELS.haproxy,
        skip: tools.haproxy,
        start: (port) => {
          const conf = join(dir, 'haproxy.cfg');
          writeFileSync(conf, fill('haproxy.cfg', { PORT: port, UPSTREAM_PORT: upstreamPort }));
          const log = join(dir, 'haproxy.log');
          return { child: start(['haproxy', '-db', '-f', conf], { core: PROXY_CORE, log }), log };
        },
      },
    ];
    const only = process.env.SLUICE_BENCH_TARGETS?.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

    const results = new Map<string, Measured>();
    for (const t of targets) {
      if (only && !only.some((o) => t.label.toLowerCase().includes(o))) continue;
      if (t.skip) {
        skipRow(t.label, t.skip);
        continue;
      }
      if (t.start && t.label !== LABELS.nginx && t.label !== LABELS.haproxy) t.allocFile = join(dir, `${slug(t.label)}.alloc`);
      process.stderr.write(`bench/proxy: ${t.label}\n`);
      const m = await measure(t, { port: upstreamPort, child: upstreamChild }, dir, tools.wrk);
      results.set(t.label, m);
      if (m.error) {
        keep = true;
        table.rows.push([t.label, '', '', '', '', '', '', '', '', '', `failed: ${m.error} (logs kept in ${dir})`]);
        continue;
      }
      const r = m.rate;
      const notes: string[] = [];
      if (m.rpsNote) notes.push(m.rpsNote);
      if (t.maxOnly) notes.push(`max throughput only; cores ${workersCores}${workersShared ? ', shared with wrk and the upstream: not a fair ratio' : ''}`);
      if (r && r.failed) notes.push(`${r.failed} of ${r.sent} failed at ${RATE} req/s (${r.firstError})`);
      if (r && r.p50 > 50) notes.push(`did not keep up with ${RATE} req/s (p50 ${r.p50.toFixed(0)} ms: a queue), so its fixed-rate numbers are of an overloaded proxy`);
      if (r && r.maxLagMs > 5) notes.push(`generator lag ≤ ${r.maxLagMs.toFixed(0)} ms`);
      // The upstream shares its core with the load generator by design, so only the proxy's wait says something.
      const share = (ms: number | undefined) => `${Math.round((100 * (ms ?? 0)) / (SECONDS * 1000))}%`;
      if (m.of === 'the proxy' && (m.waitedAtMax ?? 0) > 0.02 * SECONDS * 1000) notes.push(`off-CPU while runnable ${share(m.waitedAtMax)} of the max run`);
      if (m.of === 'the proxy' && (m.waitedAtRate ?? 0) > 0.02 * SECONDS * 1000) notes.push(`${share(m.waitedAtRate)} of the ${RATE}/s run`);
      if (m.of === 'the upstream') notes.push('CPU, RSS: of the upstream');
      table.rows.push([
        t.label,
        cell(m.rps, 0),
        cell(m.cpuUs, 0),
        cell(m.cores, 2),
        m.allocBytes === undefined ? '–' : Math.round(m.allocBytes).toLocaleString('en-US'),
        m.gcs === undefined ? '–' : String(m.gcs),
        cell(r?.p50),
        cell(r?.p99),
        cell(r?.p999),
        cell(m.rssAtRate?.peak, 0), // a max-only run has none (and with --workers its pid is only the primary)
        notes.join('; '),
      ]);
    }
    table.notes!.push(
      `CPU µs/req: utime+stime of the proxy process (all threads) over the ${SECONDS} s at ${RATE} req/s ÷ requests; cores: the same ÷ seconds.`,
      `heap B/req: V8 heap bytes allocated per request in that window (used heap + what each GC freed, v8.GCProfiler via bench/alloc-probe.mjs; Node-based proxies only; off-heap Buffers and Wasm memory not counted); GCs: collections in the window.`,
      `p50/p99/p99.9: dispatch to last body byte, open-loop Node/undici generator (no wrk2 in Debian), ${RATE_WARMUP} s warm-up; RSS: peak (VmHWM) after the fixed-rate run; MB = 10^6 bytes.`,
      `"off-CPU while runnable": the share of the window the proxy's main thread waited for its core (schedstat): its own GC/compiler threads or other work on the machine.`,
      `upstream: ${upstreamKind}, sharing core ${CLIENT_CORE} with the load generators; proxy alone on core ${PROXY_CORE}; load average before ${loadBefore}, after ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}.`,
    );

    // The ratios the data-path issue's targets are stated in.
    const get = (label: string) => {
      const m = results.get(label);
      return m && !m.error ? m : undefined;
    };
    const [plain, none, three, eight, workers, nginx, haproxy, direct] = [LABELS.plain, LABELS.none, LABELS.three, LABELS.eight, LABELS.workers, LABELS.nginx, LABELS.haproxy, LABELS.direct].map(get);
    const ratio = (name: string, a: number | undefined, b: number | undefined, target?: string, note?: string) =>
      summary.push({ name, value: a !== undefined && b !== undefined ? a / b : NaN, unit: '×', target, note: a === undefined || b === undefined ? 'not measured' : note });
    ratio('max throughput: sluice 3 filters ÷ plain Node', three?.rps, plain?.rps, '≥ 1.0');
    ratio('max throughput: sluice no filters ÷ plain Node', none?.rps, plain?.rps, '≥ 1.3');
    ratio('max throughput: sluice chain of 8 ÷ plain Node', eight?.rps, plain?.rps);
    ratio(`CPU per request at ${RATE} req/s: sluice 3 filters ÷ plain Node`, three?.cpuUs, plain?.cpuUs, '≤ 0.8');
    ratio(`CPU per request at ${RATE} req/s: sluice no filters ÷ plain Node`, none?.cpuUs, plain?.cpuUs);
    ratio(`heap bytes per request: sluice 3 filters ÷ plain Node`, three?.allocBytes, plain?.allocBytes);
    summary.push({ name: `p99 at ${RATE} req/s: sluice 3 filters`, value: three?.rate?.p99 ?? NaN, unit: 'ms', target: '≤ 2', note: three?.rate ? undefined : 'not measured' });
    summary.push({ name: `peak RSS at ${RATE} req/s: sluice 3 filters`, value: three?.rssAtRate?.peak ?? NaN, unit: 'MB', target: '≤ 80', note: three?.rssAtRate ? undefined : 'not measured' });
    ratio(
      'max throughput: sluice --workers 2 ÷ 1 worker (3 filters)',
      workers?.rps,
      workers ? three?.rps : undefined,
      '≥ 1.8',
      workersShared ? 'both cores shared with wrk and the upstream: not a fair ratio' : undefined,
    );
    if (!workers) summary[summary.length - 1]!.note = workersSkip ? `skipped: ${workersSkip}` : 'not measured';
    ratio('max throughput: sluice 3 filters ÷ sluice no filters', three?.rps, none?.rps);
    ratio('max throughput: sluice no filters ÷ nginx', none?.rps, nginx?.rps);
    ratio('max throughput: sluice no filters ÷ HAProxy', none?.rps, haproxy?.rps);
    ratio('max throughput: plain Node ÷ direct (the rig\'s ceiling)', plain?.rps, direct?.rps);
    return { table, summary };
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    await stopAll();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Standalone, and the child-process modes.

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === '--loadgen') {
    await loadgen(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
  } else if (mode === '--upstream') {
    nodeUpstream(Number(args[0]));
  } else {
    const { printGrid, printTable } = await import('./table.ts');
    process.stdout.write(`sluice bench: node ${process.version}, ${cpus().length} cpus\n`);
    const { table, summary } = await benchProxy();
    printGrid(table);
    printTable('data plane: the ratios of the data-path issue (same run)', summary);
  }
}
