// Modules from web servers: `https://` (and `http://` to loopback, or anywhere with
// allowInsecure) fetched and checked against the sha256 the WasmFilter names, which is required:
// a URL alone does not pin what it serves.

import { ControllerError } from '../errors.ts';
import type { ModuleCache } from './cache.ts';
import type { PullPolicy } from './oci.ts';
import { MAX_BLOB_BYTES, readBody, send, sha256Hex } from './http.ts';
import { isLoopbackHost } from './reference.ts';

export interface HttpsOptions {
  allowInsecure?: boolean;
  signal?: AbortSignal;
  cache?: ModuleCache;
  pullPolicy?: PullPolicy;
}

/** Fetches `url` and checks that its bytes hash to `sha256` (64 lower-case hex). */
export async function fetchHttpsModule(url: string, sha256: string | undefined, opts: HttpsOptions = {}): Promise<{ bytes: Uint8Array; digest: string }> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `invalid module url ${JSON.stringify(url)}: expected https://host/path.wasm`);
  }
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (parsed.protocol === 'http:' && !opts.allowInsecure && !isLoopbackHost(host)) {
    throw new ControllerError(
      'SLUICE_ERR_SOURCE_URL',
      `module url ${url} uses plain http to ${parsed.host}: use https:// (plain http is accepted only for loopback addresses, or when the controller is set to allow insecure sources)`,
    );
  }
  if (parsed.username || parsed.password) {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `module url ${parsed.protocol}//${parsed.host}${parsed.pathname} carries credentials: https sources are fetched without credentials; publish the module in an OCI registry and use imagePullSecret`);
  }
  if (!sha256) {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `module url ${url} has no sha256: an ${parsed.protocol.slice(0, -1)} source needs spec.sha256 (64 lower-case hex, e.g. from \`sha256sum filter.wasm\`)`);
  }
  if (opts.cache && (opts.pullPolicy ?? 'IfNotPresent') === 'IfNotPresent') {
    const bytes = await opts.cache.getModule(sha256);
    if (bytes) return { bytes, digest: `sha256:${sha256}` };
  }
  const what = `module ${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  const res = await send(url, `the module server`, { signal: opts.signal });
  if (res.status !== 200) {
    await res.body?.cancel();
    if (res.status === 404 || res.status === 410) {
      throw new ControllerError('SLUICE_ERR_SOURCE_NOT_FOUND', `${parsed.host} answered ${res.status} for ${what}: check the url`);
    }
    if (res.status === 401 || res.status === 403) {
      throw new ControllerError('SLUICE_ERR_SOURCE_AUTH', `${parsed.host} answered ${res.status} for ${what}: https sources are fetched without credentials; make the module public or publish it in an OCI registry and use imagePullSecret`);
    }
    throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `${parsed.host} answered ${res.status} for ${what}: ${res.status >= 500 ? 'the server is failing; it is retried' : 'check the url'}`);
  }
  const bytes = await readBody(res, MAX_BLOB_BYTES, what);
  const actual = sha256Hex(bytes);
  if (actual !== sha256) {
    throw new ControllerError(
      'SLUICE_ERR_SOURCE_DIGEST',
      `${what} has sha256 ${actual}, not the ${sha256} the WasmFilter names: if the module changed on purpose, update spec.sha256; otherwise the server is not serving the module you pinned`,
    );
  }
  if (opts.cache) await opts.cache.putModule(bytes);
  return { bytes, digest: `sha256:${actual}` };
}
