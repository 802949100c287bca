// The node agent (`sluice run --controller`): one gRPC stream to the controller, modules into the
// content-addressed cache, each snapshot parsed with the runtime's own loader and applied to the
// NodeProxy, answered ACK or NACK; the last good config kept on disk so a restarted agent serves
// it while the controller is away. Reconnects with exponential backoff and full jitter. TLS to the
// controller, verified with the trust bundle file; the workloads' identities ride the same stream.

import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentials, Metadata, type ChannelCredentials, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { parseConfig } from '../config/index.ts';
import { SluiceError } from '../errors.ts';
import { log as defaultLog, type LogLevelName } from '../log.ts';
import { NodeProxy } from '../proxy/node-proxy.ts';
import { IdentityStore, WorkloadIdentities } from '../identity/index.ts';
import type { Snapshot } from '../config/index.ts';
import { atomicWrite, ModuleCache } from './module-cache.ts';
import { distributionProtocol, MAX_MESSAGE_BYTES, type AgentMessage, type ControllerMessage, type SnapshotMessage } from './protocol.ts';

export interface NodeAgentOptions {
  /** host:port of the controller's distribution service. */
  controller: string;
  /** The controller's trust bundle (PEM file, read at every connection); its certificate must chain to it and name the host of `controller`. */
  controllerCa?: string;
  /** Connect without TLS (tests not about TLS, benches); logged as a warning. */
  controllerPlaintext?: boolean;
  /** The projected ServiceAccount token (audience `sluice`); read again at every connection (kubelet rotates it). */
  tokenFile: string;
  nodeName: string;
  /** Holds modules/ (the cache) and last-good.json. */
  stateDir: string;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log?: (level: LogLevelName, msg: string, fields?: Record<string, unknown>) => void;
  /** Called once the proxy serves (from disk or from the first good snapshot). */
  onServing?: (proxy: NodeProxy) => void;
  /** Workload certificates: first retry after a refusal (doubles up to a minute). */
  identityRetryMs?: number;
  /**
   * host:port of the admin endpoint, overriding the snapshot's. Node-local, as Envoy's bootstrap
   * admin is: the controller's config leaves it to the default 127.0.0.1:15000.
   */
  adminAddress?: string;
  /** How often the filters' failure counters are checked and, when they changed, sent to the controller (default 2 s). */
  healthIntervalMs?: number;
}

interface LastGood {
  version: string;
  config: string;
}

export const AGENT_DEFAULTS = {
  tokenFile: '/var/run/secrets/tokens/sluice-token',
  /** Where the DaemonSet mounts ConfigMap sluice-ca-root. */
  controllerCa: '/var/run/sluice/ca/root-cert.pem',
  stateDir: '/var/lib/sluice',
  minBackoffMs: 500,
  maxBackoffMs: 30_000,
  healthIntervalMs: 2_000,
};

export class NodeAgent {
  proxy?: NodeProxy;
  /** The version served (last ACKed), or '' before any. */
  version = '';
  /** Streams opened so far (tests and logs). */
  connections = 0;
  /** The node's workload identities (keys and certificates in force, trust bundle) for mTLS. */
  readonly identities = new IdentityStore();
  private readonly workloadIdentities: WorkloadIdentities;
  /** The current stream was accepted (its trust bundle came): CSRs may go on it. */
  private accepted = false;
  private clientCa?: string;
  private readonly cache: ModuleCache;
  private readonly log: NonNullable<NodeAgentOptions['log']>;
  private client?: InstanceType<ReturnType<typeof distributionProtocol>['client']>;
  private stream?: ClientDuplexStream<AgentMessage, ControllerMessage>;
  private stopped = false;
  private failures = 0;
  private retryTimer?: NodeJS.Timeout;
  private healthTimer?: NodeJS.Timeout;
  /** The health last sent on the current stream ('' after a reconnect: sent again). */
  private healthSent = '';
  /** Snapshots are applied one at a time, in the order they came. */
  private applying: Promise<void> = Promise.resolve();

  constructor(private readonly options: NodeAgentOptions) {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(options.nodeName)) {
      throw new SluiceError('SLUICE_ERR_AGENT', `node name "${options.nodeName}" is not a Kubernetes node name; pass --node-name or set NODE_NAME (the downward API's spec.nodeName)`);
    }
    this.cache = new ModuleCache(join(options.stateDir, 'modules'));
    this.log = options.log ?? defaultLog;
    this.workloadIdentities = new WorkloadIdentities({
      store: this.identities,
      send: (csr) => {
        if (!this.stream || !this.accepted) return false;
        this.stream.write({ csr });
        return true;
      },
      log: (level, msg, fields) => this.log(level, msg, fields),
      minRetryMs: options.identityRetryMs,
    });
  }

  private get lastGoodFile(): string {
    return join(this.options.stateDir, 'last-good.json');
  }

  /** Serves the last good config from disk, if any, then connects (and keeps reconnecting). */
  async start(): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true });
    const saved = await readFile(this.lastGoodFile, 'utf8').then((t) => JSON.parse(t) as LastGood, () => undefined);
    if (saved) {
      try {
        await this.serve(saved);
        this.log('info', `serving the last good config from disk (version ${saved.version}) until the controller answers`);
      } catch (error) {
        this.log('error', 'the last good config on disk cannot be served; waiting for the controller', { error: (error as Error).message });
      }
    }
    if (this.options.controllerPlaintext) {
      this.log('warn', 'connecting to the controller WITHOUT TLS (--controller-plaintext): the token, configs and certificates cross the network in the clear; for tests and benches only', { controller: this.options.controller });
    }
    this.connect();
    this.healthTimer = setInterval(() => this.sendHealth(), this.options.healthIntervalMs ?? AGENT_DEFAULTS.healthIntervalMs);
    this.healthTimer.unref();
  }

  /** The filters' failure counters, sent when they differ from what the controller last got on this stream. */
  private sendHealth(): void {
    if (!this.stream || !this.accepted || !this.proxy || !this.version) return;
    const filters = this.proxy.filterStatus().map((f) => ({ name: String(f.name), failures: Number(f.failures ?? 0) }));
    const text = JSON.stringify([this.version, filters]);
    if (text === this.healthSent || filters.every((f) => f.failures === 0)) return;
    this.healthSent = text;
    this.stream.write({ health: { version: this.version, filters } });
  }

  /** A client for the current trust bundle file: made again when the file changes (the ConfigMap was updated). */
  private ensureClient(): boolean {
    let creds: ChannelCredentials;
    let ca = '';
    if (this.options.controllerPlaintext) {
      creds = credentials.createInsecure();
    } else {
      const file = this.options.controllerCa ?? AGENT_DEFAULTS.controllerCa;
      try {
        ca = readFileSync(file, 'utf8');
      } catch (error) {
        this.log('error', `cannot read the controller's trust bundle ${file}; mount ConfigMap sluice-ca-root there (--controller-ca), or pass --controller-plaintext to a controller run with --grpc-plaintext`, { error: (error as Error).message });
        return false;
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
        this.log('error', `the controller's trust bundle ${file} holds no PEM certificate; it should be root-cert.pem of ConfigMap sluice-ca-root`);
        return false;
      }
      if (this.client && ca === this.clientCa) return true;
      creds = credentials.createSsl(Buffer.from(ca));
    }
    if (this.client && this.options.controllerPlaintext) return true;
    this.client?.close();
    const { client } = distributionProtocol();
    this.client = new client(this.options.controller, creds, {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': 30_000,
    });
    this.clientCa = ca;
    return true;
  }

  private connect(): void {
    if (this.stopped) return;
    if (!this.ensureClient()) return this.retry();
    let token: string;
    try {
      token = readFileSync(this.options.tokenFile, 'utf8').trim();
    } catch (error) {
      this.log('error', `cannot read the token file ${this.options.tokenFile}; mount a projected ServiceAccount token with audience "sluice" there (--token-file)`, { error: (error as Error).message });
      return this.retry();
    }
    this.connections++;
    const stream = this.client!.Stream(new Metadata()) as ClientDuplexStream<AgentMessage, ControllerMessage>;
    this.stream = stream;
    this.accepted = false;
    this.healthSent = '';
    let got = false;
    stream.on('data', (m: ControllerMessage) => {
      got = true;
      this.failures = 0;
      if (m.module) {
        const { sha256, bytes } = m.module;
        this.applying = this.applying.then(() => this.cache.put(sha256, bytes)).catch((error) => this.log('error', (error as Error).message));
      } else if (m.snapshot) {
        const snap = m.snapshot;
        this.applying = this.applying.then(() => this.onSnapshot(stream, snap));
      } else if (m.trustBundle) {
        // Sent once the controller accepted the stream: CSRs are answered from now on.
        this.workloadIdentities.onTrustBundle(m.trustBundle.roots);
        if (this.stream === stream) {
          this.accepted = true;
          this.workloadIdentities.ready();
        }
      } else if (m.certificate) {
        this.workloadIdentities.onResponse(m.certificate);
      }
    });
    stream.on('error', (error: ServiceError) => {
      if (this.stopped && error.code === GrpcStatus.CANCELLED) return;
      const level = error.code === GrpcStatus.UNAUTHENTICATED || error.code === GrpcStatus.PERMISSION_DENIED ? 'error' : 'warn';
      const details = error.details || error.message;
      // A certificate the trust bundle does not verify shows up as an unavailable channel: say what to check.
      const hint = /certificate|self.signed|altnames|SSL|TLS/i.test(details) && !this.options.controllerPlaintext
        ? `; the controller's certificate does not verify with --controller-ca ${this.options.controllerCa ?? AGENT_DEFAULTS.controllerCa} (it must be ConfigMap sluice-ca-root of the controller's namespace, and --controller must be a name the certificate holds: sluice-controller.<namespace>.svc or one of --grpc-tls-dns)`
        : '';
      this.log(hint ? 'error' : level, `controller stream ended: ${details}${hint}`, { controller: this.options.controller, code: GrpcStatus[error.code] ?? error.code, serving: this.version || undefined });
    });
    // 'status' comes once at the end of every call, however it ended ('close' need not).
    let over = false;
    const ended = () => {
      if (over) return;
      over = true;
      if (this.stream === stream) {
        this.stream = undefined;
        this.accepted = false;
      }
      if (!got) this.failures++;
      this.retry();
    };
    stream.on('status', ended);
    stream.on('close', ended);
    stream.write({ hello: { nodeName: this.options.nodeName, token, haveModules: this.cache.digests(), lastVersion: this.version } });
  }

  private retry(): void {
    if (this.stopped || this.retryTimer) return;
    const min = this.options.minBackoffMs ?? AGENT_DEFAULTS.minBackoffMs;
    const max = this.options.maxBackoffMs ?? AGENT_DEFAULTS.maxBackoffMs;
    // Full jitter: agents cut off together do not come back together.
    const delay = Math.round(Math.random() * Math.min(max, min * 2 ** Math.min(this.failures, 20))) + 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }

  private async onSnapshot(stream: ClientDuplexStream<AgentMessage, ControllerMessage>, snap: SnapshotMessage): Promise<void> {
    try {
      await this.serve({ version: snap.version, config: snap.config });
      await atomicWrite(this.lastGoodFile, JSON.stringify({ version: snap.version, config: snap.config }));
      this.log('info', `applied version ${snap.version} from the controller`);
      stream.write({ ack: { version: snap.version, nonce: snap.nonce } });
    } catch (error) {
      const reason = (error as Error).message;
      this.log('error', `version ${snap.version} from the controller refused; still serving ${this.version || 'nothing'}`, { code: (error as { code?: string }).code, error: reason });
      stream.write({ nack: { version: snap.version, nonce: snap.nonce, reason } });
    }
  }

  private async serve(good: LastGood): Promise<void> {
    const text = this.options.adminAddress === undefined ? good.config : withAdminAddress(good.config, this.options.adminAddress);
    const snapshot = parseConfig(text, `controller snapshot ${good.version}`, this.cache.dir);
    if (this.proxy) {
      await this.proxy.apply(snapshot);
    } else {
      this.proxy = await NodeProxy.start(snapshot);
      for (const [name, a] of Object.entries(this.proxy.addresses())) this.log('info', `${name} listening on ${a.address}:${a.port}`);
      this.options.onServing?.(this.proxy);
    }
    this.version = good.version;
    this.workloadIdentities.setWanted(workloadIds(snapshot));
  }

  async stop(drainMs = 0): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.healthTimer);
    this.workloadIdentities.stop();
    this.stream?.cancel();
    this.client?.close();
    await this.applying;
    await this.proxy?.stop(drainMs);
  }
}

/** One identity per ServiceAccount of the node's workloads (pods of one ServiceAccount share it). */
function workloadIds(snapshot: Snapshot): Set<string> {
  return new Set((snapshot.workloads ?? []).map((w) => w.identity));
}

/** The config text with admin.address set; text that is not a JSON object is left for the loader to refuse. */
function withAdminAddress(text: string, address: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return text;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return text;
  const d = doc as { admin?: unknown };
  const admin = typeof d.admin === 'object' && d.admin !== null && !Array.isArray(d.admin) ? d.admin : {};
  return JSON.stringify({ ...d, admin: { ...admin, address } });
}
