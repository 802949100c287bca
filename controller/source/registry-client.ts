// A small client for the OCI distribution API (v2): manifests and blobs, pulled and pushed, with
// the registry's own authentication: a `WWW-Authenticate` challenge answered with Basic
// credentials, or with a Bearer token fetched from the challenge's realm (with Basic credentials
// when given, anonymously otherwise). Every blob is checked against its digest.

import type { Response } from 'undici';
import { ControllerError } from '../errors.ts';
import { MAX_BLOB_BYTES, MAX_MANIFEST_BYTES, isPlainHttpAnswer, readBody, send, sha256Digest, type RequestOptions } from './http.ts';
import { hostName, isLoopbackHost } from './reference.ts';

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  auth?: RegistryAuth;
  /** Talk plain HTTP from the first request (`sluice push --plain-http`). */
  plainHttp?: boolean;
  /**
   * Fall back to plain HTTP when the registry answers an https request in plain text (as Docker
   * and Istio do). Always allowed for loopback registries.
   */
  allowInsecure?: boolean;
  signal?: AbortSignal;
  /** What to check when credentials are refused (default: the WasmFilter's imagePullSecret). */
  authHint?: string;
}

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(', ');
/** The key under which accepted Basic credentials are kept (they are not per scope). */
const BASIC = 'basic';

export interface FetchedManifest {
  bytes: Uint8Array;
  /** From the Content-Type header, else the manifest's own mediaType field. */
  mediaType: string;
  /** sha256 of the bytes as received. */
  digest: string;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (one challenge; registries send one). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const param = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  let p: RegExpExecArray | null;
  while ((p = param.exec(m[2])) !== null) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1].toLowerCase(), params };
}

function basic(auth: RegistryAuth): string {
  return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
}

/** The registry's own explanation from an error body: `MANIFEST_UNKNOWN: manifest unknown`. */
async function registryErrors(res: Response): Promise<string> {
  try {
    const text = new TextDecoder().decode(await readBody(res, 64 * 1024, 'error body'));
    try {
      const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      if (Array.isArray(body.errors) && body.errors.length > 0) {
        return body.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
      }
    } catch {
      // not JSON: the text itself, shortened
    }
    return text.trim().slice(0, 200);
  } catch {
    return '';
  }
}

export class RegistryClient {
  readonly host: string;
  #scheme: 'https' | 'http';
  readonly #mayFallBack: boolean;
  readonly #opts: RegistryClientOptions;
  /** Authorization header values that worked, by scope. */
  readonly #authorization = new Map<string, string>();

  constructor(host: string, opts: RegistryClientOptions = {}) {
    this.host = host;
    this.#opts = opts;
    this.#scheme = opts.plainHttp ? 'http' : 'https';
    this.#mayFallBack = !opts.plainHttp && (opts.allowInsecure === true || isLoopbackHost(hostName(host)));
  }

  get baseUrl(): string {
    return `${this.#scheme}://${this.host}`;
  }

  /** Resolves `reference` (a tag or a digest) to its manifest; a digest reference is verified. */
  async getManifest(repo: string, reference: string): Promise<FetchedManifest> {
    const what = `manifest ${repo}:${reference}`;
    const res = await this.#request(repo, 'pull', `/v2/${repo}/manifests/${reference}`, what, { headers: { accept: MANIFEST_ACCEPT } });
    if (res.status === 404) {
      const detail = await registryErrors(res);
      throw new ControllerError(
        'SLUICE_ERR_SOURCE_NOT_FOUND',
        `registry ${this.host} has no ${reference.startsWith('sha256:') ? 'manifest' : 'tag'} ${reference} in repository ${repo} (404${detail ? ` ${detail}` : ''}): check the repository and tag in the url, and that the module was pushed there`,
      );
    }
    await this.#expect(res, 200, what, 'SLUICE_ERR_SOURCE_FETCH');
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256Digest(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new ControllerError('SLUICE_ERR_SOURCE_DIGEST', `registry ${this.host} answered ${what} with content whose sha256 is ${digest}: the registry or something between is corrupting data; fetch again or use another registry`);
    }
    const headerDigest = res.headers.get('docker-content-digest');
    if (headerDigest && headerDigest.startsWith('sha256:') && headerDigest !== digest) {
      throw new ControllerError('SLUICE_ERR_SOURCE_DIGEST', `registry ${this.host} says ${what} has digest ${headerDigest} but its content hashes to ${digest}: something between Sluice and the registry changes data`);
    }
    let mediaType = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    if (!mediaType || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
      try {
        mediaType = String((JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown }).mediaType ?? '');
      } catch {
        mediaType = '';
      }
    }
    return { bytes, mediaType, digest };
  }

  /** Downloads a blob and checks its sha256 (and its size, when the manifest gave one). */
  async getBlob(repo: string, digest: string, size?: number): Promise<Uint8Array> {
    const what = `blob ${digest} of ${repo}`;
    if (size !== undefined && size > MAX_BLOB_BYTES) {
      throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${what} is ${size} bytes, more than the ${MAX_BLOB_BYTES} Sluice accepts`);
    }
    const res = await this.#request(repo, 'pull', `/v2/${repo}/blobs/${digest}`, what);
    if (res.status === 404) {
      throw new ControllerError('SLUICE_ERR_SOURCE_NOT_FOUND', `registry ${this.host} lists ${what} in the manifest but does not have it (404): push the artifact again`);
    }
    await this.#expect(res, 200, what, 'SLUICE_ERR_SOURCE_FETCH');
    const bytes = await readBody(res, MAX_BLOB_BYTES, what);
    const actual = sha256Digest(bytes);
    if (actual !== digest) {
      throw new ControllerError('SLUICE_ERR_SOURCE_DIGEST', `registry ${this.host} answered ${what} with content whose sha256 is ${actual}: the blob is corrupt in the registry or in transit; push the artifact again`);
    }
    if (size !== undefined && bytes.byteLength !== size) {
      throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${what} is ${bytes.byteLength} bytes but the manifest says ${size}: push the artifact again`);
    }
    return bytes;
  }

  /** Uploads a blob (monolithic POST then PUT) unless the registry already has it; returns its digest. */
  async pushBlob(repo: string, bytes: Uint8Array): Promise<string> {
    const digest = sha256Digest(bytes);
    const head = await this.#request(repo, 'pull,push', `/v2/${repo}/blobs/${digest}`, `blob ${digest}`, { method: 'HEAD' });
    if (head.status === 200) return digest;
    const what = `upload to ${repo}`;
    const start = await this.#request(repo, 'pull,push', `/v2/${repo}/blobs/uploads/`, what, { method: 'POST', headers: { 'content-length': '0' } });
    await this.#expect(start, 202, what, 'SLUICE_ERR_SOURCE_PUSH');
    const location = start.headers.get('location');
    if (!location) throw new ControllerError('SLUICE_ERR_SOURCE_PUSH', `registry ${this.host} started an upload to ${repo} without a Location header: it does not follow the distribution spec`);
    const url = new URL(location, this.baseUrl);
    url.searchParams.set('digest', digest);
    const put = await this.#request(repo, 'pull,push', url.href, what, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
      body: bytes,
    });
    await this.#expect(put, 201, what, 'SLUICE_ERR_SOURCE_PUSH');
    return digest;
  }

  /** Stores a manifest under `tag`; returns the manifest's digest. */
  async putManifest(repo: string, tag: string, bytes: Uint8Array, mediaType: string): Promise<string> {
    const what = `manifest ${repo}:${tag}`;
    const res = await this.#request(repo, 'pull,push', `/v2/${repo}/manifests/${tag}`, what, { method: 'PUT', headers: { 'content-type': mediaType }, body: bytes });
    await this.#expect(res, 201, what, 'SLUICE_ERR_SOURCE_PUSH');
    return sha256Digest(bytes);
  }

  async #expect(res: Response, status: number, what: string, code: 'SLUICE_ERR_SOURCE_FETCH' | 'SLUICE_ERR_SOURCE_PUSH'): Promise<void> {
    if (res.status === status) return;
    const detail = await registryErrors(res);
    const hint = code === 'SLUICE_ERR_SOURCE_PUSH' ? 'the artifact was not stored' : res.status >= 500 ? 'the registry is failing; it is retried' : 'check the url';
    throw new ControllerError(code, `registry ${this.host} answered ${res.status} for ${what}${detail ? ` (${detail})` : ''}: ${hint}`);
  }

  /**
   * Sends a request to the registry, answering an authentication challenge once. `path` is a path
   * under the registry (or an absolute URL the registry handed out, such as an upload location).
   */
  async #request(repo: string, actions: string, path: string, what: string, init: RequestOptions = {}): Promise<Response> {
    const scope = `repository:${repo}:${actions}`;
    const attempt = async (authorization?: string): Promise<Response> => {
      const headers = { ...init.headers, ...(authorization ? { authorization } : {}) };
      const url = path.startsWith('/') ? `${this.baseUrl}${path}` : path;
      try {
        return await send(url, 'the registry', { ...init, headers, signal: this.#opts.signal });
      } catch (error) {
        if (this.#scheme === 'https' && this.#mayFallBack && path.startsWith('/') && isPlainHttpAnswer((error as ControllerError).cause)) {
          this.#scheme = 'http';
          return attempt(authorization);
        }
        throw error;
      }
    };
    // Basic credentials, once accepted, hold for every repository: sent up front from then on.
    let res = await attempt(this.#authorization.get(scope) ?? this.#authorization.get(BASIC));
    if (res.status !== 401) return this.#denied(res, repo, what);
    const challenge = parseChallenge(res.headers.get('www-authenticate') ?? '');
    await res.body?.cancel();
    const authorization = await this.#answer(challenge, scope, repo, what);
    res = await attempt(authorization);
    if (res.status === 401) {
      await res.body?.cancel();
      throw this.#authError(401, repo, what);
    }
    this.#authorization.set(authorization.startsWith('Basic ') ? BASIC : scope, authorization);
    return this.#denied(res, repo, what);
  }

  async #denied(res: Response, repo: string, what: string): Promise<Response> {
    if (res.status !== 403) return res;
    await res.body?.cancel();
    throw this.#authError(403, repo, what);
  }

  #authError(status: number, repo: string, what: string): ControllerError {
    const auth = this.#opts.auth;
    const hint = this.#opts.authHint ?? "check the WasmFilter's imagePullSecret (a kubernetes.io/dockerconfigjson Secret with an entry for this registry)";
    const who =
      status === 403
        ? auth ? `user "${auth.username}" may not ${what.startsWith('upload') || what.startsWith('manifest') ? 'access' : 'read'} it` : 'anonymous access is denied'
        : auth ? `the credentials of user "${auth.username}" were refused` : 'it asks for credentials and none were given';
    return new ControllerError('SLUICE_ERR_SOURCE_AUTH', `registry ${this.host} answered ${status} for repository ${repo} (${what}): ${who}; ${hint}`);
  }

  /** The Authorization header value answering a 401's challenge. */
  async #answer(challenge: Challenge | undefined, scope: string, repo: string, what: string): Promise<string> {
    const auth = this.#opts.auth;
    if (challenge?.scheme === 'basic') {
      if (!auth) throw this.#authError(401, repo, what);
      return basic(auth);
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) {
      throw new ControllerError('SLUICE_ERR_SOURCE_AUTH', `registry ${this.host} answered 401 for repository ${repo} without a Basic or Bearer challenge Sluice can answer (WWW-Authenticate: ${challenge ? challenge.scheme : 'missing'})`);
    }
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch {
      throw new ControllerError('SLUICE_ERR_SOURCE_AUTH', `registry ${this.host} sent a Bearer challenge whose realm "${challenge.params.realm}" is not a URL`);
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', challenge.params.scope ?? scope);
    const res = await send(realm.href, `the token service of registry ${this.host}`, {
      headers: auth ? { authorization: basic(auth) } : {},
      signal: this.#opts.signal,
    });
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw this.#authError(res.status, repo, `token from ${realm.host}`);
    }
    if (res.status !== 200) {
      const detail = await registryErrors(res);
      throw new ControllerError('SLUICE_ERR_SOURCE_FETCH', `the token service of registry ${this.host} at ${realm.host} answered ${res.status}${detail ? ` (${detail})` : ''}: it is retried`);
    }
    let token: unknown;
    try {
      const body = JSON.parse(new TextDecoder().decode(await readBody(res, 1024 * 1024, 'token'))) as { token?: unknown; access_token?: unknown };
      token = body.token ?? body.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '') {
      throw new ControllerError('SLUICE_ERR_SOURCE_AUTH', `the token service of registry ${this.host} at ${realm.host} answered without a token`);
    }
    return `Bearer ${token}`;
  }
}
