// `sluice run --workers N`: one node proxy per core. The primary process validates the config,
// forks N workers (node:cluster; the listening ports are shared and new connections are handed
// out in turn), serves the admin endpoint for all of them, and keeps them coherent:
// - metrics: /stats/prometheus is the sum of every worker's;
// - reload: a new snapshot is applied to one worker first; only if its filters accept it do the
//   others get it, so a filter that refuses its config leaves every worker on the old one;
// - shared data: a filter's write in one worker is passed to the others through the primary
//   (eventually consistent: CAS is exact within a worker; across workers a write arrives within
//   an IPC round trip);
// - drain: SIGTERM turns /ready false and drains every worker; a worker that dies is replaced.

import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import type { Server } from 'node:http';
import { loadConfig } from '../config/index.ts';
import { log } from '../log.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { adminServer, type AdminView } from '../proxy/admin.ts';
import { mergePrometheus } from '../proxy/metrics-merge.ts';
import { NodeProxy } from '../proxy/node-proxy.ts';

type ToWorker =
  | { type: 'apply'; id: number; snapshot: Snapshot }
  | { type: 'ask'; id: number; what: 'metrics' | 'filters' | 'status' }
  | { type: 'shared'; vmId: string; key: string; value: string }
  | { type: 'stop'; drainMs: number };

type FromWorker =
  | { type: 'listening-for-messages' }
  | { type: 'ready'; addresses: Record<string, AddressInfo> }
  | { type: 'answer'; id: number; value?: unknown; error?: string }
  | { type: 'shared'; vmId: string; key: string; value: string }
  | { type: 'failed'; error: string };

/** `--workers` as given: a count, or `auto` for one per core. */
export function workerCount(text: string): number | undefined {
  if (text === 'auto') return availableParallelism();
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 && n <= 256 ? n : undefined;
}

// ---- the primary ---------------------------------------------------------------------------

class Primary {
  ready = false;
  snapshot: Snapshot;
  private readonly workers = new Map<Worker, { ready: boolean }>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private stopping = false;
  /** When recent replacement workers were started: a worker that keeps dying is restarted ever more slowly. */
  private restarts: number[] = [];

  constructor(
    snapshot: Snapshot,
    private readonly count: number,
  ) {
    this.snapshot = snapshot;
  }

  /** Forks the workers; resolves with their listeners' addresses once all are serving. A worker that cannot start stops them all. */
  async start(): Promise<Record<string, AddressInfo>> {
    try {
      const started = await Promise.all(Array.from({ length: this.count }, () => this.fork()));
      this.ready = true;
      return started[0]!;
    } catch (error) {
      this.stopping = true;
      for (const w of this.workers.keys()) w.kill('SIGKILL');
      throw error;
    }
  }

  /** Starts a worker in place of one that died, after a pause that grows while they keep dying. */
  private replace(): void {
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => now - t < 60_000);
    const delay = Math.min(30_000, this.restarts.length === 0 ? 0 : 500 * 2 ** (this.restarts.length - 1));
    this.restarts.push(now);
    setTimeout(() => {
      if (this.stopping) return;
      this.fork().catch((error: Error) => log('error', `a replacement worker failed to start: ${error.message}`));
    }, delay).unref();
  }

  private fork(): Promise<Record<string, AddressInfo>> {
    const worker = cluster.fork({ SLUICE_WORKER: '1' });
    this.workers.set(worker, { ready: false });
    return new Promise((resolve, reject) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'listening-for-messages') {
          worker.send({ type: 'apply', id: 0, snapshot: this.snapshot } satisfies ToWorker);
        } else if (m.type === 'ready') {
          this.workers.get(worker)!.ready = true;
          resolve(m.addresses);
        } else if (m.type === 'failed') {
          reject(new Error(m.error));
        } else if (m.type === 'answer') {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.error !== undefined) p?.reject(new Error(m.error));
          else p?.resolve(m.value);
        } else if (m.type === 'shared') {
          for (const other of this.workers.keys()) if (other !== worker && other.isConnected()) other.send(m);
        }
      });
      worker.once('exit', (code, signal) => {
        this.workers.delete(worker);
        reject(new Error(`worker ${worker.id} exited during start-up (${signal ?? code})`));
        if (this.stopping) return;
        log('warn', `worker ${worker.id} (pid ${worker.process.pid}) exited (${signal ?? `code ${code}`}); starting another`);
        this.replace();
      });
    });
  }

  private ask(worker: Worker, message: { type: 'apply'; snapshot: Snapshot } | { type: 'ask'; what: 'metrics' | 'filters' | 'status' }, timeoutMs = 10_000): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`worker ${worker.id} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      worker.send({ ...message, id } as ToWorker);
    });
  }

  private live(): Worker[] {
    return [...this.workers].filter(([w, s]) => s.ready && w.isConnected()).map(([w]) => w);
  }

  /** Applies `next` to one worker; only when its filters accept it, to the rest. */
  async apply(next: Snapshot): Promise<void> {
    const [first, ...rest] = this.live();
    if (first) await this.ask(first, { type: 'apply', snapshot: next });
    this.snapshot = next;
    await Promise.all(rest.map((w) => this.ask(w, { type: 'apply', snapshot: next })));
  }

  async metrics(): Promise<string> {
    const texts = (await Promise.all(this.live().map((w) => this.ask(w, { type: 'ask', what: 'metrics' })))) as string[];
    return mergePrometheus([...texts, `# HELP sluice_workers Worker processes serving.\n# TYPE sluice_workers gauge\nsluice_workers ${this.live().length}\n`]);
  }

  /** Each filter over all workers: counts summed, quarantined if it is in any. */
  async filterStatus(): Promise<unknown> {
    const lists = (await Promise.all(this.live().map((w) => this.ask(w, { type: 'ask', what: 'filters' })))) as Array<Array<Record<string, unknown>>>;
    const byName = new Map<string, Record<string, unknown>>();
    for (const list of lists) {
      for (const f of list) {
        const seen = byName.get(f.name as string);
        if (!seen) {
          byName.set(f.name as string, { ...f, workers: 1 });
          continue;
        }
        for (const [k, v] of Object.entries(f)) if (typeof v === 'number' && typeof seen[k] === 'number') seen[k] = (seen[k] as number) + v;
        if (f.state === 'quarantined') seen.state = 'quarantined';
        seen.workers = (seen.workers as number) + 1;
      }
    }
    return [...byName.values()];
  }

  async workersStatus(): Promise<unknown> {
    return Promise.all(
      [...this.workers].map(async ([w, s]) => ({
        id: w.id,
        pid: w.process.pid,
        ready: s.ready,
        ...(s.ready ? ((await this.ask(w, { type: 'ask', what: 'status' }).catch(() => ({}))) as object) : {}),
      })),
    );
  }

  async stop(drainMs: number): Promise<void> {
    this.stopping = true;
    this.ready = false;
    const exits = [...this.workers.keys()].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of this.workers.keys()) if (w.isConnected()) w.send({ type: 'stop', drainMs } satisfies ToWorker);
    const deadline = setTimeout(() => {
      for (const w of this.workers.keys()) w.kill('SIGKILL');
    }, drainMs + 5000);
    await Promise.all(exits);
    clearTimeout(deadline);
  }
}

/** What `sluice run` drives: reload on SIGHUP/file change/POST /reload, stop on SIGTERM. */
export interface Served {
  readonly addresses: Record<string, AddressInfo>;
  /** What the admin shows (the --metrics-listen endpoint reads it too). */
  readonly view: AdminView;
  reload(): Promise<void>;
  stop(drainMs: number): Promise<void>;
}

/** Starts the primary: validates the file, forks the workers, then serves the admin endpoint. */
export async function startPrimary(file: string, workers: number): Promise<Served> {
  const snapshot = await loadConfig(file);
  const primary = new Primary(snapshot, workers);
  const addresses = await primary.start();
  const reload = async () => {
    await primary.apply(await loadConfig(file));
    log('info', `applied ${file} to ${workers} workers`);
  };
  const view: AdminView = {
    get ready() {
      return primary.ready;
    },
    get snapshot() {
      return primary.snapshot;
    },
    metrics: () => primary.metrics(),
    filterStatus: () => primary.filterStatus(),
    workers: () => primary.workersStatus(),
    reload,
    status: () => ({ source: { file }, capturedPods: null }),
  };
  const admin: Server = adminServer(view);
  await new Promise<void>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(snapshot.admin.port, snapshot.admin.host, () => resolve());
  });
  log('info', `${workers} worker processes serving`);
  return {
    addresses: { ...addresses, admin: admin.address() as AddressInfo },
    view,
    reload,
    stop: async (drainMs) => {
      await primary.stop(drainMs);
      await new Promise((resolve) => admin.close(resolve));
    },
  };
}

// ---- a worker ------------------------------------------------------------------------------

/** A worker process: a node proxy without admin, driven by the primary's messages. */
export async function runWorker(): Promise<number> {
  const send = (m: FromWorker) => process.connected && process.send!(m);
  // Signals go to the whole process group (Ctrl-C): the primary decides when a worker drains.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  const first = await new Promise<Extract<ToWorker, { type: 'apply' }>>((resolve) => {
    const on = (m: ToWorker) => {
      if (m.type !== 'apply') return;
      process.off('message', on);
      resolve(m);
    };
    process.on('message', on);
    // Messages sent before a listener exists are lost: say when to send the snapshot.
    send({ type: 'listening-for-messages' });
  });
  let proxy: NodeProxy;
  try {
    proxy = await NodeProxy.start(first.snapshot, undefined, undefined, { admin: false });
  } catch (error) {
    const e = error as Error & { code?: string };
    process.send!({ type: 'failed', error: `${e.code ? `${e.code}: ` : ''}${e.message}` } satisfies FromWorker, () => process.exit(1));
    return await new Promise<number>(() => {});
  }
  proxy.env.sharedData.onWrite = (vmId, key, value) => send({ type: 'shared', vmId, key, value: Buffer.from(value).toString('base64') });
  let stopped: Promise<void> | undefined;
  const stop = (drainMs: number) => (stopped ??= proxy.stop(drainMs));
  process.on('message', async (m: ToWorker) => {
    const answer = async (fn: () => unknown) => {
      try {
        send({ type: 'answer', id: (m as { id: number }).id, value: await fn() });
      } catch (error) {
        send({ type: 'answer', id: (m as { id: number }).id, error: (error as Error).message });
      }
    };
    switch (m.type) {
      case 'apply':
        return answer(() => proxy.apply(m.snapshot).then(() => true));
      case 'ask':
        return answer(() => (m.what === 'metrics' ? proxy.metrics() : m.what === 'filters' ? proxy.filterStatus() : { requests: proxy.telemetry.requestsTotal }));
      case 'shared':
        return proxy.env.sharedData.replicate(m.vmId, m.key, new Uint8Array(Buffer.from(m.value, 'base64')));
      case 'stop':
        await stop(m.drainMs);
        process.exit(0);
    }
  });
  // The primary is gone (killed): nobody will say stop, so drain and go.
  process.once('disconnect', () => void stop(5000).then(() => process.exit(0)));
  send({ type: 'ready', addresses: proxy.addresses() });
  await new Promise(() => {});
  return 0;
}

export const isWorker = (): boolean => cluster.isWorker;
