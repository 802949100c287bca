// A reflector and cache for one resource: list, then watch from the list's resourceVersion with
// bookmarks; on a closed watch, watch again from the last version seen; on 410 Gone, list again
// (and report deletions that happened meanwhile). Errors back off and retry forever, keeping the
// cache. Changes are reported as `namespace/name` keys only, never as logic in callbacks.
//
// client-node 1.4's ListWatch was not enough: it does not ask for bookmarks, stops for good on the
// first non-410 error, and has no way to tell when the first list is in the cache. Its Watch
// (one streaming GET, parsed per line) is used as is.

import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

export interface KubeObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number; uid?: string };
}

export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export interface InformerOptions<T> {
  kubeConfig: KubeConfig;
  /** The collection's path, e.g. /apis/sluice.dev/v1alpha1/wasmfilters. */
  path: string;
  /** Lists the collection (a consistent read). */
  list: () => Promise<ObjectList<T>>;
  /** Applied to every object before it is cached (drop what the controller never reads, to save memory). */
  transform?: (obj: T) => T;
  /** Said in the log when the collection answers 404 (e.g. how to install its CRD). */
  notFoundHint?: string;
  /** Called with `namespace/name` of every object that was added, changed or deleted. */
  onChange: (key: string) => void;
  log: Logger;
  /** Backoff after errors: first and longest delay. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** The server ends each watch after this long (randomised by up to half), and it is renewed. */
  watchTimeoutSeconds?: number;
  /** Extra query parameters of the watch, e.g. a labelSelector (`list` must select the same). */
  watchParams?: Record<string, string>;
  /** Counts restarts, by cause, for metrics. */
  onRestart?: (cause: 'closed' | 'error' | 'expired') => void;
}

export const keyOf = (o: KubeObject): string => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  private resourceVersion = '';
  private stopped = false;
  private abort?: AbortController;
  private failures = 0;
  private syncedOnce = false;
  private syncWaiters: Array<() => void> = [];
  private retryTimer?: NodeJS.Timeout;
  /** Bumped by every watch started and by stop(): callbacks of an older watch are ignored. */
  private watchGen = 0;
  private readonly watch: Watch;

  constructor(private readonly opts: InformerOptions<T>) {
    this.watch = new Watch(opts.kubeConfig);
  }

  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Resolves once the first list is in the cache. */
  waitForSync(): Promise<void> {
    return this.syncedOnce ? Promise.resolve() : new Promise((r) => this.syncWaiters.push(r));
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  get size(): number {
    return this.store.size;
  }

  start(): void {
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.watchGen++;
    clearTimeout(this.retryTimer);
    this.abort?.abort();
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    try {
      if (!this.resourceVersion) await this.relist();
      if (this.stopped) return;
      await this.startWatch();
    } catch (error) {
      this.retry(error, 'error');
    }
  }

  private async relist(): Promise<void> {
    const list = await this.opts.list();
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = keyOf(item);
      seen.add(key);
      this.upsert(key, item);
    }
    for (const key of [...this.store.keys()]) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.opts.onChange(key);
      }
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private upsert(key: string, raw: T): void {
    const obj = this.opts.transform ? this.opts.transform(raw) : raw;
    const old = this.store.get(key);
    if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.store.set(key, obj);
    this.opts.onChange(key);
  }

  private startWatch(): Promise<void> {
    const timeout = this.opts.watchTimeoutSeconds ?? 300;
    const started = Date.now();
    const gen = ++this.watchGen;
    const current = () => gen === this.watchGen && !this.stopped;
    const params = {
      ...this.opts.watchParams,
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.round(timeout * (1 + Math.random() / 2)),
    };
    return this.watch
      .watch(
        this.opts.path,
        params,
        (type: string, obj: T & { code?: number; message?: string }) => {
          if (!current()) return;
          switch (type) {
            case 'ADDED':
            case 'MODIFIED':
              this.upsert(keyOf(obj), obj);
              break;
            case 'DELETED': {
              const key = keyOf(obj);
              if (this.store.delete(key)) this.opts.onChange(key);
              break;
            }
            case 'BOOKMARK':
              break;
            case 'ERROR':
              // 410 Gone: the version we watch from was compacted away; list again.
              if (obj.code === 410) this.resourceVersion = '';
              else this.opts.log.warn('watch error event', { path: this.opts.path, code: obj.code, message: obj.message });
              return;
          }
          if (obj.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
        },
        (err: (Error & { statusCode?: number }) | null) => {
          if (!current()) return;
          if (err && err.name === 'AbortError') return;
          // 410 Gone, as the answer or as an ERROR event before the end: list again, at once.
          if (err?.statusCode === 410 || (!err && !this.resourceVersion)) {
            this.resourceVersion = '';
            this.opts.onRestart?.('expired');
            this.opts.log.info('watch expired (410 Gone); listing again', { path: this.opts.path });
            void this.run();
            return;
          }
          if (err) return this.retry(err, 'error');
          // A watch that ends normally (server timeout, API server restart) is renewed at once,
          // unless it ended right away, which is an error in disguise.
          this.opts.onRestart?.('closed');
          if (Date.now() - started < 1000) return this.retry(new Error('the watch closed at once'), 'closed');
          this.failures = 0;
          void this.run();
        },
      )
      .then((abort) => {
        if (current()) this.abort = abort;
        else abort.abort();
      });
  }

  private retry(error: unknown, cause: 'error' | 'closed'): void {
    if (this.stopped) return;
    if (cause === 'error') this.opts.onRestart?.('error');
    const min = this.opts.minBackoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const delay = Math.min(max, min * 2 ** Math.min(this.failures, 20)) * (0.75 + Math.random() / 2);
    this.failures++;
    const status = (error as { code?: unknown; statusCode?: unknown }).statusCode ?? (error as { code?: unknown }).code;
    const hint = status === 404 ? this.opts.notFoundHint : status === 403 ? 'the controller\'s ServiceAccount lacks list/watch on this resource: apply deploy/rbac/' : undefined;
    this.opts.log.warn('list/watch failed; retrying with the cache kept', { path: this.opts.path, error: describe(error), retryInMs: Math.round(delay), ...(hint ? { hint } : {}) });
    this.retryTimer = setTimeout(() => void this.run(), delay);
  }
}

function describe(error: unknown): string {
  const e = error as Error & { code?: unknown; statusCode?: number; cause?: { code?: string } };
  return [e.statusCode ?? (typeof e.code === 'number' ? e.code : undefined), e.cause?.code, e.message?.split('\n')[0]].filter((x) => x !== undefined && x !== '').join(' ');
}
