// Workload identities for tunnel tests: a real CA (the controller's CertificateAuthority) issuing
// X509-SVIDs for keys made by the runtime's own makeKeyAndCsr, put into IdentityStores.
import * as x509 from '@peculiar/x509';
import { CertificateAuthority } from '../../controller/index.ts';
import { IdentityStore, makeKeyAndCsr } from '../../runtime/index.ts';

export const TD = 'cluster.local';
export const sid = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

export interface TestCa {
  ca: CertificateAuthority;
  /** A store holding the trust bundle and an SVID for each of `ids`. */
  store(ids: string[]): Promise<IdentityStore>;
  /** Issues `id` (or the given URIs) into `store`, replacing what it holds. */
  issue(store: IdentityStore, id: string, uris?: string[]): Promise<void>;
}

export async function testCa(): Promise<TestCa> {
  const ca = await CertificateAuthority.load(await CertificateAuthority.createRoot(), 'test root');
  const issue = async (store: IdentityStore, id: string, uris = [id]) => {
    const { keyPem, csrPem } = await makeKeyAndCsr(id);
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const publicKey = await csr.publicKey.export();
    const issued = await ca.issue({ publicKey, uris, lifetimeMs: 3600_000 });
    store.set({ spiffeId: id, keyPem, certChainPem: issued.chainPem, notAfter: issued.notAfter });
  };
  return {
    ca,
    issue,
    store: async (ids) => {
      const store = new IdentityStore();
      store.setTrustBundle(ca.trustBundle);
      for (const id of ids) await issue(store, id);
      return store;
    },
  };
}
