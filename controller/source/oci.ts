// Wasm modules in OCI registries: pulled in either layout Istio accepts (the Wasm artifact, whose
// layer is the module, or an image whose layer is a tar holding `plugin.wasm` or a single .wasm
// file), through an image index when there is one, with the cache answering when the pull policy
// allows; and pushed as the Wasm artifact.

import { ControllerError } from '../errors.ts';
import type { ModuleCache } from './cache.ts';
import { sha256Digest } from './http.ts';
import { formatOciReference, parseOciReference, type OciReference } from './reference.ts';
import { MEDIA_TYPES, RegistryClient, type FetchedManifest, type RegistryAuth, type RegistryClientOptions } from './registry-client.ts';
import { readTar } from './tar.ts';

/** The Wasm artifact's media types (Istio's, after solo.io's Wasm image spec). */
export const WASM_MEDIA_TYPES = {
  config: 'application/vnd.module.wasm.config.v1+json',
  layer: 'application/vnd.module.wasm.content.layer.v1+wasm',
} as const;

/** Layer types whose blob is the module itself: Istio's, and the CNCF Wasm OCI artifact's. */
const MODULE_LAYERS = new Set<string>([WASM_MEDIA_TYPES.layer, 'application/wasm']);
/** Image layers: tar archives, gzip-compressed or not. */
const TAR_LAYERS = new Set<string>([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
]);

export type PullPolicy = 'IfNotPresent' | 'Always';

export interface PullOptions {
  auth?: RegistryAuth;
  allowInsecure?: boolean;
  signal?: AbortSignal;
  cache?: ModuleCache;
  pullPolicy?: PullPolicy;
}

export interface PulledModule {
  bytes: Uint8Array;
  /** sha256 of the module bytes. */
  digest: string;
  /** The manifest (or index) digest the reference resolved to. */
  manifestDigest: string;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}

interface Manifest {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

const tagKey = (ref: OciReference) => `tag ${ref.registry}/${ref.repository}:${ref.tag}`;
const manifestKey = (digest: string) => `manifest ${digest}`;

function parseManifest(manifest: FetchedManifest, where: string): Manifest {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(manifest.bytes)) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Manifest;
  } catch {
    // reported below
  }
  throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: the manifest is not a JSON object`);
}

function isIndex(mediaType: string, m: Manifest): boolean {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList || (!m.layers && Array.isArray(m.manifests));
}

/** From an image index: the Wasm entry, else linux/amd64, else the only entry. */
function pickFromIndex(index: Manifest, where: string): Descriptor {
  const entries = (index.manifests ?? []).filter((d) => typeof d.digest === 'string');
  const pick =
    entries.find((d) => d.platform?.architecture === 'wasm') ??
    entries.find((d) => d.platform?.os === 'linux' && d.platform?.architecture === 'amd64') ??
    (entries.length === 1 ? entries[0] : undefined);
  if (!pick) {
    const platforms = entries.map((d) => `${d.platform?.os ?? '?'}/${d.platform?.architecture ?? '?'}`).join(', ') || 'none';
    throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where} is an image index with no wasm or linux/amd64 entry (it has: ${platforms}): point the url at one manifest by its digest`);
  }
  return pick;
}

function checkDescriptor(d: Descriptor, where: string): asserts d is Descriptor & { digest: string } {
  if (typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest)) {
    throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: a layer's digest ${JSON.stringify(d.digest)} is not sha256:<64 hex> (Sluice verifies sha256 digests only)`);
  }
}

/** The module out of an image layer: `plugin.wasm` anywhere in it, else its only .wasm file. */
function moduleFromTar(layer: Uint8Array, where: string): Uint8Array {
  let files;
  try {
    files = readTar(layer);
  } catch (error) {
    throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: the image layer is not a readable tar archive (${(error as Error).message})`, { cause: error });
  }
  const wasm = files.filter((f) => f.name.endsWith('.wasm') && !f.name.split('/').pop()!.startsWith('.wh.'));
  const plugin = wasm.find((f) => f.name === 'plugin.wasm' || f.name.endsWith('/plugin.wasm'));
  if (plugin) return plugin.data;
  if (wasm.length === 1) return wasm[0].data;
  throw new ControllerError(
    'SLUICE_ERR_SOURCE_FORMAT',
    wasm.length === 0
      ? `${where}: the image layer holds no .wasm file (it has ${files.length} files): put the module in the image as plugin.wasm, or push it as a Wasm artifact with \`sluice push\``
      : `${where}: the image layer holds ${wasm.length} .wasm files (${wasm.map((f) => f.name).join(', ')}) and none is plugin.wasm: name the module plugin.wasm`,
  );
}

async function extractModule(client: RegistryClient, ref: OciReference, manifest: FetchedManifest, where: string): Promise<Uint8Array> {
  let m = parseManifest(manifest, where);
  let mediaType = manifest.mediaType;
  if (isIndex(mediaType, m)) {
    const entry = pickFromIndex(m, where);
    const child = await client.getManifest(ref.repository, entry.digest!);
    m = parseManifest(child, where);
    mediaType = child.mediaType;
    if (isIndex(mediaType, m)) throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: an image index inside an image index is not supported; point the url at a manifest`);
  }
  const layers = Array.isArray(m.layers) ? m.layers : [];
  if (layers.length === 0) throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: the manifest (${mediaType || 'no media type'}) has no layers, so no module`);
  const moduleLayers = layers.filter((l) => MODULE_LAYERS.has(l.mediaType ?? ''));
  if (moduleLayers.length > 1) throw new ControllerError('SLUICE_ERR_SOURCE_FORMAT', `${where}: the artifact has ${moduleLayers.length} Wasm layers; Sluice expects exactly one`);
  if (moduleLayers.length === 1) {
    const layer = moduleLayers[0];
    checkDescriptor(layer, where);
    return client.getBlob(ref.repository, layer.digest, layer.size);
  }
  // An image: as Istio, the module is in the last layer.
  const last = layers[layers.length - 1];
  if (!TAR_LAYERS.has(last.mediaType ?? '')) {
    throw new ControllerError(
      'SLUICE_ERR_SOURCE_FORMAT',
      `${where}: no layer is a Wasm module (${WASM_MEDIA_TYPES.layer}) and the last layer's type ${JSON.stringify(last.mediaType)} is not a tar archive: push the module with \`sluice push\`, or as an image whose layer holds plugin.wasm`,
    );
  }
  checkDescriptor(last, where);
  return moduleFromTar(await client.getBlob(ref.repository, last.digest, last.size), where);
}

/** Pulls the module `url` names (`oci://registry/repo:tag` or `…@sha256:<hex>`). */
export async function pullModule(url: string, opts: PullOptions = {}): Promise<PulledModule> {
  const ref = parseOciReference(url);
  const where = `oci://${formatOciReference(ref)}`;
  const cache = opts.cache;
  const policy = opts.pullPolicy ?? 'IfNotPresent';
  if (cache && policy === 'IfNotPresent') {
    const manifestDigest = ref.digest ?? (await cache.getRef(tagKey(ref)));
    const moduleDigest = manifestDigest && (await cache.getRef(manifestKey(manifestDigest)));
    const bytes = moduleDigest && (await cache.getModule(moduleDigest));
    if (bytes && manifestDigest && moduleDigest) return { bytes, digest: moduleDigest, manifestDigest };
  }
  const client = new RegistryClient(ref.apiHost, { auth: opts.auth, allowInsecure: opts.allowInsecure, signal: opts.signal });
  const manifest = await client.getManifest(ref.repository, ref.digest ?? ref.tag!);
  if (cache) {
    // Always asks the registry for the manifest, but blobs already cached by digest are not fetched again.
    const moduleDigest = await cache.getRef(manifestKey(manifest.digest));
    const bytes = moduleDigest && (await cache.getModule(moduleDigest));
    if (bytes && moduleDigest) {
      if (!ref.digest) await cache.putRef(tagKey(ref), manifest.digest);
      return { bytes, digest: moduleDigest, manifestDigest: manifest.digest };
    }
  }
  const bytes = await extractModule(client, ref, manifest, where);
  const digest = sha256Digest(bytes);
  if (cache) {
    await cache.putModule(bytes);
    await cache.putRef(manifestKey(manifest.digest), digest);
    if (!ref.digest) await cache.putRef(tagKey(ref), manifest.digest);
  }
  return { bytes, digest, manifestDigest: manifest.digest };
}

export interface PushOptions extends Pick<RegistryClientOptions, 'auth' | 'plainHttp' | 'allowInsecure' | 'signal' | 'authHint'> {
  /** Written into the artifact's config blob (e.g. the filter's root id). */
  config?: Record<string, unknown>;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export interface PushedModule {
  /** `registry/repository:tag` as pushed. */
  reference: string;
  manifestDigest: string;
  /** sha256 of the module bytes (the layer's digest). */
  digest: string;
}

/**
 * Pushes `module` as a Wasm artifact: the config blob, the module as the one layer, then an OCI
 * image manifest (with artifactType) under the reference's tag.
 */
export async function pushModule(reference: string, module: Uint8Array, opts: PushOptions = {}): Promise<PushedModule> {
  const ref = parseOciReference(reference);
  if (ref.digest) throw new ControllerError('SLUICE_ERR_SOURCE_URL', `push to a tag, not a digest: ${reference} (the digest is printed after the push)`);
  const client = new RegistryClient(ref.apiHost, opts);
  const config = Buffer.from(JSON.stringify(opts.config ?? {}));
  const configDigest = await client.pushBlob(ref.repository, config);
  const digest = await client.pushBlob(ref.repository, module);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    artifactType: WASM_MEDIA_TYPES.config,
    config: { mediaType: WASM_MEDIA_TYPES.config, digest: configDigest, size: config.byteLength },
    layers: [{ mediaType: WASM_MEDIA_TYPES.layer, digest, size: module.byteLength, annotations: { 'org.opencontainers.image.title': 'plugin.wasm' } }],
    ...(opts.annotations && Object.keys(opts.annotations).length > 0 ? { annotations: opts.annotations } : {}),
  };
  const manifestDigest = await client.putManifest(ref.repository, ref.tag!, Buffer.from(JSON.stringify(manifest)), MEDIA_TYPES.ociManifest);
  return { reference: formatOciReference(ref), manifestDigest, digest };
}
