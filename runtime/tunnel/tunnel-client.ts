// The sending end of the node-to-node tunnel: per (source SPIFFE ID, peer node, identity expected
// there) one HTTP/2 session over TLS 1.3 presenting the source workload's X509-SVID and verifying
// the peer's against the trust bundle; open() sends CONNECT ip:port on it and gives the stream.
// Sessions are reused, made again when gone, and closed (gracefully) when the source's
// certificate or the roots change, so that new connections use the new ones.

import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { SluiceError } from '../errors.ts';
import type { IdentityStore } from '../identity/index.ts';
import { log as defaultLog, type LogLevelName } from '../log.ts';
import { authorityOf, serverNameFor, spiffeIds, type TunnelTarget } from './peer-identity.ts';
import { TUNNEL_ERROR_HEADER, TUNNEL_LIMITS, type TunnelLimits } from './tunnel-server.ts';

type Log = (level: LogLevelName, msg: string, fields?: Record<string, unknown>) => void;

export interface TunnelDestination {
  /** The peer node's tunnel address (hostIP:15008). */
  readonly node: { host: string; port: number };
  /** The pod ip:port behind it. */
  readonly target: TunnelTarget;
  /** The SPIFFE ID whose certificate this side presents: the source pod's. */
  readonly source: string;
  /** The SPIFFE ID the peer must present (the destination pod's), when discovery says it; otherwise any SVID the trust bundle verifies. */
  readonly expectedIdentity?: string;
  /** The source pod's address, passed on in `forwarded: for=` (the receiving side's x-forwarded-for). */
  readonly sourceAddress?: string;
}

export interface TunnelClientOptions {
  identities: IdentityStore;
  /** A session not established (TCP + TLS) within this fails the open() waiting on it. Default 10 s. */
  connectTimeoutMs?: number;
  limits?: Partial<Pick<TunnelLimits, 'streamWindowBytes' | 'idleTimeoutMs'>>;
  log?: Log;
}

interface Entry {
  readonly source: string;
  readonly session: ClientHttp2Session;
  readonly ready: Promise<void>;
  open: number;
  /** What broke the session, if something did (a TLS alert from the peer, say). */
  error?: Error;
  /** The peer's SETTINGS arrived: it accepted the session. */
  accepted: boolean;
  /** The last stream id a GOAWAY from the peer said it processed (streams above it were not). */
  goawayLastStreamId?: number;
}

/** A CONNECT the peer never processed (REFUSED_STREAM, or above a GOAWAY's last stream id): safe to send again. */
class Unprocessed extends Error {}

/** How many times a CONNECT the peer did not process is sent again, each on a fresh session. */
const UNPROCESSED_RETRIES = 2;

export interface TunnelClientCounters {
  /** Sessions opened to peer nodes. */
  sessions: number;
  /** CONNECT streams answered 200. */
  streams: number;
  /** open() failures, by error code (SLUICE_ERR_TUNNEL_*). */
  failures: Record<string, number>;
}

export class TunnelClient {
  readonly counters: TunnelClientCounters = { sessions: 0, streams: 0, failures: {} };
  private readonly sessions = new Map<string, Entry>();
  /** Sessions taken out of the map (rotation) that still carry streams; destroyed on close(). */
  private readonly retired = new Set<ClientHttp2Session>();
  private readonly log: Log;
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly o: TunnelClientOptions) {
    this.log = o.log ?? defaultLog;
    this.unsubscribe = o.identities.onChange((change) => {
      if (change.kind === 'trustBundle') this.retire(() => true, 'the trust bundle changed');
      else this.retire((e) => e.source === change.spiffeId, `the certificate of ${change.spiffeId} ${change.kind === 'removed' ? 'was removed' : 'was renewed'}`);
    });
  }

  /** Sessions open now (tests, /status). */
  sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * A stream to `d.target` through the peer node, answered 200: its bytes are the pod's
   * connection. Fails with SLUICE_ERR_TUNNEL_IDENTITY (no certificate for the source),
   * SLUICE_ERR_TUNNEL_CONNECT (no session to the node) or SLUICE_ERR_TUNNEL_REFUSED (the node said no).
   */
  async open(d: TunnelDestination): Promise<Duplex> {
    try {
      const stream = await this.connect(d);
      this.counters.streams++;
      return stream;
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'other';
      this.counters.failures[code] = (this.counters.failures[code] ?? 0) + 1;
      throw error;
    }
  }

  /**
   * A CONNECT the peer did not process (it was draining: a GOAWAY crossed the stream, or it refused
   * the stream) goes again on a fresh session, as Envoy retries a stream reset before the request
   * reached the peer: during a peer node's proxy upgrade the new session reaches its successor.
   */
  private async connect(d: TunnelDestination, retries = UNPROCESSED_RETRIES): Promise<Duplex> {
    try {
      return await this.connectOnce(d);
    } catch (error) {
      if (!(error instanceof Unprocessed)) throw error;
      if (retries > 0) return this.connect(d, retries - 1);
      throw new SluiceError('SLUICE_ERR_TUNNEL_REFUSED', error.message);
    }
  }

  private async connectOnce(d: TunnelDestination): Promise<Duplex> {
    if (this.closed) throw new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', 'the tunnel client is closed');
    const entry = this.session(d);
    const where = `${d.node.host}:${d.node.port}`;
    await entry.ready;
    let stream: ClientHttp2Stream;
    try {
      const forwarded = d.sourceAddress ? { forwarded: `for="${d.sourceAddress.includes(':') ? `[${d.sourceAddress}]` : d.sourceAddress}"` } : {};
      stream = entry.session.request({ ':method': 'CONNECT', ':authority': authorityOf(d.target), ...forwarded }, { endStream: false });
    } catch (error) {
      // The session went away between ready and now (a GOAWAY): one more try on a fresh one.
      this.drop(entry);
      if ((error as { code?: string }).code !== 'ERR_HTTP2_GOAWAY_SESSION' && (error as { code?: string }).code !== 'ERR_HTTP2_INVALID_SESSION') throw error;
      throw new Unprocessed(`the tunnel session to ${where} went away before the CONNECT to ${authorityOf(d.target)} was sent`);
    }
    entry.open++;
    stream.once('close', () => entry.open--);
    // A session broken by the peer reports its error on its streams (and not always on itself).
    stream.on('error', (error: Error) => (entry.error ??= /^ERR_SSL_|^ERR_TLS_/.test((error as { code?: string }).code ?? '') ? error : undefined));
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      let answered = false;
      stream.once('response', (h) => {
        answered = true;
        resolve(h);
      });
      // Not events.once: it would reject with the stream's raw error; the error is read off the session instead.
      stream.once('close', () => {
        if (answered) return;
        const id = stream.id ?? 0;
        const last = entry.goawayLastStreamId;
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM || (last !== undefined && id > last)) {
          this.drop(entry);
          return reject(new Unprocessed(`the tunnel to ${where} did not process the CONNECT to ${authorityOf(d.target)} (${last !== undefined && id > last ? 'GOAWAY' : 'REFUSED_STREAM'}): the peer was draining`));
        }
        void this.whyClosed(entry, stream, where, d).then(reject);
      });
    });
    const status = Number(headers[':status']);
    if (status !== 200) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      const reason = headers[TUNNEL_ERROR_HEADER];
      throw new SluiceError('SLUICE_ERR_TUNNEL_REFUSED', `node ${where} refused CONNECT ${authorityOf(d.target)} from ${d.source} with ${status}${reason ? `: ${reason}` : ''}`);
    }
    return stream;
  }

  /** Why a CONNECT stream closed before its answer, as the error open() rejects with. */
  private async whyClosed(entry: Entry, stream: ClientHttp2Stream, where: string, d: TunnelDestination): Promise<SluiceError> {
    // A session broken by the peer (a TLS 1.3 alert refusing our certificate arrives after the
    // handshake completed on our side) cancels its streams first and reports its error after:
    // wait for it briefly, so the error says why.
    if (!entry.error && !entry.session.destroyed) await Promise.race([new Promise((r) => entry.session.once('close', r)), new Promise((r) => setTimeout(r, 200))]);
    if (entry.error) return new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `the tunnel session to ${where} as ${d.source} broke: ${entry.error.message.trim()}${hint(entry.error)}`, { cause: entry.error });
    // A TLS 1.3 server that refuses a client certificate after verifying it just closes the
    // connection (node sends no alert), before its first HTTP/2 frame.
    if (!entry.accepted && entry.session.destroyed) return new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `node ${where} closed the connection right after the TLS handshake: it did not accept the certificate of ${d.source} (does it verify with the peer's trust bundle? the peer logs "tunnel: TLS handshake ... refused" with the reason)`);
    return new SluiceError('SLUICE_ERR_TUNNEL_REFUSED', `the tunnel to ${where} reset the CONNECT to ${authorityOf(d.target)} before answering (code ${stream.rstCode})`);
  }

  /** Destroys every session (their streams with them). */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    for (const e of this.sessions.values()) e.session.destroy();
    for (const s of this.retired) s.destroy();
    this.sessions.clear();
    this.retired.clear();
  }

  private session(d: TunnelDestination): Entry {
    const key = `${d.source} ${d.node.host} ${d.node.port} ${d.expectedIdentity ?? ''}`;
    const existing = this.sessions.get(key);
    if (existing && !existing.session.closed && !existing.session.destroyed) return existing;
    if (existing) this.sessions.delete(key);
    const identity = this.o.identities.get(d.source);
    if (!identity) throw new SluiceError('SLUICE_ERR_TUNNEL_IDENTITY', `no workload certificate in force for ${d.source}: the node agent has not received one from the controller yet (or it expired); the connection is refused, never sent in plaintext`);
    const ca = this.o.identities.trustBundle();
    if (!ca) throw new SluiceError('SLUICE_ERR_TUNNEL_IDENTITY', 'no trust bundle from the controller yet: peers cannot be verified; the connection is refused, never sent in plaintext');
    const where = `${d.node.host}:${d.node.port}`;
    const limits = { ...TUNNEL_LIMITS, ...this.o.limits };
    let entryRef: Entry | undefined;
    const session = http2.connect(`https://${d.node.host.includes(':') ? `[${d.node.host}]` : d.node.host}:${d.node.port}`, {
      settings: { enablePush: false, initialWindowSize: limits.streamWindowBytes },
      createConnection: () => {
        const socket = tlsConnect({
          host: d.node.host,
          port: d.node.port,
          key: identity.keyPem,
          cert: identity.certChainPem,
          ca,
          minVersion: 'TLSv1.3',
          maxVersion: 'TLSv1.3',
          ALPNProtocols: ['h2'],
          rejectUnauthorized: true,
          // The server picks the certificate of the identity asked for; without one it shows its first.
          servername: d.expectedIdentity ? serverNameFor(d.expectedIdentity) : 'svid.sluice',
          checkServerIdentity: (_host: string, cert: PeerCertificate) => checkPeer(cert, d.expectedIdentity, where),
        });
        // A TLS 1.3 alert refusing our certificate comes after the handshake completed on our side; node's session does not always pass it on.
        socket.on('error', (error: Error) => {
          if (entryRef) entryRef.error ??= error;
        });
        return socket;
      },
    });
    const entry: Entry = {
      source: d.source,
      session,
      open: 0,
      accepted: false,
      ready: new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          session.destroy();
          reject(new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `no tunnel session to ${where} within ${this.o.connectTimeoutMs ?? 10_000} ms; is the peer's proxy up and port ${d.node.port} open between the nodes (a NetworkPolicy or firewall may drop it)?`));
        }, this.o.connectTimeoutMs ?? 10_000);
        session.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        session.once('error', (error: Error & { code?: string }) => {
          clearTimeout(timer);
          reject(new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `no tunnel session to ${where} as ${d.source}: ${error.message.trim()}${hint(error)}`, { cause: error }));
        });
        session.once('close', () => {
          clearTimeout(timer);
          reject(new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `the tunnel session to ${where} closed before it was established`));
        });
      }),
    };
    entryRef = entry;
    session.once('remoteSettings', () => (entry.accepted = true));
    session.on('goaway', (_code: number, lastStreamId: number) => {
      entry.goawayLastStreamId = Math.min(entry.goawayLastStreamId ?? lastStreamId, lastStreamId);
      this.drop(entry); // no new streams on it; theirs finish
    });
    session.on('error', (error: Error) => {
      entry.error ??= error;
      this.log('warn', `tunnel: session to ${where} as ${d.source} failed: ${error.message.trim()}${hint(error)}`);
    });
    entry.ready.catch(() => this.drop(entry));
    session.once('close', () => this.drop(entry));
    // An idle session (no streams for idleTimeoutMs) is closed; the next open() makes a new one.
    session.setTimeout(limits.idleTimeoutMs, () => {
      if (entry.open === 0) session.close();
    });
    this.sessions.set(key, entry);
    this.counters.sessions++;
    return entry;
  }

  private drop(entry: Entry): void {
    for (const [k, e] of this.sessions) if (e === entry) this.sessions.delete(k);
  }

  /** Sessions matching `which` take no new streams; their open streams finish on them. */
  private retire(which: (e: Entry) => boolean, why: string): void {
    for (const [k, e] of this.sessions) {
      if (!which(e)) continue;
      this.sessions.delete(k);
      this.log('info', `tunnel: new connections use a new session: ${why}`);
      if (e.session.closed || e.session.destroyed) continue;
      this.retired.add(e.session);
      e.session.once('close', () => this.retired.delete(e.session));
      e.session.close();
    }
  }
}

/** What to check when a session fails on certificates. */
function hint(error: Error): string {
  return /certificate|verify|SVID|alert|self.signed|issuer/i.test(error.message) ? ' (both nodes must hold workload certificates from the same trust bundle: check the controller\'s CA and each node agent\'s identity log lines)' : '';
}

/** Undefined when the server's certificate is acceptable: one SPIFFE ID, the expected one when there is one. */
function checkPeer(cert: PeerCertificate, expected: string | undefined, where: string): Error | undefined {
  const ids = cert.raw ? spiffeIds(new X509Certificate(cert.raw)) : [];
  if (ids.length !== 1) return new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `node ${where} presented a certificate with ${ids.length} spiffe:// URI SANs; an X509-SVID has exactly one`);
  if (expected && ids[0] !== expected) return new SluiceError('SLUICE_ERR_TUNNEL_CONNECT', `node ${where} presented ${ids[0]}, not ${expected} as discovery says the destination is`);
  return undefined;
}
