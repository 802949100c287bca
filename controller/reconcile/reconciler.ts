// reconcile(key): read the WasmFilter from the cache, resolve and validate its module, write its
// status and emit Events on transitions. Level-triggered: it looks only at the object as it is
// now and at its status, so running it twice does nothing the second time.

import type { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { API_VERSION, digestHex, GROUP, KIND, PLURAL, VERSION, type WasmFilter } from '../crd/index.ts';
import { ControllerError } from '../errors.ts';
import type { EventRecorder } from '../kube/events.ts';
import type { Informer } from '../kube/informer.ts';
import type { Logger } from '../log.ts';
import type { ControllerMetrics } from '../metrics.ts';
import { resolveModule, type FetchOptions } from './resolve-source.ts';
import { conditionOf, desiredStatus, sameStatus, type Outcome } from './status.ts';
import type { FilterNodes } from '../nodes/node-report.ts';
import type { FilterVersionRef, RolloutStatus } from '../crd/index.ts';
import { filterVersion, versionedSpec } from '../discovery/node-config.ts';
import { nextRollout, ROLLOUT_DEFAULTS, type RolloutOptions } from '../rollout/rollout.ts';
import { validateModule } from './validate-module.ts';

export type ReconcileResult =
  /** Nothing to do, or done: no requeue (but a rollout may want a look again after `recheckMs`). */
  | { requeue: false; result: 'validated' | 'unchanged' | 'deleted' | 'invalid' | 'waiting'; recheckMs?: number }
  /** The module was refused: retried with backoff (the source may be fixed without a spec change). */
  | { requeue: true; result: 'refused' };

export interface ReconcilerDeps {
  informer: Informer<WasmFilter>;
  custom: CustomObjectsApi;
  core: CoreV1Api;
  events: EventRecorder;
  metrics: ControllerMetrics;
  log: Logger;
  fetchOptions: FetchOptions;
  rootNamespace: string;
  /** Checked right before each write: only the leader writes. */
  isLeader: () => boolean;
  /** Where a WasmFilter (`namespace/name`) stands on the nodes, from the replicas' node reports; undefined: no reports. */
  nodes?: (key: string) => FilterNodes | undefined;
  /**
   * The nodes with a workload the filter selects (discovery's Pods), as a function the rollout
   * calls only when it needs them, or undefined until the Pods are listed; absent: no rollouts
   * (every node gets each version at once).
   */
  candidates?: (filter: WasmFilter) => (() => readonly string[]) | undefined;
  /** False until the replicas' node reports are listed. */
  nodesSynced?: () => boolean;
  rollout?: RolloutOptions;
}

interface Attempt {
  uid: string;
  generation: number;
  retryAt: number;
}

export class Reconciler {
  /** Refused filters waiting for their retry: a status echo or resync before it does no work. */
  private readonly waiting = new Map<string, Attempt>();

  /** Module bytes by source and digest, most recently used last, bounded in total size. */
  private readonly modules = new ModuleMemory(64 * 1024 * 1024);

  /** Bytes of every module in force (a filter's status.digest), by sha256 hex: what nodes are sent. */
  private readonly validated = new Map<string, Uint8Array>();
  private readonly moduleListeners = new Set<(digest: string) => void>();
  /** Digests being loaded for a rollout: kept even before a status names them. */
  private readonly pinned = new Set<string>();
  /** Rollout modules their source did not have, by filter uid and digest: when to ask again. */
  private readonly rolloutMisses = new Map<string, number>();

  constructor(private readonly deps: ReconcilerDeps) {}

  /** The bytes of a validated module by sha256 hex (no prefix), if this replica holds them. */
  moduleByDigest(digest: string): Uint8Array | undefined {
    return this.validated.get(digest);
  }

  /** Calls `listener` with the sha256 hex of each module that becomes available; returns an unsubscribe. */
  onModule(listener: (digest: string) => void): () => void {
    this.moduleListeners.add(listener);
    return () => this.moduleListeners.delete(listener);
  }

  private keepModule(digest: string, bytes: Uint8Array): void {
    const hex = digestHex(digest);
    if (!this.validated.has(hex)) {
      this.validated.set(hex, bytes);
      for (const l of this.moduleListeners) l(hex);
    }
    // Drop modules no filter's status names any more (its digest, its rollout's stable and canary).
    const inForce = new Set<string | undefined>();
    for (const k of this.deps.informer.keys()) {
      const s = this.deps.informer.get(k)?.status;
      for (const d of [s?.digest, s?.rollout?.stable?.digest, s?.rollout?.canary?.digest]) if (d) inForce.add(digestHex(d));
    }
    for (const d of this.pinned) inForce.add(d);
    inForce.add(hex);
    for (const d of this.validated.keys()) if (!inForce.has(d)) this.validated.delete(d);
  }

  /** Records when a refused key is retried (the queue's backoff), so earlier triggers wait for it. */
  retryScheduled(key: string, delayMs: number): void {
    const f = this.deps.informer.get(key);
    if (f) this.waiting.set(key, { uid: f.metadata.uid ?? '', generation: f.metadata.generation ?? 0, retryAt: Date.now() + delayMs });
  }

  /**
   * Followers: fetches the module of a filter's status.digest when this replica lacks it, keeping
   * it only when the bytes have that digest (a moved tag is the leader's to validate). No writes.
   */
  async loadModuleInForce(key: string): Promise<void> {
    const filter = this.deps.informer.get(key);
    if (filter) await this.loadRolloutModules(filter, filter.status?.rollout);
    const digest = filter?.status?.digest;
    if (!filter || !digest || conditionOf(filter.status, 'Validated')?.status !== 'True' || this.validated.has(digestHex(digest))) return;
    if (specProblem(filter)) return;
    const mod = await this.resolve(filter.metadata.namespace, filter.spec);
    if (mod.digest === digest) this.keepModule(mod.digest, mod.bytes);
  }

  /**
   * `nodesOnly`: only what the nodes said changed, so a filter validated for its generation whose
   * module this replica holds is not resolved again (node reports change often).
   */
  async reconcile(key: string, opts: { nodesOnly?: boolean } = {}): Promise<ReconcileResult> {
    const filter = this.deps.informer.get(key);
    if (!filter) {
      this.waiting.delete(key);
      return { requeue: false, result: 'deleted' };
    }
    const generation = filter.metadata.generation ?? 0;
    const wait = this.waiting.get(key);
    if (wait && wait.uid === (filter.metadata.uid ?? '') && wait.generation === generation && Date.now() < wait.retryAt - 5) {
      return { requeue: false, result: 'waiting' };
    }
    this.waiting.delete(key);

    const status = filter.status;
    const validated = conditionOf(status, 'Validated');
    const pinned = filter.spec.sha256 ? `sha256:${filter.spec.sha256}` : undefined;
    // Nothing changed since the last validation: same generation, validated, and (when the spec
    // pins the digest) the same module. Unpinned sources are resolved below and compared.
    // After a restart the module's bytes are fetched once more (not validated again): nodes need them.
    const inForce = status?.observedGeneration === generation && validated?.status === 'True' && validated.observedGeneration === generation && status.digest !== undefined && this.validated.has(digestHex(status.digest));
    const skip = inForce && ((pinned !== undefined && status!.digest === pinned) || opts.nodesOnly === true);

    const outcome: Outcome = skip
      ? { kind: 'validated', digest: status!.digest!, durationMs: 0 }
      : await this.evaluate(filter, status?.observedGeneration === generation && validated?.status === 'True' ? status.digest : undefined);
    const now = new Date();
    const nodes = this.deps.nodes?.(key);
    // A refused or invalid generation leaves the rollout as it is: the stable version stays in force.
    let rollout = status?.rollout;
    let recheckMs: number | undefined;
    if (outcome.kind === 'validated' && this.deps.candidates) {
      const spec = filter.spec;
      const target: FilterVersionRef = {
        version: filterVersion(outcome.digest, spec),
        digest: outcome.digest,
        source: Object.fromEntries(Object.entries({ url: spec.url, sha256: spec.sha256, configMap: spec.configMap, imagePullSecret: spec.imagePullSecret }).filter(([, v]) => v !== undefined)),
        config: versionedSpec(spec),
      };
      const candidates = this.deps.candidates(filter);
      if (candidates === undefined || this.deps.nodesSynced?.() === false) {
        // Discovery has not listed the Pods, or the node reports are not listed yet: no canary is
        // chosen, and nothing promoted or rolled back, from a partial view.
        recheckMs = 1000;
      } else {
        const d = nextRollout({ target, current: status?.rollout, spec: spec.rollout, uid: filter.metadata.uid ?? '', candidates, nodes, now }, this.deps.rollout ?? ROLLOUT_DEFAULTS);
        rollout = d.rollout;
        recheckMs = d.recheckMs;
      }
      await this.loadRolloutModules(filter, rollout);
    }
    const desired = desiredStatus(filter, outcome, this.scope(filter), now, { nodes, rollout });
    const same = sameStatus(status, desired);
    if (!same) await this.writeStatus(filter, desired);
    if (outcome.kind === 'invalid') return { requeue: false, result: 'invalid' };
    if (outcome.kind === 'refused') return { requeue: true, result: 'refused' };
    return { requeue: false, result: same || skip ? 'unchanged' : 'validated', ...(recheckMs !== undefined ? { recheckMs } : {}) };
  }

  /**
   * The bytes of the rollout's stable and canary modules, when this replica lacks them (after a
   * restart): fetched from the source they came from and kept only if they have that digest. A
   * source that no longer serves them leaves nodes that need them on what they run.
   */
  private async loadRolloutModules(filter: WasmFilter, rollout: RolloutStatus | undefined): Promise<void> {
    for (const ref of [rollout?.stable, rollout?.canary]) {
      if (!ref || this.validated.has(digestHex(ref.digest))) continue;
      // A source that did not have them is asked again only after a while (reconciles are frequent).
      const missKey = `${filter.metadata.uid}/${ref.digest}`;
      if ((this.rolloutMisses.get(missKey) ?? 0) > Date.now()) continue;
      this.pinned.add(digestHex(ref.digest));
      try {
        const mod = await this.resolve(filter.metadata.namespace, ref.source as WasmFilter['spec']);
        if (mod.digest === ref.digest) this.keepModule(mod.digest, mod.bytes);
        else this.rolloutMisses.set(missKey, Date.now() + ROLLOUT_MISS_RETRY_MS);
        if (mod.digest !== ref.digest) this.deps.log.warn('the module of a rollout version is no longer at its source; nodes that need it keep what they run', { filter: `${filter.metadata.namespace}/${filter.metadata.name}`, version: ref.version, digest: ref.digest, found: mod.digest });
      } catch (error) {
        this.rolloutMisses.set(missKey, Date.now() + ROLLOUT_MISS_RETRY_MS);
        this.deps.log.warn('cannot fetch the module of a rollout version; nodes that need it keep what they run', { filter: `${filter.metadata.namespace}/${filter.metadata.name}`, version: ref.version, error: (error as Error).message.split('\n')[0] });
      } finally {
        this.pinned.delete(digestHex(ref.digest));
      }
    }
  }

  private scope(filter: WasmFilter): string {
    const ns = filter.metadata.namespace;
    return ns === this.deps.rootNamespace ? `every namespace (${ns} is the root namespace)` : `pods in namespace ${ns}`;
  }

  /** Checks the spec, resolves the module and validates it (skipped when `knownGood` is its digest). */
  private async evaluate(filter: WasmFilter, knownGood: string | undefined): Promise<Outcome> {
    const spec = filter.spec;
    const problem = specProblem(filter);
    if (problem) return { kind: 'invalid', message: problem };
    const { namespace, name } = filter.metadata;
    try {
      const mod = await this.resolve(namespace, spec);
      if (mod.digest === knownGood) {
        this.keepModule(mod.digest, mod.bytes);
        return { kind: 'validated', digest: mod.digest, durationMs: 0 };
      }
      const v = await validateModule(mod.bytes, `${namespace}/${name}`, spec);
      this.keepModule(mod.digest, mod.bytes);
      this.deps.metrics.validationDuration.observe(v.durationMs / 1000);
      this.deps.log.debug('module validated', { filter: `${namespace}/${name}`, digest: mod.digest, ms: Math.round(v.durationMs) });
      return { kind: 'validated', digest: mod.digest, durationMs: v.durationMs };
    } catch (error) {
      if (error instanceof ControllerError) {
        if (error.code === 'SLUICE_ERR_FILTER_INVALID') return { kind: 'invalid', message: error.message };
        return { kind: 'refused', code: error.code, message: error.message };
      }
      throw error;
    }
  }

  /**
   * Resolves the module. A url source pinned by sha256 that was fetched before from the same url
   * with the same pull secret is not fetched again. The source is part of the key on purpose:
   * having the bytes of a digest must not let another filter skip the registry's access check.
   */
  private async resolve(namespace: string, spec: WasmFilter['spec']): Promise<{ bytes: Uint8Array; digest: string }> {
    const pinned = spec.url && spec.sha256 && spec.imagePullPolicy !== 'Always';
    const key = pinned ? JSON.stringify([spec.url, spec.imagePullSecret ? `${namespace}/${spec.imagePullSecret}` : '', spec.sha256]) : undefined;
    const cached = key && this.modules.get(key);
    if (cached) return { bytes: cached, digest: `sha256:${spec.sha256}` };
    const mod = await resolveModule(this.deps.core, namespace, spec, this.deps.fetchOptions);
    if (key) this.modules.set(key, mod.bytes);
    return mod;
  }

  private async writeStatus(filter: WasmFilter, status: WasmFilter['status'] & object): Promise<void> {
    if (!this.deps.isLeader()) throw new NotLeaderError();
    const { namespace, name } = filter.metadata;
    // The status subresource takes only status from the body (the rest comes from the stored
    // object); the resourceVersion makes a write from a stale copy fail with 409.
    const body = { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace, resourceVersion: filter.metadata.resourceVersion }, status };
    await this.deps.custom.replaceNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body });
    this.deps.metrics.statusWrites.inc();
    this.transitionEvents(filter, status);
  }

  private rolloutEvents(filter: WasmFilter, next: NonNullable<WasmFilter['status']>): void {
    const e = rolloutEvent(filter.status?.rollout, next.rollout);
    if (!e) return;
    const { namespace, name, uid, resourceVersion } = filter.metadata;
    void this.deps.events.emit({ apiVersion: API_VERSION, kind: KIND, namespace, name, uid, resourceVersion }, e.type, e.reason, 'Rollout', e.note);
    this.deps.log.info('rollout', { filter: `${namespace}/${name}`, reason: e.reason, note: e.note });
  }

  /** Events are best effort and do not hold up the reconcile (client-go's recorder is asynchronous too). */
  private transitionEvents(filter: WasmFilter, next: NonNullable<WasmFilter['status']>): void {
    this.rolloutEvents(filter, next);
    const before = conditionOf(filter.status, 'Validated');
    const after = conditionOf(next, 'Validated')!;
    const accepted = conditionOf(next, 'Accepted')!;
    // A transition is a change of status or reason; a message that differs between retries (the
    // time a runaway call ran, say) updates the condition but is not news worth an Event.
    if (before?.status === after.status && before.reason === after.reason && before.observedGeneration === after.observedGeneration) return;
    const { namespace, name, uid, resourceVersion } = filter.metadata;
    const regarding = { apiVersion: API_VERSION, kind: KIND, namespace, name, uid, resourceVersion };
    if (accepted.status === 'False') {
      void this.deps.events.emit(regarding, 'Warning', 'InvalidSpec', 'Accept', accepted.message);
    } else if (after.status === 'True') {
      void this.deps.events.emit(regarding, 'Normal', 'Validated', 'Validate', `module ${next.digest} validated for generation ${next.observedGeneration}`);
    } else {
      void this.deps.events.emit(regarding, 'Warning', after.reason, 'Validate', after.message);
    }
  }
}

/** Events of rollout transitions: a canary started, promoted, rolled back. */
function rolloutEvent(before: RolloutStatus | undefined, after: RolloutStatus | undefined): { type: 'Normal' | 'Warning'; reason: string; note: string } | undefined {
  if (!after || (before?.phase === after.phase && before.canary?.version === after.canary?.version && before.stable?.version === after.stable?.version)) return undefined;
  if (after.phase === 'Canary') return { type: 'Normal', reason: 'RolloutStarted', note: `version ${after.canary!.version} goes to ${after.canaryNodes?.length ?? 0} canary node(s) first: ${(after.canaryNodes ?? []).join(', ') || 'none'}` };
  if (after.phase === 'RolledBack') return { type: 'Warning', reason: after.reason ?? 'RolledBack', note: `version ${after.failedVersion} rolled back to ${after.stable?.version}: ${after.message ?? ''}` };
  if (before?.phase === 'Canary' && before.canary?.version === after.stable?.version) return { type: 'Normal', reason: 'RolloutPromoted', note: `version ${after.stable!.version} goes to every node` };
  return undefined;
}

/** How long a rollout module its source did not have is not asked for again. */
const ROLLOUT_MISS_RETRY_MS = 60_000;

/** Thrown instead of writing when this replica no longer holds the Lease. */
export class NotLeaderError extends Error {
  constructor() {
    super('not the leader any more; the status is left to the new leader');
    this.name = 'NotLeaderError';
  }
}

/** What the schema cannot check (a structural schema has no "boolean or list"). */
export function specProblem(filter: WasmFilter): string | undefined {
  const httpCalls = filter.spec.capabilities?.httpCalls as unknown;
  if (httpCalls !== undefined && typeof httpCalls !== 'boolean' && !(Array.isArray(httpCalls) && httpCalls.every((c) => typeof c === 'string' && c !== ''))) {
    return `spec.capabilities.httpCalls must be true, false or a list of cluster names, got ${JSON.stringify(httpCalls)}`;
  }
  return undefined;
}


/** Module bytes by key with a ceiling on their total size; the least recently used go first. */
class ModuleMemory {
  private readonly entries = new Map<string, Uint8Array>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(digest: string): Uint8Array | undefined {
    const b = this.entries.get(digest);
    if (b) {
      this.entries.delete(digest);
      this.entries.set(digest, b);
    }
    return b;
  }

  set(digest: string, b: Uint8Array): void {
    if (this.entries.has(digest) || b.length > this.maxBytes) return;
    this.entries.set(digest, b);
    this.bytes += b.length;
    for (const [d, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(d);
      this.bytes -= old.length;
    }
  }
}
