// The client side of an http listener. Cleartext ports speak HTTP/1.1 and HTTP/2 with prior
// knowledge (h2c) on the same port: the first bytes of a connection tell which (the HTTP/2
// preface), as Envoy's codec "AUTO" does. TLS ports offer h2 and http/1.1 by ALPN, and with a CA
// ask for a client certificate whose SPIFFE ID becomes the peer identity. Either way the request
// path sees one request/response API (node's HTTP/2 compatibility API mirrors HTTP/1.1's).

import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttp1Server, type IncomingMessage, type Server as Http1Server, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { MAX_REQUEST_HEADERS_CEILING } from '../config/index.ts';
import type { ListenerTls } from '../config/snapshot.ts';
import type { ConnectionInfo } from '../host/stream.ts';
import { guardRapidResets } from './h2-reset-guard.ts';
import { log } from '../log.ts';

export type DownstreamRequest = IncomingMessage | Http2ServerRequest;

/** What the request path uses of a response: the same calls for HTTP/1.1 and HTTP/2. */
export interface DownstreamResponse {
  readonly headersSent: boolean;
  /** The whole response was handed to the connection. */
  readonly writableFinished: boolean;
  /** `headers`: a flat name/value list. */
  writeHead(status: number, headers: string[]): unknown;
  write(chunk: Uint8Array): boolean;
  /** Bytes written but not yet handed to the connection (backpressure.ts waits on it). */
  readonly writableLength: number;
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain' | 'close', listener: () => void): unknown;
  end(chunk?: Uint8Array): unknown;
  addTrailers(trailers: Record<string, string>): void;
  destroy(): unknown;
  once(event: 'close', listener: () => void): unknown;
}

export interface DownstreamLimits {
  headersTimeoutMs: number;
  maxHeaderBytes: number;
  requestTimeoutMs: number;
}

export interface DownstreamHandlers {
  request(req: DownstreamRequest, res: DownstreamResponse): void;
  /**
   * An HTTP/1.1 request with `Connection: upgrade`: node's parser has let go of the socket.
   * `resume(bytes)` hands it back, `bytes` parsed first, and the connection speaks HTTP/1.1 again.
   */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, resume: (bytes: Buffer) => void): void;
  /** An HTTP/2 connection was closed for resetting its streams in a loop (h2-reset-guard.ts). */
  rapidReset?(): void;
}

export interface Downstream {
  /** The server that listens. */
  readonly server: Server;
  /** Drain: HTTP/1.1 idle connections close, HTTP/2 sessions get a GOAWAY (streams in flight finish). */
  closeIdle(): void;
  /** The end of a drain: every connection closes now. */
  closeAll(): void;
  /** TLS listeners: new connections use these certificates (rotation on reload); open ones keep theirs. */
  setTls?(tls: ListenerTls): void;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** The socket a client is connected on, behind HTTP/2 sessions and the h2c wrapper. */
const sessionSockets = new WeakMap<Http2Session, Socket>();

export function downstreamServer(limits: DownstreamLimits, tls: ListenerTls | undefined, handlers: DownstreamHandlers): Downstream {
  const sessions = new Set<Http2Session>();
  const h2Settings = { maxHeaderListSize: limits.maxHeaderBytes };
  // The parsers keep up to the ceiling any listener may allow (node's defaults cut HTTP/1.1 headers
  // silently and reset HTTP/2 streams past 128); request-head.ts answers 431 past a listener's own
  // maxRequestHeaders. maxHeaderBytes bounds the memory either way.
  const maxHeaderListPairs = MAX_REQUEST_HEADERS_CEILING + 8;
  const trackSession = (session: Http2Session, socket: Socket) => {
    sessionSockets.set(session, socket);
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => {});
    guardRapidResets(session, socket.remoteAddress ?? '', (msg) => {
      log('warn', msg);
      handlers.rapidReset?.();
    });
  };

  if (tls) {
    const server = http2.createSecureServer({
      allowHTTP1: true,
      ...secureOptions(tls),
      settings: h2Settings,
      maxHeaderListPairs,
      maxSendHeaderBlockLength: limits.maxHeaderBytes,
    });
    (server as unknown as Http1Server).maxHeadersCount = MAX_REQUEST_HEADERS_CEILING + 1;
    server.on('session', (session) => trackSession(session, session.socket as Socket));
    server.on('request', (req: DownstreamRequest, res: ServerResponse | Http2ServerResponse) => handlers.request(req, res as unknown as DownstreamResponse));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handlers.upgrade(req, socket, head, (bytes) => resumeHttp1(server, 'secureConnection', socket, bytes)));
    const h1 = server as unknown as Http1Server;
    return {
      server,
      closeIdle: () => {
        for (const s of sessions) s.close();
        h1.closeIdleConnections?.();
      },
      closeAll: () => {
        for (const s of sessions) s.destroy();
        h1.closeAllConnections?.();
      },
      setTls: (next) => server.setSecureContext(secureOptions(next)),
    };
  }

  const h1 = createHttp1Server({ headersTimeout: limits.headersTimeoutMs, requestTimeout: Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs), maxHeaderSize: limits.maxHeaderBytes });
  h1.maxHeadersCount = MAX_REQUEST_HEADERS_CEILING + 1;
  // Node checks the header timeout on this interval; keep it well under the timeout itself.
  (h1 as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(30_000, Math.max(100, limits.headersTimeoutMs / 4));
  h1.on('request', (req, res) => handlers.request(req, res as unknown as DownstreamResponse));
  h1.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handlers.upgrade(req, socket, head, (bytes) => resumeHttp1(h1, 'connection', socket, bytes)));
  const h2 = http2.createServer({ settings: h2Settings, maxHeaderListPairs });
  h2.on('request', (req, res) => handlers.request(req, res as unknown as DownstreamResponse));
  let arriving: Socket | undefined;
  h2.on('session', (session) => trackSession(session, arriving!));

  const server = createNetServer({ noDelay: true }, (socket) => {
    // A client that connects and sends nothing is cut off like one that sends its headers slowly.
    socket.setTimeout(limits.headersTimeoutMs, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      if (startsLikePreface(first)) {
        arriving = socket;
        h2.emit('connection', h2cStream(socket, first));
        arriving = undefined;
      } else {
        socket.unshift(first);
        h1.emit('connection', socket);
        socket.resume();
      }
    });
    socket.on('error', () => {});
  });
  // The HTTP/1.1 server never listens itself; this starts its header/request timeout checks.
  server.once('listening', () => h1.emit('listening'));
  server.once('close', () => h1.close());
  return {
    server,
    closeIdle: () => {
      for (const s of sessions) s.close();
      h1.closeIdleConnections();
    },
    closeAll: () => {
      for (const s of sessions) s.destroy();
      h1.closeAllConnections();
    },
  };
}

/**
 * Gives a connection an upgrade took back to the HTTP/1.1 server, `bytes` (read past the upgrade
 * request) first. A TLS server takes HTTP/1.1 connections by `secureConnection` (ALPN http/1.1).
 */
function resumeHttp1(server: EventEmitter, event: 'connection' | 'secureConnection', socket: Socket, bytes: Buffer): void {
  if (socket.destroyed) return;
  if (bytes.byteLength > 0) socket.unshift(bytes);
  server.emit(event, socket);
  socket.resume();
}

function secureOptions(tls: ListenerTls) {
  return {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    ...(tls.caFile ? { ca: readFileSync(tls.caFile), requestCert: true, rejectUnauthorized: tls.requireClientCert } : {}),
  };
}

/**
 * Answers with headers alone, ending the stream with them: on HTTP/2 one HEADERS frame with
 * END_STREAM, which gRPC clients need to read a "trailers-only" status.
 */
export function endWithHeaders(res: DownstreamResponse, status: number, headers: string[]): void {
  const stream = (res as unknown as Http2ServerResponse).stream;
  if (!stream) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const out: http2.OutgoingHttpHeaders = { ':status': status };
  for (let i = 0; i < headers.length; i += 2) {
    const had = out[headers[i]];
    out[headers[i]] = had === undefined ? headers[i + 1] : [...[had].flat().map(String), headers[i + 1]];
  }
  if (!stream.destroyed) stream.respond(out, { endStream: true });
}

/** The socket under a request, whichever protocol carries it. */
export function downstreamSocket(req: DownstreamRequest): Socket {
  const session = (req as Http2ServerRequest).stream?.session;
  return (session && sessionSockets.get(session)) ?? req.socket;
}

/** Facts given by whoever made a connection that is not a TLSSocket itself (a stream of the node-to-node tunnel). */
const givenFacts = new WeakMap<object, Omit<ConnectionInfo, 'id'>>();

/** Says what filters see of `socket`'s connection: the tunnel's peer identity for a tunneled stream. */
export function setConnectionFacts(socket: object, facts: Omit<ConnectionInfo, 'id'>): void {
  givenFacts.set(socket, facts);
}

/** What filters see of a TLS connection (connection.* properties, sluice.peer_identity). */
export function tlsFacts(socket: Socket): Omit<ConnectionInfo, 'id'> {
  const given = givenFacts.get(socket);
  if (given) return given;
  if (!(socket instanceof TLSSocket)) return { mtls: false };
  const cert = socket.getPeerCertificate();
  const verified = socket.authorized && cert !== undefined && Object.keys(cert).length > 0;
  const sans = (verified ? cert.subjectaltname ?? '' : '').split(', ').filter(Boolean);
  const of = (kind: string) => sans.filter((s) => s.startsWith(`${kind}:`)).map((s) => s.slice(kind.length + 1));
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  return {
    mtls: verified,
    tlsVersion: socket.getProtocol() ?? undefined,
    ...(servername ? { requestedServerName: servername } : {}),
    ...(verified ? { peerUriSans: of('URI'), peerDnsSans: of('DNS'), peerSubject: subjectText(cert.subject as unknown as Record<string, string | string[]>) } : {}),
  };
}

function subjectText(subject: Record<string, string | string[]> | undefined): string {
  if (!subject) return '';
  return Object.entries(subject).map(([k, v]) => `${k}=${[v].flat().join('+')}`).join(',');
}

/** True when `first` could be the start of the HTTP/2 connection preface. */
function startsLikePreface(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE.length);
  return n > 0 && first.compare(PREFACE, 0, n, 0, n) === 0;
}

/**
 * The client socket as a JS stream that replays the bytes already read. node's HTTP/2 server
 * reads a net.Socket's handle directly, past anything unshifted, so a sniffed connection goes
 * through this wrapper instead.
 */
function h2cStream(socket: Socket, first: Buffer): Duplex {
  const stream = new Duplex({
    read: () => void socket.resume(),
    write: (chunk, encoding, done) => void socket.write(chunk, encoding, done),
    final: (done) => void socket.end(done),
    destroy: (error, done) => {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  for (const key of ['remoteAddress', 'remotePort', 'remoteFamily', 'localAddress', 'localPort'] as const) {
    Object.defineProperty(stream, key, { get: () => socket[key] });
  }
  Object.assign(stream, {
    setTimeout: (ms: number, fn?: () => void) => (socket.setTimeout(ms, fn), stream),
    setNoDelay: (on?: boolean) => (socket.setNoDelay(on), stream),
    setKeepAlive: (on?: boolean, delay?: number) => (socket.setKeepAlive(on, delay), stream),
  });
  stream.push(first);
  socket.on('data', (chunk) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once('end', () => stream.push(null));
  socket.once('close', () => stream.destroy());
  // The socket's own errors are ignored where it is accepted; the session destroys this wrapper
  // with its error, possibly after it stopped listening.
  stream.on('error', () => {});
  return stream;
}
