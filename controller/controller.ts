// The controller process: a WasmFilter informer feeding a work queue, workers running
// reconcile(key) while this replica leads, leader election on a Lease, and the health, readiness
// and metrics endpoints. Every replica keeps its cache warm; only the leader writes.

import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { experimental, ServerCredentials } from '@grpc/grpc-js';
import { AuthenticationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, EventsV1Api, KubeConfig } from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION, type WasmFilter } from './crd/index.ts';
import { ControllerError } from './errors.ts';
import { EventRecorder } from './kube/events.ts';
import { Informer } from './kube/informer.ts';
import { LeaderElector } from './kube/leader-election.ts';
import { WorkQueue } from './kube/work-queue.ts';
import { jsonLogger, type Logger } from './log.ts';
import { ControllerMetrics } from './metrics.ts';
import { NotLeaderError, Reconciler } from './reconcile/reconciler.ts';
import { parseListen, startHttpServer, type HttpServer } from './http-server.ts';
import { DiscoveryNodeConfigSource } from './discovery/source.ts';
import { LIST_PAGE, listAll } from './kube/list.ts';
import { PooledKubeConfig } from './kube/pooled-kube-config.ts';
import { authenticateAgent, DistributionServer, type NodeConfigSource } from './distribution/index.ts';
import { WorkloadCa } from './ca/index.ts';
import { ReportPublisher } from './nodes/report-publisher.ts';
import { ReportAggregator } from './nodes/report-aggregator.ts';
import { ROLLOUT_DEFAULTS } from './rollout/rollout.ts';

export interface ControllerOptions {
  /** A kubeconfig file; absent: in-cluster config when running in a pod, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig?: string;
  /** Or a ready KubeConfig (tests). */
  kubeConfig?: KubeConfig;
  /** The root namespace: WasmFilters here apply to every namespace; the Lease lives here. */
  namespace?: string;
  /** host:port of /healthz, /readyz, /metrics; port 0 picks a free one. */
  listen?: string;
  leaseName?: string;
  leaseDurationMs?: number;
  identity?: string;
  workers?: number;
  /** Module cache directory for the sources. */
  cacheDir?: string;
  /** Let sources use plain-HTTP registries (tests, loopback). */
  allowInsecure?: boolean;
  /** Retry backoff of refused filters. */
  baseRetryMs?: number;
  maxRetryMs?: number;
  /** Objects per page when listing (default 500). */
  listPageSize?: number;
  /** First retry delay of a failed list/watch (it doubles up to 30 s). */
  minWatchBackoffMs?: number;
  /** Every key is reconciled again this often (picks up changes no watch reports, e.g. a ConfigMap's). */
  resyncMs?: number;
  /** host:port of the distribution service the node agents connect to (gRPC); port 0 picks a free one. */
  grpcListen?: string;
  /** `namespace/name` of the node agents' ServiceAccount: only its pod-bound tokens may connect. */
  agentServiceAccount?: string;
  /** What each node gets; default: discovery from Pods, Services, EndpointSlices and WasmFilters. */
  nodeConfigSource?: NodeConfigSource;
  /** The SPIFFE trust domain of workload identities (default cluster.local). */
  trustDomain?: string;
  /** `namespace/name` of a Secret with an intermediate CA (tls.crt, tls.key, ca.crt: the chain to the root); absent: the controller's own root in Secret sluice-ca. */
  caSecret?: string;
  /** Lifetime of workload certificates (default 24 h); agents renew at half life. */
  svidLifetimeMs?: number;
  /** Serve the node agents without TLS (tests not about TLS, benches); logged as a warning. */
  grpcPlaintext?: boolean;
  /** Extra DNS names in the distribution port's serving certificate (besides sluice-controller.<namespace>.svc[.cluster.local]). */
  grpcTlsDns?: string[];
  /** IP addresses in the serving certificate (tests: 127.0.0.1). */
  grpcTlsIps?: string[];
  /** Lifetime of the serving certificate (default 24 h); renewed at half life. */
  servingCertLifetimeMs?: number;
  /** How long a new version runs on its canary nodes before it goes to every node (default 60 s). */
  rolloutSoakMs?: number;
  /** Failures of a canary version counted on one canary node that roll it back (default 10). */
  rolloutFailureThreshold?: number;
  /** A replica writes its node report at most this often (default 1 s). */
  reportIntervalMs?: number;
  /** ...and at least this often; the leader ignores reports older than three of these (default 10 s). */
  reportHeartbeatMs?: number;
  log?: Logger;
}

export const DEFAULTS = {
  namespace: 'sluice-system',
  listen: ':15014',
  leaseName: 'sluice-controller',
  leaseDurationMs: 15_000,
  workers: 4,
  resyncMs: 10 * 60_000,
  grpcListen: ':15012',
  agentServiceAccount: 'sluice-system/sluice-node',
  trustDomain: 'cluster.local',
  /** The Service in front of the controller (the serving certificate's DNS names). */
  serviceName: 'sluice-controller',
};

export function loadKubeConfig(file?: string): KubeConfig {
  // Connections to the API server are kept alive and shared by every call (pooled-kube-config.ts).
  const kc = new PooledKubeConfig();
  try {
    if (file) kc.loadFromFile(file);
    else if (process.env.KUBERNETES_SERVICE_HOST && !process.env.KUBECONFIG) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (error) {
    throw new ControllerError('SLUICE_ERR_KUBECONFIG', `cannot load the Kubernetes client configuration${file ? ` from ${file}` : ''}: ${(error as Error).message}`, { cause: error });
  }
  if (!kc.getCurrentCluster()) {
    throw new ControllerError('SLUICE_ERR_KUBECONFIG', `no current cluster in the Kubernetes client configuration${file ? ` ${file}` : ''}; pass --kubeconfig, set KUBECONFIG, or run in a pod`);
  }
  return kc;
}


/** What the cache keeps of a WasmFilter: no managedFields, no kubectl last-applied copy of the spec. */
function slim(f: WasmFilter): WasmFilter {
  const m = f.metadata as WasmFilter['metadata'] & { managedFields?: unknown; annotations?: Record<string, string> };
  delete m.managedFields;
  if (m.annotations) {
    delete m.annotations['kubectl.kubernetes.io/last-applied-configuration'];
    if (Object.keys(m.annotations).length === 0) delete m.annotations;
  }
  return f;
}

export class Controller {
  readonly informer: Informer<WasmFilter>;
  readonly queue: WorkQueue;
  readonly metrics: ControllerMetrics;
  readonly elector: LeaderElector;
  readonly identity: string;
  readonly log: Logger;
  /** Serves the node agents on every replica, leader or not. */
  readonly distribution: DistributionServer;
  /** Computes each node's config (absent when a nodeConfigSource was given). */
  readonly discovery?: DiscoveryNodeConfigSource;
  /** The workload CA: signs node agents' CSRs and the distribution port's certificate. */
  readonly ca: WorkloadCa;
  private grpcPort?: number;
  private readonly reconciler: Reconciler;
  /** Publishes what this replica's node agents said (every replica). */
  readonly reports: ReportPublisher;
  /** Every replica's node reports (read by the leader for status). */
  readonly nodeReports: ReportAggregator;
  /** Keys queued for a full reconcile (a spec change, a resync, a retry), not only for node news. */
  private readonly fullPending = new Set<string>();
  private http?: HttpServer;
  private running = false;
  private workers: Promise<void>[] = [];
  private resyncTimer?: NodeJS.Timeout;
  /** The CA still loading in the background (it failed at start). */
  private caLoading?: Promise<void>;

  constructor(private readonly options: ControllerOptions = {}) {
    const kc = options.kubeConfig ?? loadKubeConfig(options.kubeconfig);
    this.identity = options.identity ?? `${process.env.POD_NAME ?? hostname()}_${randomBytes(4).toString('hex')}`;
    this.log = options.log ?? jsonLogger({ fields: { component: 'controller' } });
    const namespace = options.namespace ?? DEFAULTS.namespace;
    const custom = kc.makeApiClient(CustomObjectsApi);
    const core = kc.makeApiClient(CoreV1Api);
    this.queue = new WorkQueue({ baseDelayMs: options.baseRetryMs ?? 1000, maxDelayMs: options.maxRetryMs ?? 300_000 });
    this.informer = new Informer<WasmFilter>({
      kubeConfig: kc,
      path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      list: () => listAll((cont) => custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, limit: options.listPageSize ?? LIST_PAGE, _continue: cont })),
      onChange: (key) => this.enqueue(key),
      log: this.log,
      minBackoffMs: options.minWatchBackoffMs,
      transform: slim,
      notFoundHint: 'the WasmFilter CRD is not installed: kubectl apply -f deploy/crds/wasmfilter.yaml',
      onRestart: (cause) => this.metrics.watchRestarts.inc({ resource: PLURAL, cause }),
    });
    this.metrics = new ControllerMetrics({
      queueDepth: () => this.queue.depth,
      inFlight: () => this.queue.inFlight,
      filters: () => this.informer.size,
      leader: () => this.elector.isLeader,
    });
    const events = new EventRecorder(kc.makeApiClient(EventsV1Api), this.identity, this.log, (reason) => this.metrics.events.inc({ reason }));
    this.elector = new LeaderElector({
      api: kc.makeApiClient(CoordinationV1Api),
      namespace,
      name: options.leaseName ?? DEFAULTS.leaseName,
      identity: this.identity,
      leaseDurationMs: options.leaseDurationMs ?? DEFAULTS.leaseDurationMs,
      log: this.log,
      // A new leader looks at every filter: the old one may have stopped in the middle.
      onStartedLeading: () => this.enqueueAll(),
      onStoppedLeading: () => {},
    });
    this.reconciler = new Reconciler({
      informer: this.informer,
      custom,
      core,
      events,
      metrics: this.metrics,
      log: this.log,
      fetchOptions: { cacheDir: options.cacheDir, allowInsecure: options.allowInsecure },
      rootNamespace: namespace,
      isLeader: () => this.elector.isLeader,
      nodes: (key) => this.nodeReports.filter(key),
      nodesSynced: () => this.nodeReports.synced,
      candidates: options.nodeConfigSource ? undefined : (f) => this.discovery?.nodesSelecting(f),
      rollout: { soakMs: options.rolloutSoakMs ?? ROLLOUT_DEFAULTS.soakMs, failureThreshold: options.rolloutFailureThreshold ?? ROLLOUT_DEFAULTS.failureThreshold },
    });
    const heartbeatMs = options.reportHeartbeatMs ?? 10_000;
    this.reports = new ReportPublisher({
      core,
      namespace,
      identity: this.identity,
      records: () => this.distribution.nodes(),
      log: this.log.with({ component: 'node-reports' }),
      intervalMs: options.reportIntervalMs,
      heartbeatMs,
    });
    this.nodeReports = new ReportAggregator({
      kubeConfig: kc,
      namespace,
      log: this.log.with({ component: 'node-reports' }),
      staleMs: 3 * heartbeatMs,
      minBackoffMs: options.minWatchBackoffMs,
      // Node news changes only Ready, Degraded and nodes: the leader looks at every filter again.
      onChange: () => {
        if (!this.elector.isLeader) return;
        for (const key of this.informer.keys()) this.queue.add(key);
      },
    });
    const authOptions = { auth: kc.makeApiClient(AuthenticationV1Api), core, serviceAccount: options.agentServiceAccount ?? DEFAULTS.agentServiceAccount };
    if (!options.nodeConfigSource) {
      this.discovery = new DiscoveryNodeConfigSource({
        kubeConfig: kc,
        log: this.log.with({ component: 'discovery' }),
        rootNamespace: namespace,
        trustDomain: options.trustDomain,
        modules: { get: (digest) => this.reconciler.moduleByDigest(digest), onModule: (l) => this.reconciler.onModule(l) },
        listPageSize: options.listPageSize,
      });
    }
    this.ca = new WorkloadCa({
      core,
      namespace,
      caSecret: options.caSecret,
      trustDomain: options.trustDomain ?? DEFAULTS.trustDomain,
      svidLifetimeMs: options.svidLifetimeMs,
      serving: options.grpcPlaintext
        ? undefined
        : {
            dnsNames: [`${DEFAULTS.serviceName}.${namespace}.svc`, `${DEFAULTS.serviceName}.${namespace}.svc.cluster.local`, ...(options.grpcTlsDns ?? [])],
            ips: options.grpcTlsIps ?? [],
            lifetimeMs: options.servingCertLifetimeMs,
          },
      log: this.log.with({ component: 'ca' }),
      counter: this.metrics.csrs,
      minRetryMs: options.minWatchBackoffMs,
    });
    this.distribution = new DistributionServer({
      source: options.nodeConfigSource ?? this.discovery!,
      authenticate: (token, node) => authenticateAgent(authOptions, token, node),
      log: this.log.with({ component: 'distribution' }),
      certificates: {
        trustBundle: () => this.ca.workloads.trustBundle(),
        sign: (node, csr) => this.ca.workloads.sign(node, csr),
      },
      onRecordChange: () => this.reports.changed(),
    });
  }

  /** The port the distribution service listens on (after start). */
  get distributionPort(): number | undefined {
    return this.grpcPort;
  }

  /** The bytes of a validated module by sha256 hex (for discovery: what nodes are sent). */
  moduleByDigest(digest: string): Uint8Array | undefined {
    return this.reconciler.moduleByDigest(digest);
  }

  /** Calls `listener` with each module's sha256 hex as it becomes available; returns an unsubscribe. */
  onModule(listener: (digest: string) => void): () => void {
    return this.reconciler.onModule(listener);
  }

  get ready(): boolean {
    return this.informer.synced && this.ca.ca !== undefined;
  }

  /** The address /healthz, /readyz and /metrics listen on. */
  get address(): { host: string; port: number } | undefined {
    return this.http?.address;
  }

  async start(): Promise<void> {
    this.running = true;
    this.http = await startHttpServer(this.options.listen ?? DEFAULTS.listen, {
      healthy: () => true,
      ready: () => this.ready,
      metrics: () => this.metrics.render(),
    });
    this.log.info('serving /healthz, /readyz, /metrics', { address: `${this.http.address.host}:${this.http.address.port}` });
    // The distribution port serves with a certificate from the CA. Usually it loads at once and
    // start() returns serving; if not (API server away, RBAC, a bad --ca-secret), everything else
    // starts and the port opens once it loads (the replica is not ready until then).
    if (await this.ca.tryLoad()) {
      await this.serveAgents().catch(async (error: Error) => {
        this.ca.stop();
        await this.http?.close();
        throw error;
      });
    } else {
      this.caLoading = this.ca.start(true).then(
        async (loaded) => {
          if (loaded && this.running) await this.serveAgents();
        },
      ).catch((error: Error & { code?: string }) => this.log.error('cannot serve the node agents', { code: error.code, error: error.message }));
    }
    this.informer.start();
    this.nodeReports.start();
    this.reports.start();
    this.elector.start();
    void this.discovery?.start().catch((error: Error) => this.log.error('discovery failed to start', { error: error.message }));
    const n = this.options.workers ?? DEFAULTS.workers;
    for (let i = 0; i < n; i++) this.workers.push(this.work());
    const resync = this.options.resyncMs ?? DEFAULTS.resyncMs;
    if (resync > 0) {
      this.resyncTimer = setInterval(() => this.elector.isLeader && this.enqueueAll(), resync);
      this.resyncTimer.unref();
    }
    void this.informer.waitForSync().then(() => this.log.info('cache synced', { wasmfilters: this.informer.size }));
  }

  private async serveAgents(): Promise<void> {
    const grpc = parseListen(this.options.grpcListen ?? DEFAULTS.grpcListen);
    const tls = this.ca.serving ? experimental.createCertificateProviderServerCredentials(this.ca.serving, null, false) : ServerCredentials.createInsecure();
    this.grpcPort = await this.distribution.listen(`${grpc.host.includes(':') ? `[${grpc.host}]` : grpc.host}:${grpc.port}`, tls).catch((error: Error) => {
      throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `cannot serve the node agents on --grpc-listen ${this.options.grpcListen ?? DEFAULTS.grpcListen}: ${error.message}`, { cause: error });
    });
    if (this.ca.serving) {
      this.log.info('serving the node agents (gRPC, TLS)', { address: `${grpc.host}:${this.grpcPort}` });
    } else {
      this.log.warn('serving the node agents WITHOUT TLS (--grpc-plaintext): tokens, configs and certificates cross the network in the clear; for tests and benches only', { address: `${grpc.host}:${this.grpcPort}` });
    }
  }

  private enqueueAll(): void {
    for (const key of this.informer.keys()) this.enqueue(key);
  }

  /** Queues a full reconcile of `key`. */
  private enqueue(key: string): void {
    this.fullPending.add(key);
    this.queue.add(key);
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      // Followers keep their cache and write nothing (a new leader enqueues every key), but hold
      // the modules in force, since every replica serves nodes.
      if (!this.elector.isLeader) {
        try {
          await this.reconciler.loadModuleInForce(key);
        } catch (error) {
          this.log.warn('module in force could not be loaded', { filter: key, error: (error as Error).message.split('\n')[0] });
        }
        this.queue.done(key);
        continue;
      }
      const started = performance.now();
      const full = this.fullPending.delete(key);
      try {
        const r = await this.reconciler.reconcile(key, { nodesOnly: !full });
        this.metrics.reconciles.inc({ result: r.result });
        if (r.requeue) {
          this.fullPending.add(key);
          const delay = this.queue.addRateLimited(key);
          this.reconciler.retryScheduled(key, delay);
          const f = this.informer.get(key);
          this.log.info('filter refused; retrying later', { filter: key, generation: f?.metadata.generation, retryInMs: delay });
        } else {
          this.queue.forget(key);
          if (r.recheckMs !== undefined) this.queue.addAfter(key, r.recheckMs);
          if (r.result === 'validated' || r.result === 'invalid') this.log.info(`filter ${r.result}`, { filter: key, digest: this.informer.get(key)?.status?.digest });
        }
      } catch (error) {
        if (error instanceof NotLeaderError) {
          this.metrics.reconciles.inc({ result: 'not_leader' });
        } else {
          const e = error as Error & { code?: number | string };
          const reason = typeof e.code === 'number' ? (e.code === 409 ? 'conflict' : `http_${e.code}`) : (e.code ?? (e as { cause?: { code?: string } }).cause?.code ?? 'error');
          this.metrics.reconciles.inc({ result: 'error' });
          this.metrics.errors.inc({ reason: String(reason) });
          if (full) this.fullPending.add(key);
          const delay = this.queue.addRateLimited(key);
          // A conflict only means our copy was stale; the watch brings the new one.
          const level = reason === 'conflict' ? 'debug' : 'warn';
          this.log[level]('reconcile failed; retrying', { filter: key, reason, error: e.message.split('\n')[0], retryInMs: delay });
        }
      } finally {
        this.metrics.reconcileDuration.observe((performance.now() - started) / 1000);
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.resyncTimer);
    await this.reports.stop();
    this.nodeReports.stop();
    this.ca.stop();
    await this.caLoading;
    this.queue.shutDown();
    this.informer.stop();
    await Promise.all(this.workers);
    await this.elector.stop();
    this.discovery?.stop();
    await this.distribution.close();
    await this.http?.close();
  }
}
