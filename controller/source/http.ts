// HTTP plumbing shared by the registry client and the https source: requests with a deadline,
// bodies read with a size cap, sha256 helpers, and network failures turned into errors that name
// the address.

import { createHash } from 'node:crypto';
import { fetch, type Response } from 'undici';
import { ControllerError } from '../errors.ts';

/** Wasm modules and image layers larger than this are refused rather than held in memory. */
export const MAX_BLOB_BYTES = 256 * 1024 * 1024;
/** The distribution spec asks registries to accept manifests of at least 4 MiB; nothing we read is larger. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 60_000;

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  signal?: AbortSignal;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${sha256Hex(bytes)}`;
}

/** One request; a network failure becomes SLUICE_ERR_SOURCE_FETCH naming `what` and the address. */
export async function send(url: string, what: string, opts: RequestOptions = {}): Promise<Response> {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  try {
    return await fetch(url, { method: opts.method ?? 'GET', headers: opts.headers, body: opts.body, signal, redirect: 'follow' });
  } catch (error) {
    throw networkError(error, url, what, opts.signal);
  }
}

export function networkError(error: unknown, url: string, what: string, signal?: AbortSignal): ControllerError {
  if (signal?.aborted) return new ControllerError('SLUICE_ERR_SOURCE_FETCH', `fetching ${what} was cancelled`, { cause: error });
  const e = error as Error & { cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? (e.name === 'TimeoutError' ? `no answer in ${REQUEST_TIMEOUT_MS / 1000} s` : undefined);
  const detail = code ?? e.cause?.message ?? e.message;
  const address = new URL(url).host;
  return new ControllerError(
    'SLUICE_ERR_SOURCE_FETCH',
    `cannot reach ${what} at ${address} (${detail}): check the address, that the server is up, and that this network may reach it`,
    { cause: error },
  );
}

/** True when an https attempt failed because the other side speaks plain HTTP. */
export function isPlainHttpAnswer(error: unknown): boolean {
  const cause = (error as { cause?: { cause?: { code?: string }; code?: string } }).cause;
  const code = cause?.code ?? '';
  return code === 'EPROTO' || code.startsWith('ERR_SSL_') || code === 'ECONNRESET';
}

/** Reads the whole body, refusing more than `limit` bytes (the stream is cancelled, not drained). */
export async function readBody(res: Response, limit: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > limit) {
    await res.body?.cancel();
    throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${what} is ${declared} bytes, more than the ${limit} Sluice accepts`);
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (error) {
      const detail = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `reading ${what} broke off after ${size} bytes (${detail}): it is retried; check the server if it keeps happening`, { cause: error });
    }
    if (chunk.done) break;
    size += chunk.value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${what} is more than the ${limit} bytes Sluice accepts`);
    }
    chunks.push(chunk.value);
  }
  return Buffer.concat(chunks);
}
