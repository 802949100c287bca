// TEMPORARY: a stand-in for the module sources of the OCI helper (branch i9-oci), with the same
// interface (WASMFILTER.md): only http:// and https:// urls with sha256, fetched and checked.
// oci:// is refused. Replaced at merge by controller/source/{oci,https,cache,index}.ts.

import { createHash } from 'node:crypto';
import { ControllerError } from '../errors.ts';

export interface ModuleSource {
  url: string;
  sha256?: string;
  pullPolicy?: 'IfNotPresent' | 'Always';
  auth?: { username: string; password: string };
}

export interface FetchOptions {
  cacheDir?: string;
  signal?: AbortSignal;
  allowInsecure?: boolean;
}

export async function fetchModule(src: ModuleSource, opts: FetchOptions = {}): Promise<{ bytes: Uint8Array; digest: string }> {
  const url = src.url;
  if (!/^https?:\/\//.test(url)) throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `${url}: only http:// and https:// sources are supported by this build`);
  let res: Response;
  try {
    res = await fetch(url, { signal: opts.signal ?? AbortSignal.timeout(30_000) });
  } catch (error) {
    throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `${url}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}; check the host is reachable from the controller`, { cause: error });
  }
  if (res.status === 404) throw new ControllerError('SLUICE_ERR_SOURCE_NOT_FOUND', `${url}: 404 Not Found; check the url`);
  if (res.status === 401 || res.status === 403) throw new ControllerError('SLUICE_ERR_SOURCE_AUTH', `${url}: ${res.status}; the server wants credentials`);
  if (!res.ok) throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `${url}: HTTP ${res.status}; retrying`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const hex = createHash('sha256').update(bytes).digest('hex');
  if (src.sha256 && src.sha256 !== hex) {
    throw new ControllerError('SLUICE_ERR_SOURCE_DIGEST', `${url}: the module's sha256 is ${hex}, the WasmFilter says ${src.sha256}; fix spec.sha256 or the file`);
  }
  return { bytes, digest: `sha256:${hex}` };
}
