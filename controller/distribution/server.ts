// The distribution service (gRPC, runtime/agent/sluice-distribution.proto), served by every
// controller replica: authenticates each agent's stream (agent-auth.ts), subscribes to its node's
// config, sends the modules the agent lacks and then the snapshot with a nonce, and records the
// node's answer (ACK, or NACK with the reason). Workload CSRs on the same stream go to the CA
// (controller/ca/) with the stream's authenticated node.

import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, status as GrpcStatus, type ServerDuplexStream } from '@grpc/grpc-js';
import { distributionProtocol, type AgentMessage, type ControllerMessage, type HealthMessage } from '../../runtime/index.ts';
import type { Logger } from '../log.ts';
import { AgentAuthError, type AgentIdentity } from './agent-auth.ts';
import type { NodeConfig, NodeConfigSource } from './types.ts';

/** What the controller knows of a node's latest snapshot. */
export interface NodeRecord {
  /** The version last sent to the node (or the one it said it serves, when that is current). */
  version: string;
  /** The node ACKed `version`. */
  acked: boolean;
  /** Its NACK reason for `version`, if it refused it. */
  nackReason?: string;
  /** A stream of the node is open on this replica. */
  connected: boolean;
  /** The WasmFilters of the snapshot last sent: `namespace/name` -> filter version. */
  sent: Record<string, string>;
  /** The WasmFilters of the snapshot the node last ACKed (what it runs). */
  applied: Record<string, string>;
  /** The last snapshot the node NACKed and why; cleared by its next ACK. */
  rejected?: { version: string; reason: string; filters: Record<string, string> };
  /** Failures the node reported per WasmFilter, for the filter version it runs. */
  failures: Record<string, { version: string; failures: number }>;
  /** When this record last changed (ms since the epoch). */
  at: number;
}

export interface DistributionServerOptions {
  source: NodeConfigSource;
  authenticate: (token: string, nodeName: string) => Promise<AgentIdentity>;
  log: Logger;
  /** An agent that sends no hello within this is disconnected. */
  helloTimeoutMs?: number;
  /** Signs workload CSRs for an authenticated node (controller/ca/); absent: CSRs are refused. */
  certificates?: WorkloadSigner;
  /** Called after any node record changed (the node-report publisher). */
  onRecordChange?: () => void;
}

export interface WorkloadSigner {
  /** The roots sent to every accepted agent; undefined until the CA is loaded. */
  trustBundle(): string | undefined;
  /** Resolves with the chain, or rejects with the reason of a refusal (logged and counted by the signer). */
  sign(nodeName: string, csrPem: string): Promise<{ chainPem: string; trustBundle: string }>;
}

const filterMap = (c: NodeConfig): Record<string, string> => Object.fromEntries((c.filters ?? []).map((f) => [f.key, f.version]));

type Call = ServerDuplexStream<AgentMessage, ControllerMessage>;

/** CSRs one stream may have waiting for an answer (each costs a Pod list on the API server). */
export const MAX_CSRS_IN_FLIGHT = 32;

export class DistributionServer {
  private server?: Server;
  private readonly records = new Map<string, NodeRecord>();
  private readonly calls = new Map<Call, string>();
  /** CSRs being signed, per stream: a node has a few identities, not hundreds at once. */
  private readonly csrsInFlight = new Map<Call, number>();
  /** Modules sent, by digest (tests: nothing is sent twice to an agent that has it). */
  modulesSent = 0;

  constructor(private readonly options: DistributionServerOptions) {}

  /** Binds `host:port` (port 0: a free one) and returns the port; plaintext unless TLS `credentials` are given. */
  async listen(address: string, credentials = ServerCredentials.createInsecure()): Promise<number> {
    const server = new Server({ 'grpc.max_send_message_length': 64 * 1024 * 1024 });
    server.addService(distributionProtocol().service, { Stream: (call: Call) => this.onStream(call) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentials, (error, p) => (error ? reject(error) : resolve(p))),
    );
    this.server = server;
    return port;
  }

  /** The per-node records (node name -> latest snapshot and its answer). */
  nodes(): ReadonlyMap<string, NodeRecord> {
    return this.records;
  }

  /** Ends the streams of `nodeName` (every node's when absent) with UNAVAILABLE; agents reconnect. */
  disconnect(nodeName?: string): void {
    for (const [call, node] of this.calls) {
      if (nodeName === undefined || node === nodeName) call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'stream closed by the controller; reconnect' });
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.disconnect();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }

  private record(node: string): NodeRecord {
    let r = this.records.get(node);
    if (!r) this.records.set(node, (r = { version: '', acked: false, connected: true, sent: {}, applied: {}, failures: {}, at: Date.now() }));
    return r;
  }

  private changed(): void {
    try {
      this.options.onRecordChange?.();
    } catch (error) {
      this.options.log.error('node record listener threw', { error: (error as Error).message });
    }
  }

  /** Failure counters of the filters the node runs (reported for the snapshot it serves, `applied`). */
  private onHealth(node: string, health: HealthMessage, applied: NodeConfig | undefined): void {
    const r = this.records.get(node);
    if (!r || !applied || health.version !== applied.version) return;
    const byName = new Map((applied.filters ?? []).map((f) => [f.name, f]));
    let changed = false;
    for (const h of health.filters ?? []) {
      const f = byName.get(h.name);
      const failures = Number(h.failures);
      if (!f || !Number.isSafeInteger(failures) || failures < 0) continue;
      const before = r.failures[f.key];
      if (before?.version === f.version && before.failures === failures) continue;
      r.failures[f.key] = { version: f.version, failures };
      changed = true;
    }
    if (!changed) return;
    r.at = Date.now();
    this.options.log.info('node reported filter failures', { node, failures: Object.fromEntries(Object.entries(r.failures).map(([k, f]) => [k, f.failures])) });
    this.changed();
  }

  /** Signs for the stream's authenticated node only; a CSR before the hello is checked is refused (the agent waits for the trust bundle). */
  private onCsr(call: Call, node: string | undefined, requestId: string, csr: string, ended: () => boolean): void {
    const reply = (r: { certChain?: string; trustBundle?: string; refused?: string }) => {
      if (!ended()) call.write({ certificate: { requestId, certChain: r.certChain ?? '', trustBundle: r.trustBundle ?? '', refused: r.refused ?? '' } });
    };
    const signer = this.options.certificates;
    if (!node || !signer) {
      const reason = !node ? 'the stream is not authenticated yet: send CSRs after the trust bundle arrives' : 'this controller issues no workload certificates';
      this.options.log.warn('csr refused', { peer: call.getPeer(), node, reason });
      return reply({ refused: reason });
    }
    const inFlight = this.csrsInFlight.get(call) ?? 0;
    if (inFlight >= MAX_CSRS_IN_FLIGHT) {
      const reason = `more than ${MAX_CSRS_IN_FLIGHT} CSRs in flight on one stream; send the next when one is answered`;
      this.options.log.warn('csr refused', { node, reason });
      return reply({ refused: reason });
    }
    this.csrsInFlight.set(call, inFlight + 1);
    const done = () => {
      const n = (this.csrsInFlight.get(call) ?? 1) - 1;
      if (n > 0 && !ended()) this.csrsInFlight.set(call, n);
      else this.csrsInFlight.delete(call);
    };
    signer.sign(node, csr).then(
      (signed) => (done(), reply({ certChain: signed.chainPem, trustBundle: signed.trustBundle })),
      (error: Error) => (done(), reply({ refused: error.message })),
    );
  }

  private onStream(call: Call): void {
    const peer = call.getPeer();
    const timeout = setTimeout(() => refuse(GrpcStatus.DEADLINE_EXCEEDED, 'no hello received in time'), this.options.helloTimeoutMs ?? 10_000);
    let node: string | undefined;
    let unsubscribe: (() => void) | undefined;
    let have = new Set<string>();
    let nonce = '';
    /** Modules sent on this stream (not those the agent said it had). */
    const sentHere = new Set<string>();
    /** The config last sent on this stream, and the one the agent runs (last ACKed, or resumed). */
    let sentConfig: NodeConfig | undefined;
    let appliedConfig: NodeConfig | undefined;
    let ended = false;
    const refuse = (code: GrpcStatus, details: string) => {
      if (ended) return;
      this.options.log.warn('agent refused', { peer, node, code: GrpcStatus[code], reason: details });
      call.emit('error', { code, details });
    };
    const send = (c: NodeConfig) => {
      if (ended) return;
      for (const [sha256, bytes] of c.modules) {
        if (have.has(sha256)) continue;
        call.write({ module: { sha256, bytes } });
        have.add(sha256);
        sentHere.add(sha256);
        this.modulesSent++;
      }
      nonce = randomBytes(8).toString('hex');
      sentConfig = c;
      const r = this.record(node!);
      Object.assign(r, { version: c.version, acked: false, connected: true, sent: filterMap(c), at: Date.now() });
      delete r.nackReason;
      this.changed();
      call.write({ snapshot: { version: c.version, nonce, config: c.config } });
    };
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(timeout);
      unsubscribe?.();
      this.calls.delete(call);
      const r = node ? this.records.get(node) : undefined;
      if (r && ![...this.calls.values()].includes(node!)) {
        r.connected = false;
        r.at = Date.now();
        this.changed();
      }
    };
    call.on('error', end);
    call.on('cancelled', end);
    call.on('close', end);
    call.on('end', () => {
      end();
      call.end();
    });
    call.on('data', (m: AgentMessage) => {
      if (m.hello) {
        if (node !== undefined) return refuse(GrpcStatus.INVALID_ARGUMENT, 'a second hello on one stream');
        const hello = m.hello;
        node = hello.nodeName;
        clearTimeout(timeout);
        this.options.authenticate(hello.token, hello.nodeName).then(
          (who) => {
            if (ended) return;
            this.calls.set(call, who.nodeName);
            have = new Set(hello.haveModules);
            this.options.log.info('agent connected', { node: who.nodeName, pod: `${who.podNamespace}/${who.podName}`, peer, lastVersion: hello.lastVersion || undefined, modules: have.size });
            const roots = this.options.certificates?.trustBundle();
            if (roots) call.write({ trustBundle: { roots } });
            let first = true;
            unsubscribe = this.options.source.watch(who.nodeName, (c) => {
              // A resuming agent that already serves the current version is not sent it again.
              if (first && c.version === hello.lastVersion) {
                const r = this.record(who.nodeName);
                const filters = filterMap(c);
                Object.assign(r, { version: c.version, acked: true, connected: true, sent: filters, applied: filters, at: Date.now() });
                delete r.nackReason;
                delete r.rejected;
                sentConfig = c;
                appliedConfig = c;
                this.changed();
                first = false;
                return;
              }
              first = false;
              send(c);
            });
          },
          (error: Error) => {
            if (error instanceof AgentAuthError) return refuse(error.grpcCode, error.message);
            refuse(GrpcStatus.UNAVAILABLE, `cannot check the token with the API server: ${error.message}`);
          },
        );
        return;
      }
      if (node === undefined) return refuse(GrpcStatus.UNAUTHENTICATED, 'the first message must be a hello');
      if (m.csr) return this.onCsr(call, this.calls.get(call), m.csr.requestId, m.csr.csr, () => ended);
      if (!this.calls.has(call)) return refuse(GrpcStatus.UNAUTHENTICATED, 'the first message must be a hello');
      if (m.health) return this.onHealth(node, m.health, appliedConfig);
      const answer = m.ack ?? m.nack;
      if (!answer) return;
      // An answer to an older snapshot than the last one sent is stale: the newer one decides.
      if (answer.nonce !== nonce) return;
      const r = this.records.get(node)!;
      r.at = Date.now();
      if (m.ack) {
        r.acked = true;
        delete r.nackReason;
        delete r.rejected;
        r.applied = { ...r.sent };
        appliedConfig = sentConfig;
        // Counters are per filter version: those of versions the node no longer runs go.
        for (const [key, f] of Object.entries(r.failures)) if (r.applied[key] !== f.version) delete r.failures[key];
        this.options.log.info('node ACKed', { node, version: answer.version });
      } else {
        Object.assign(r, { acked: false, nackReason: m.nack!.reason, rejected: { version: r.version, reason: m.nack!.reason, filters: { ...r.sent } } });
        // The agent may have failed to store a module it was sent: send the snapshot's modules again next time.
        for (const d of sentConfig?.modules.keys() ?? []) if (sentHere.delete(d)) have.delete(d);
        this.options.log.warn('node NACKed', { node, version: answer.version, reason: m.nack!.reason });
      }
      this.changed();
    });
  }
}
