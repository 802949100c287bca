// The proxy's one classifier of upstream failures: an error from undici, node:net or node:http2
// (keyed on their error codes, never on names or messages) becomes one SLUICE_ERR_UPSTREAM_* code,
// which retries, outlier detection, metrics and the local reply all act on.

import { errors as undiciErrors } from 'undici';
import { SluiceError, type ErrorCode } from '../errors.ts';

export type UpstreamErrorCode = Extract<ErrorCode, `SLUICE_ERR_UPSTREAM_${string}`>;

/** No connection was made: nothing reached the upstream, so any request may be tried elsewhere. */
const CONNECT = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ETIMEDOUT', // node:net's connect timed out (the kernel's SYN retries)
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  // The node-to-node tunnel (runtime/tunnel): no certificate, no session, or the peer node said no.
  'SLUICE_ERR_TUNNEL_IDENTITY',
  'SLUICE_ERR_TUNNEL_CONNECT',
  'SLUICE_ERR_TUNNEL_REFUSED',
]);

/** The connection or stream broke before the response headers. */
const RESET = new Set([
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_INVALID_SESSION',
]);

/** Time to the response headers ran out (the cluster's requestTimeoutMs, or a try's). */
const TIMEOUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The upstream spoke, but not valid HTTP. */
const PROTOCOL = new Set([
  'UND_ERR_HEADERS_OVERFLOW',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_INFO',
  'ERR_HTTP2_PROTOCOL_ERROR',
  'ERR_HTTP2_INVALID_HEADER_VALUE',
  'ERR_HTTP2_INVALID_PSEUDOHEADER',
]);

/** The code of an upstream failure; a SluiceError of the proxy's own (a timeout) keeps its code. */
export function classifyUpstreamFailure(error: unknown): UpstreamErrorCode {
  // undici's parser errors carry llhttp's code (HPE_*) only for some of its failures.
  if (error instanceof undiciErrors.HTTPParserError) return 'SLUICE_ERR_UPSTREAM_PROTOCOL';
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return 'SLUICE_ERR_UPSTREAM_FAILED';
  if (code.startsWith('SLUICE_ERR_UPSTREAM_')) return code as UpstreamErrorCode;
  if (CONNECT.has(code)) return 'SLUICE_ERR_UPSTREAM_CONNECT';
  if (RESET.has(code)) return 'SLUICE_ERR_UPSTREAM_RESET';
  if (TIMEOUT.has(code)) return 'SLUICE_ERR_UPSTREAM_TIMEOUT';
  // llhttp's parse errors (HPE_INVALID_CONSTANT, HPE_INVALID_HEADER_TOKEN, ...), as undici reports them.
  if (PROTOCOL.has(code) || code.startsWith('HPE_')) return 'SLUICE_ERR_UPSTREAM_PROTOCOL';
  return 'SLUICE_ERR_UPSTREAM_FAILED';
}

/** The route's timeout passed while a try was running. Never retried: the stream's time is up. */
export class RouteTimeout extends SluiceError {
  constructor(readonly ms: number) {
    super('SLUICE_ERR_UPSTREAM_TIMEOUT', `the upstream did not answer within the route's timeout of ${ms} ms`);
  }
}

/** One try ran past the retry policy's perTryTimeoutMs. */
export class TryTimeout extends SluiceError {
  constructor(readonly ms: number) {
    super('SLUICE_ERR_UPSTREAM_TIMEOUT', `the upstream did not answer within the per-try timeout of ${ms} ms`);
  }
}

/** The status of the local reply for each failure, as Envoy answers them. */
const STATUS: Record<UpstreamErrorCode, number> = {
  SLUICE_ERR_UPSTREAM_CONNECT: 503,
  SLUICE_ERR_UPSTREAM_TIMEOUT: 504,
  SLUICE_ERR_UPSTREAM_RESET: 502,
  SLUICE_ERR_UPSTREAM_PROTOCOL: 502,
  SLUICE_ERR_UPSTREAM_FAILED: 502,
};

/** The status Sluice answers a failure of class `code` with. */
export function upstreamFailureStatus(code: UpstreamErrorCode): number {
  return STATUS[code];
}
