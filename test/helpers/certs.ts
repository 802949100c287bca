// Test certificates made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and
// localhost, and client certificates carrying a SPIFFE ID as their URI SAN (as mesh workloads do).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type Implementation } from 'ava';
import { skipUnless } from './skip-unless.ts';

export interface TestPki {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  /** PEM text of a client certificate and key with `spiffe` as URI SAN. */
  client(spiffe: string): { cert: string; key: string };
  ca: string;
}

export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A test that needs certificates: without the openssl CLI it is skipped, its title saying why. */
export function tlsTest(title: string, fn: Implementation<[]>): void {
  skipUnless(hasOpenssl() ? undefined : 'the openssl CLI makes the certificates; apt-get install openssl', test)(title, fn);
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pki-'));
  const at = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=sluice test CA', '-keyout', at('ca.key'), '-out', at('ca.pem'));
  const issue = (name: string, subject: string, san: string, usage: string) => {
    writeFileSync(at(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', subject, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`));
    openssl('x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', at(`${name}.ext`), '-out', at(`${name}.pem`));
  };
  issue('server', '/CN=localhost', 'DNS:localhost,IP:127.0.0.1', 'serverAuth');
  let n = 0;
  return {
    dir,
    caFile: at('ca.pem'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    ca: readFileSync(at('ca.pem'), 'utf8'),
    client: (spiffe: string) => {
      const name = `client-${n++}`;
      issue(name, '/O=sluice test/CN=workload', `URI:${spiffe}`, 'clientAuth');
      return { cert: readFileSync(at(`${name}.pem`), 'utf8'), key: readFileSync(at(`${name}.key`), 'utf8') };
    },
  };
}
