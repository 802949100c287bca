// Module sources: where a WasmFilter's module comes from (OCI registries, https servers), fetched,
// verified by sha256 and cached on disk by digest. The reconciler calls fetchModule; `sluice push`
// calls pushModule.

import { ControllerError } from '../errors.ts';
import { ModuleCache } from './cache.ts';
import { fetchHttpsModule } from './https.ts';
import { pullModule, type PullPolicy } from './oci.ts';
import type { RegistryAuth } from './registry-client.ts';

export { ModuleCache } from './cache.ts';
export { pullModule, pushModule, WASM_MEDIA_TYPES, type PullPolicy, type PushOptions, type PushedModule } from './oci.ts';
export { parseOciReference, formatOciReference, isLoopbackHost, type OciReference } from './reference.ts';
export { RegistryClient, MEDIA_TYPES, type RegistryAuth } from './registry-client.ts';
export { sha256Digest } from './http.ts';
export { readTar, writeTar } from './tar.ts';

export interface ModuleSource {
  /** `oci://registry/repo:tag`, `oci://registry/repo@sha256:<hex>`, `https://host/path.wasm` (`http://` for loopback). */
  url: string;
  /** 64 lower-case hex of the module bytes: required for http(s) urls, checked when given for OCI. */
  sha256?: string;
  pullPolicy?: PullPolicy;
  auth?: RegistryAuth;
}

export interface FetchOptions {
  /** Folder of the content-addressed module cache; without it nothing is cached. */
  cacheDir?: string;
  signal?: AbortSignal;
  /** Plain-http registries and module servers beyond loopback (for tests and labs). */
  allowInsecure?: boolean;
}

export interface FetchedModule {
  bytes: Uint8Array;
  /** `sha256:<hex>` of the module bytes. */
  digest: string;
  /** For OCI sources: the manifest digest the url resolved to. */
  manifestDigest?: string;
}

const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

/** Fetches, verifies and caches the module a source names; errors are ControllerErrors (SLUICE_ERR_SOURCE_*). */
export async function fetchModule(src: ModuleSource, opts: FetchOptions = {}): Promise<FetchedModule> {
  const sha256 = src.sha256?.replace(/^sha256:/, '');
  if (sha256 !== undefined && !/^[a-f0-9]{64}$/.test(sha256)) {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `sha256 ${JSON.stringify(src.sha256)} is not 64 lower-case hex digits (as \`sha256sum\` prints)`);
  }
  if (src.pullPolicy !== undefined && src.pullPolicy !== 'IfNotPresent' && src.pullPolicy !== 'Always') {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `imagePullPolicy ${JSON.stringify(src.pullPolicy)} is not IfNotPresent or Always`);
  }
  const cache = opts.cacheDir ? new ModuleCache(opts.cacheDir) : undefined;
  const common = { signal: opts.signal, allowInsecure: opts.allowInsecure, cache, pullPolicy: src.pullPolicy };
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(src.url)?.[1]?.toLowerCase();
  let fetched: FetchedModule;
  if (scheme === 'oci') {
    fetched = await pullModule(src.url, { ...common, auth: src.auth });
    if (sha256 !== undefined && fetched.digest !== `sha256:${sha256}`) {
      throw new ControllerError(
        'SLUICE_ERR_SOURCE_DIGEST',
        `the module at ${src.url} has ${fetched.digest}, not the sha256 ${sha256} the WasmFilter names: if the tag moved on purpose, update spec.sha256 (or pin the url by digest)`,
      );
    }
  } else if (scheme === 'https' || scheme === 'http') {
    fetched = await fetchHttpsModule(src.url, sha256, common);
  } else {
    throw new ControllerError('SLUICE_ERR_SOURCE_URL', `module url ${JSON.stringify(src.url)} has ${scheme ? `scheme ${scheme}://` : 'no scheme'}: use oci://registry/repo:tag, oci://registry/repo@sha256:<hex> or https://host/path.wasm`);
  }
  if (!WASM_MAGIC.every((b, i) => fetched.bytes[i] === b)) {
    const head = Buffer.from(fetched.bytes.subarray(0, 8)).toString('hex');
    throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `the module at ${src.url} is not WebAssembly (it starts with 0x${head || '(nothing)'}, not \\0asm): point the url at a compiled .wasm`);
  }
  return fetched;
}
