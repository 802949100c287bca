// The receiving end of the node-to-node tunnel (docs/capture.md#the-node-to-node-tunnel): HTTP/2
// over TLS 1.3 on 15008, as Istio's HBONE. The client must present an X509-SVID the trust bundle
// verifies; each CONNECT stream names a target ip:port and is handed, with the peer's SPIFFE ID,
// to `deliver`, which accepts (200, then the stream carries the bytes) or refuses it.

import { once } from 'node:events';
import http2, { type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { SluiceError } from '../errors.ts';
import type { IdentityStore } from '../identity/index.ts';
import { log as defaultLog, type LogLevelName } from '../log.ts';
import { parseAuthority, serverNameFor, spiffeIds, type TunnelTarget } from './peer-identity.ts';
import { listenOn } from '../proxy/shared-port.ts';

type Log = (level: LogLevelName, msg: string, fields?: Record<string, unknown>) => void;

export interface TunnelLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: tunneled connections one peer session may hold at once. */
  maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: bytes a stream may have in flight before its reader consumes them. */
  streamWindowBytes: number;
  /** A stream with no bytes either way for this long is reset; a session with no streams for this long is closed. */
  idleTimeoutMs: number;
  /** A TLS handshake not done within this is cut. */
  handshakeTimeoutMs: number;
}

export const TUNNEL_PORT = 15008;

export const TUNNEL_LIMITS: Readonly<TunnelLimits> = Object.freeze({
  maxConcurrentStreams: 100,
  streamWindowBytes: 1024 * 1024,
  // Envoy's tcp_proxy idle_timeout default.
  idleTimeoutMs: 3_600_000,
  handshakeTimeoutMs: 10_000,
});

/** Header of a refusal: why, in words (the status says what kind). */
export const TUNNEL_ERROR_HEADER = 'sluice-tunnel-error';

export interface Address {
  address: string;
  port: number;
}

/** One CONNECT stream from a verified peer, for `deliver` to accept or refuse. */
export interface TunnelRequest {
  readonly target: TunnelTarget;
  /** The client's SPIFFE ID (the only spiffe:// URI SAN of its verified certificate). */
  readonly peerIdentity: string;
  /** The SPIFFE ID of the certificate this server presented (what the client asked for by SNI). */
  readonly localIdentity: string;
  /** The source pod's address as the peer node says (`forwarded: for=`), when it says. */
  readonly source?: Address;
  /** The peer node's address, and ours, on the outer TCP connection. */
  readonly remote: Address;
  readonly local: Address;
  /** 'TLSv1.3'. */
  readonly tlsVersion: string;
  /** Answers 200: from now on the returned stream carries the client's bytes (end() half-closes). */
  accept(): Duplex;
  /** Answers `status` with `reason` in `sluice-tunnel-error`, and ends the stream. */
  refuse(status: number, reason: string): void;
}

export interface TunnelServerOptions {
  identities: IdentityStore;
  host: string;
  port: number;
  deliver: (request: TunnelRequest) => void | Promise<void>;
  limits?: Partial<TunnelLimits>;
  log?: Log;
}

export interface TunnelCounters {
  sessions: number;
  streams: number;
  /** Streams refused (any status), handshakes refused (bad or missing client certificate, no ALPN h2). */
  refusedStreams: number;
  refusedHandshakes: number;
}

export class TunnelServer {
  readonly counters: TunnelCounters = { sessions: 0, streams: 0, refusedStreams: 0, refusedHandshakes: 0 };
  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new Set<Http2Session>();
  private readonly sockets = new Set<Socket>();
  /** Streams open per session (node keeps no public count). */
  private readonly open = new WeakMap<Http2Session, number>();
  /** Secure contexts by SPIFFE ID, made on first use; dropped whole when an identity or the roots change. */
  private contexts = new Map<string, SecureContext>();
  private readonly limits: TunnelLimits;
  private readonly log: Log;
  private readonly unsubscribe: () => void;
  private closing?: Promise<void>;

  private constructor(private readonly o: TunnelServerOptions) {
    this.limits = { ...TUNNEL_LIMITS, ...o.limits };
    this.log = o.log ?? defaultLog;
    this.server = http2.createSecureServer({
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: false,
      ALPNProtocols: ['h2'],
      handshakeTimeout: this.limits.handshakeTimeoutMs,
      SNICallback: (name, done) => {
        const ctx = this.contextFor(name);
        if (ctx) done(null, ctx);
        else done(new Error(`no workload certificate for server name ${name}`));
      },
      settings: { maxConcurrentStreams: this.limits.maxConcurrentStreams, initialWindowSize: this.limits.streamWindowBytes },
      // The peer's streams beyond the limit are refused by node with REFUSED_STREAM.
      peerMaxConcurrentStreams: this.limits.maxConcurrentStreams,
      unknownProtocolTimeout: 1,
      ...this.defaultContextOptions(),
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
    });
    this.server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      this.counters.refusedHandshakes++;
      // A client certificate that does not verify is refused after the handshake (node closes the socket, no alert): the reason is the socket's authorizationError.
      const why = socket.authorizationError ? `the client certificate does not verify with the trust bundle (${String(socket.authorizationError)})` : error.message;
      this.log('warn', `tunnel: TLS handshake${socket.remoteAddress ? ` from ${socket.remoteAddress}:${socket.remotePort}` : ''} refused: ${why}; the peer must present a workload certificate (X509-SVID) signed by this node's trust bundle, over TLS 1.3 with ALPN h2`, { code: error.code });
    });
    this.server.on('unknownProtocol', (socket: TLSSocket) => {
      this.counters.refusedHandshakes++;
      this.log('warn', `tunnel: connection from ${socket.remoteAddress}:${socket.remotePort} did not negotiate ALPN h2; closed`);
      socket.destroy();
    });
    this.server.on('session', (session) => this.track(session));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.unsubscribe = o.identities.onChange(() => this.rotate());
  }

  /** Listens on host:port; throws SLUICE_ERR_TUNNEL_LISTEN when it cannot. */
  static async start(o: TunnelServerOptions): Promise<TunnelServer> {
    const t = new TunnelServer(o);
    try {
      listenOn(t.server, o.host, o.port);
      await once(t.server, 'listening');
    } catch (error) {
      t.unsubscribe();
      throw new SluiceError('SLUICE_ERR_TUNNEL_LISTEN', `the tunnel cannot listen on ${o.host}:${o.port}: ${(error as Error).message}; another process may hold the port (--tunnel-listen chooses another)`, { cause: error });
    }
    const a = t.address();
    t.log('info', `tunnel listening on ${a.address}:${a.port} (HTTP/2 CONNECT over mTLS 1.3)`);
    return t;
  }

  /** Peer sessions open now. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /**
   * Stops accepting, sends every session a GOAWAY (its streams may finish), and at `graceMs`
   * destroys what is left. Always resolves: it never waits on a peer.
   */
  close(graceMs = 0): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.unsubscribe();
    // Not awaited: the callback waits for every session to end (and a peer may never end one).
    if (this.server.listening) this.server.close();
    for (const s of this.sessions) if (!s.closed && !s.destroyed) s.close();
    let timer: NodeJS.Timeout | undefined;
    const allClosed = Promise.all([...this.sessions].map((s) => (s.destroyed ? undefined : once(s, 'close').catch(() => undefined))));
    await Promise.race([allClosed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    if (this.sessions.size > 0) this.log('info', `tunnel: closing ${this.sessions.size} peer sessions still open at the end of the drain`);
    for (const s of this.sessions) s.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.sessions.clear();
    this.sockets.clear();
  }

  private track(session: Http2Session): void {
    if (this.closing) return void session.destroy();
    this.sessions.add(session);
    this.counters.sessions++;
    session.on('error', () => {});
    session.once('close', () => this.sessions.delete(session));
    // Idle: no frames for idleTimeoutMs. A session with streams is left to them (each has its own timeout).
    session.setTimeout(this.limits.idleTimeoutMs, () => {
      if ((this.open.get(session) ?? 0) === 0) session.close();
    });
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    this.counters.streams++;
    stream.on('error', () => {});
    const session = stream.session;
    if (session) {
      this.open.set(session, (this.open.get(session) ?? 0) + 1);
      stream.once('close', () => this.open.set(session, (this.open.get(session) ?? 1) - 1));
    }
    const socket = stream.session?.socket as TLSSocket | undefined;
    const remote = { address: socket?.remoteAddress ?? '', port: socket?.remotePort ?? 0 };
    const refuse = (status: number, reason: string, level: LogLevelName = 'warn') => {
      this.counters.refusedStreams++;
      this.log(level, `tunnel: ${headers[':method']} ${headers[':authority'] ?? ''} from ${remote.address}:${remote.port} refused with ${status}: ${reason}`);
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status, [TUNNEL_ERROR_HEADER]: headerSafe(reason) }, { endStream: true });
    };
    if (headers[':method'] !== 'CONNECT') return refuse(405, `only CONNECT is served on the tunnel port, not ${headers[':method']}`);
    const target = parseAuthority(headers[':authority']);
    if (typeof target === 'string') return refuse(400, target);
    const ids = spiffeIds(socket?.getPeerX509Certificate());
    if (ids.length !== 1) return refuse(403, ids.length === 0 ? 'the client certificate has no spiffe:// URI SAN' : `the client certificate has ${ids.length} spiffe:// URI SANs; an X509-SVID has exactly one`);
    const localIds = spiffeIds(socket?.getX509Certificate());
    stream.setTimeout(this.limits.idleTimeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    let answered = false;
    const request: TunnelRequest = {
      target,
      peerIdentity: ids[0]!,
      localIdentity: localIds[0] ?? '',
      remote,
      ...forwardedFor(headers.forwarded),
      local: { address: socket?.localAddress ?? '', port: socket?.localPort ?? 0 },
      tlsVersion: socket?.getProtocol() ?? '',
      accept: () => {
        if (answered) throw new SluiceError('SLUICE_ERR_STREAM_STATE', 'a tunnel stream was answered twice');
        answered = true;
        stream.respond({ ':status': 200 });
        return stream as Duplex;
      },
      refuse: (status, reason) => {
        if (answered) return;
        answered = true;
        refuse(status, reason);
      },
    };
    Promise.resolve()
      .then(() => this.o.deliver(request))
      .catch((error: Error) => {
        if (answered) return void stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        answered = true;
        refuse(502, `delivery to ${headers[':authority']} failed: ${error.message}`, 'error');
      });
  }

  /** The context for a server name: the identity whose serverNameFor() it is, else the default. */
  private contextFor(name: string): SecureContext | undefined {
    const ids = this.o.identities.ids();
    const id = ids.find((i) => serverNameFor(i) === name) ?? ids[0];
    if (!id) return undefined;
    let ctx = this.contexts.get(id);
    if (!ctx) {
      const options = this.contextOptions(id);
      if (!options) return undefined;
      ctx = createSecureContext({ ...options, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
      this.contexts.set(id, ctx);
    }
    return ctx;
  }

  private contextOptions(id: string): { key: string; cert: string; ca: string } | undefined {
    const identity = this.o.identities.get(id);
    const ca = this.o.identities.trustBundle();
    if (!identity || !ca) return undefined;
    return { key: identity.keyPem, cert: identity.certChainPem, ca };
  }

  /** A client that sends no SNI (or one naming no identity here) gets the first identity's certificate. */
  private defaultContextOptions(): { key?: string; cert?: string; ca?: string } {
    const first = this.o.identities.ids()[0];
    return (first && this.contextOptions(first)) || {};
  }

  /** New handshakes use the new certificates and roots; open sessions keep theirs. */
  private rotate(): void {
    this.contexts = new Map();
    const options = this.defaultContextOptions();
    if (options.cert) this.server.setSecureContext({ ...options, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  }
}

/** The source address in a `forwarded: for="ip:port"` header (RFC 7239), when it is one. */
function forwardedFor(header: string | string[] | undefined): { source?: Address } {
  const m = /for="?\[?([0-9A-Fa-f.:]+?)\]?(?::(\d+))?"?(?:;|,|$)/.exec([header ?? ''].flat()[0] ?? '');
  if (!m || !isIP(m[1]!)) return {};
  return { source: { address: m[1]!, port: Number(m[2] ?? 0) } };
}

/** A reason as an HTTP header value: printable ASCII, bounded. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
}
