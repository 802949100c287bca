// Where the CA lives in the cluster: the self-signed root in Secret `sluice-ca` (created by the
// first replica to find it absent; every other replica reads the winner's), or an operator's
// intermediate in a Secret it names; and the trust bundle published in ConfigMap `sluice-ca-root`.

import type { CoreV1Api, V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { ControllerError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CertificateAuthority, type CaMaterial } from './authority.ts';

export const CA_SECRET = 'sluice-ca';
export const TRUST_BUNDLE_CONFIGMAP = 'sluice-ca-root';
export const TRUST_BUNDLE_KEY = 'root-cert.pem';

const httpStatus = (error: unknown): number | undefined => {
  const c = (error as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
};
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

function material(secret: V1Secret): CaMaterial {
  const d = secret.data ?? {};
  return { certPem: unb64(d['tls.crt']), keyPem: unb64(d['tls.key']), chainPem: unb64(d['ca.crt']) };
}

/** The controller's own root: read `namespace/sluice-ca`, or create it (on 409, another replica won: read its). */
export async function loadOrCreateRoot(core: CoreV1Api, namespace: string, log: Logger): Promise<CertificateAuthority> {
  const where = `Secret ${namespace}/${CA_SECRET}`;
  for (let attempt = 0; ; attempt++) {
    try {
      const secret = await core.readNamespacedSecret({ namespace, name: CA_SECRET });
      return await CertificateAuthority.load(material(secret), `${where} (delete it to let the controller make a new root; every workload certificate then changes)`);
    } catch (error) {
      if (httpStatus(error) !== 404 || attempt > 0) throw error;
    }
    const root = await CertificateAuthority.createRoot();
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: CA_SECRET, namespace, labels: { 'app.kubernetes.io/name': 'sluice', 'app.kubernetes.io/component': 'ca' } },
      data: { 'tls.crt': b64(root.certPem), 'tls.key': b64(root.keyPem) },
    };
    try {
      await core.createNamespacedSecret({ namespace, body });
      log.info('created the workload CA root', { secret: `${namespace}/${CA_SECRET}` });
      return await CertificateAuthority.load(root, where);
    } catch (error) {
      // Another replica created it between our read and our create: use its root (loop reads it).
      if (httpStatus(error) !== 409) throw error;
    }
  }
}

/** An operator's CA (`--ca-secret ns/name`): tls.crt, tls.key, and ca.crt the chain up to the root. */
export async function loadOperatorCa(core: CoreV1Api, ref: string): Promise<CertificateAuthority> {
  const [namespace, name] = ref.split('/') as [string, string];
  let secret: V1Secret;
  try {
    secret = await core.readNamespacedSecret({ namespace, name });
  } catch (error) {
    if (httpStatus(error) === 404) {
      throw new ControllerError('SLUICE_ERR_CA_SECRET', `--ca-secret ${ref}: no such Secret; create it with \`kubectl create secret generic ${name} -n ${namespace} --from-file=tls.crt --from-file=tls.key --from-file=ca.crt\``, { cause: error });
    }
    throw error;
  }
  const m = material(secret);
  const missing = (['tls.crt', 'tls.key', 'ca.crt'] as const).filter((k) => !secret.data?.[k]);
  if (missing.length) {
    throw new ControllerError('SLUICE_ERR_CA_SECRET', `--ca-secret ${ref}: the Secret lacks ${missing.join(', ')}; it needs tls.crt (the intermediate CA), tls.key (its key) and ca.crt (the chain up to the root)`);
  }
  return CertificateAuthority.load(m, `--ca-secret ${ref}`);
}

/** Writes the trust bundle into `namespace/sluice-ca-root` when it is absent or different. */
export async function publishTrustBundle(core: CoreV1Api, namespace: string, rootPem: string, log: Logger): Promise<void> {
  const name = TRUST_BUNDLE_CONFIGMAP;
  for (let attempt = 0; attempt < 5; attempt++) {
    let current: V1ConfigMap | undefined;
    try {
      current = await core.readNamespacedConfigMap({ namespace, name });
    } catch (error) {
      if (httpStatus(error) !== 404) throw error;
    }
    if (current?.data?.[TRUST_BUNDLE_KEY] === rootPem) return;
    try {
      if (current) {
        await core.replaceNamespacedConfigMap({ namespace, name, body: { ...current, data: { ...current.data, [TRUST_BUNDLE_KEY]: rootPem } } });
      } else {
        await core.createNamespacedConfigMap({
          namespace,
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'sluice', 'app.kubernetes.io/component': 'ca' } }, data: { [TRUST_BUNDLE_KEY]: rootPem } },
        });
      }
      log.info('published the trust bundle', { configMap: `${namespace}/${name}` });
      return;
    } catch (error) {
      // Another replica wrote meanwhile: read again and compare.
      if (httpStatus(error) !== 409) throw error;
    }
  }
  throw new ControllerError('SLUICE_ERR_CA_SECRET', `ConfigMap ${namespace}/${name} keeps changing under the controller; is another controller with a different CA writing it?`);
}
