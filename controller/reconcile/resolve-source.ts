// A WasmFilter's module bytes: from its ConfigMap (read through the API), or through
// fetchModule (controller/source/) with the imagePullSecret's credentials for the registry host.

import { createHash } from 'node:crypto';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { WasmFilterSpec } from '../crd/index.ts';
import { ControllerError } from '../errors.ts';
import { fetchModule } from '../source/index.ts';

/** fetchModule's options ({cacheDir, signal, allowInsecure}: WASMFILTER.md), named from its signature. */
export type FetchOptions = NonNullable<Parameters<typeof fetchModule>[1]>;

export interface ResolvedModule {
  bytes: Uint8Array;
  digest: string;
}

const status = (error: unknown): number | undefined => (error as { code?: unknown }).code as number | undefined;

export async function resolveModule(core: CoreV1Api, namespace: string, spec: WasmFilterSpec, fetchOptions: FetchOptions): Promise<ResolvedModule> {
  if (spec.configMap) {
    const { name, key } = spec.configMap;
    let cm;
    try {
      cm = await core.readNamespacedConfigMap({ name, namespace });
    } catch (error) {
      if (status(error) === 404) {
        throw new ControllerError('SLUICE_ERR_FILTER_CONFIGMAP', `ConfigMap ${namespace}/${name} not found; create it with \`kubectl create configmap ${name} -n ${namespace} --from-file=${key}=filter.wasm\``);
      }
      throw error;
    }
    const b64 = cm.binaryData?.[key];
    if (b64 === undefined) {
      const has = [...Object.keys(cm.binaryData ?? {}), ...Object.keys(cm.data ?? {}).map((k) => `${k} (data, text)`)];
      const inData = cm.data?.[key] !== undefined ? ` (${key} is under data, as text; a module must be binaryData: use --from-file)` : '';
      throw new ControllerError('SLUICE_ERR_FILTER_CONFIGMAP', `ConfigMap ${namespace}/${name} has no binaryData key "${key}"${inData}; it has: ${has.join(', ') || 'nothing'}`);
    }
    const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
    const hex = createHash('sha256').update(bytes).digest('hex');
    if (spec.sha256 && spec.sha256 !== hex) {
      throw new ControllerError('SLUICE_ERR_SOURCE_DIGEST', `ConfigMap ${namespace}/${name} key ${key}: the module's sha256 is ${hex}, the WasmFilter says ${spec.sha256}; fix spec.sha256 or the ConfigMap`);
    }
    return { bytes, digest: `sha256:${hex}` };
  }
  const url = spec.url!;
  const auth = spec.imagePullSecret ? await pullSecretAuth(core, namespace, spec.imagePullSecret, url) : undefined;
  return fetchModule({ url, sha256: spec.sha256, pullPolicy: spec.imagePullPolicy, auth }, fetchOptions);
}

/** The registry host of an oci:// (or http[s]://) url. */
export function registryHost(url: string): string {
  return url.replace(/^[a-z]+:\/\//, '').split('/')[0]!;
}

/** Credentials for `url`'s registry from a kubernetes.io/dockerconfigjson Secret. */
export async function pullSecretAuth(core: CoreV1Api, namespace: string, secretName: string, url: string): Promise<{ username: string; password: string }> {
  const host = registryHost(url);
  let secret;
  try {
    secret = await core.readNamespacedSecret({ name: secretName, namespace });
  } catch (error) {
    if (status(error) === 404) {
      throw new ControllerError('SLUICE_ERR_FILTER_PULL_SECRET', `imagePullSecret ${namespace}/${secretName} not found; create it with \`kubectl create secret docker-registry ${secretName} -n ${namespace} --docker-server=${host} --docker-username=... --docker-password=...\``);
    }
    throw error;
  }
  const raw = secret.data?.['.dockerconfigjson'];
  if (!raw) throw new ControllerError('SLUICE_ERR_FILTER_PULL_SECRET', `Secret ${namespace}/${secretName} has no .dockerconfigjson; it must be of type kubernetes.io/dockerconfigjson (kubectl create secret docker-registry)`);
  let config: { auths?: Record<string, { username?: string; password?: string; auth?: string }> };
  try {
    config = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
  } catch {
    throw new ControllerError('SLUICE_ERR_FILTER_PULL_SECRET', `Secret ${namespace}/${secretName}: .dockerconfigjson is not JSON`);
  }
  const auths = config.auths ?? {};
  const entry = Object.entries(auths).find(([k]) => registryHost(k) === host)?.[1];
  if (!entry) throw new ControllerError('SLUICE_ERR_FILTER_PULL_SECRET', `Secret ${namespace}/${secretName} has no credentials for ${host} (it has: ${Object.keys(auths).join(', ') || 'none'})`);
  if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  throw new ControllerError('SLUICE_ERR_FILTER_PULL_SECRET', `Secret ${namespace}/${secretName}: the entry for ${host} has neither username/password nor auth`);
}
