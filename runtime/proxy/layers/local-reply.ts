// Replies Sluice writes itself (no route, a direct response, an upstream failure, a filter's
// answer, a deadline): their wire form (Content-Length, no body where HTTP forbids one, gRPC's
// trailers-only form for gRPC requests), the reply naming an upstream failure, and the outcome of
// a filter phase acted on.

import { HeaderMap } from '../../host/header-map.ts';
import type { LocalReply, Outcome } from '../../host/http-stream.ts';
import { endWithHeaders, type DownstreamResponse } from '../downstream.ts';
import { resetResponse } from '../stream-reset.ts';
import { classifyUpstreamFailure, upstreamFailureStatus } from '../upstream-errors.ts';
import { downstreamHeaders } from './headers.ts';

/** What a reply updates on the exchange. */
export interface Replied {
  status: number;
  responseBytes: number;
  readonly grpc: boolean;
}

/** A text/plain reply of Sluice's own. */
export function plainReply(status: number, text: string): LocalReply {
  return { status, headers: new HeaderMap([[':status', String(status)], ['content-type', 'text/plain']]), body: Buffer.from(text), details: 'sluice', filter: '' };
}

/** Sends a filter's local reply or reset; false when the outcome says go on. */
export function finish(out: Outcome, res: DownstreamResponse, exchange: Replied): boolean {
  if (out.kind === 'continue') return false;
  if (out.kind === 'reset') {
    resetResponse(res);
    return true;
  }
  writeReply(res, out.reply, exchange);
  return true;
}

/** Writes a whole reply (or resets when the client already has response headers). */
export function writeReply(res: DownstreamResponse, reply: LocalReply, exchange: Replied): void {
  if (res.headersSent) return void resetResponse(res);
  if (exchange.grpc) return writeGrpcReply(res, reply, exchange);
  exchange.status = reply.status;
  const headers = downstreamHeaders(reply.headers, 'content-length');
  if (bodiless(reply.status)) {
    // RFC 9110: 1xx, 204 and 304 have no body, and 1xx and 204 no content-length either; a body a
    // direct response or filter gave one is dropped (content-length of a 304 would describe a
    // representation Sluice does not have).
    exchange.responseBytes = 0;
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  exchange.responseBytes = reply.body.byteLength;
  headers.push('content-length', String(reply.body.byteLength));
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}

/** Statuses whose responses never have a body (RFC 9110 §6.4.1). */
export function bodiless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/**
 * A reply to a gRPC request is a gRPC status, as gRPC clients expect: HTTP 200 with grpc-status
 * (mapped from the HTTP status as gRPC specifies, unless the reply names one) and grpc-message,
 * and no body ("trailers-only").
 */
function writeGrpcReply(res: DownstreamResponse, reply: LocalReply, exchange: Replied): void {
  exchange.status = 200;
  exchange.responseBytes = 0;
  const headers: string[] = [];
  const given = downstreamHeaders(reply.headers, 'content-length');
  for (let i = 0; i < given.length; i += 2) {
    if (given[i] !== 'content-type' && given[i] !== 'grpc-status' && given[i] !== 'grpc-message') headers.push(given[i]!, given[i + 1]!);
  }
  const message = Buffer.from(reply.body).toString('utf8').trim();
  headers.push('content-type', 'application/grpc', 'grpc-status', reply.headers.get('grpc-status') ?? String(grpcStatusOf(reply.status)), 'grpc-message', grpcPercentEncode(message));
  endWithHeaders(res, 200, headers);
}

/** grpc-message's encoding: bytes outside printable ASCII, and "%", as %XX of their UTF-8. */
function grpcPercentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** gRPC's mapping of HTTP statuses to gRPC status codes. */
function grpcStatusOf(http: number): number {
  switch (http) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** The local reply for a failed upstream request: its status by class, a text that says what to check. */
export function upstreamFailureReply(error: unknown, cluster: string, address: string): LocalReply {
  const kind = classifyUpstreamFailure(error);
  const e = error as { code?: string; message?: string } | undefined;
  const status = upstreamFailureStatus(kind);
  if (kind === 'SLUICE_ERR_UPSTREAM_TIMEOUT') return plainReply(status, `sluice: upstream ${address} of cluster "${cluster}" timed out: ${e?.message}\n`);
  if (e?.code?.startsWith('SLUICE_ERR_TUNNEL_')) return plainReply(status, `sluice: ${address} is a pod on another node and the tunnel to it failed (${e.code}): ${e.message}\n`);
  if (kind === 'SLUICE_ERR_UPSTREAM_CONNECT') return plainReply(status, `sluice: upstream connect error to ${address} of cluster "${cluster}" (${e?.code}); is the service running and listening there?\n`);
  return plainReply(status, `sluice: upstream ${address} of cluster "${cluster}" failed: ${e?.code ?? ''} ${e?.message ?? String(error)}\n`);
}
