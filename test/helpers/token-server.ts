// A registry token service for tests (the Docker token auth flow): on loopback, it checks Basic
// credentials (or lets anonymous users pull from `publicRepos`) and answers with a JWT signed by
// an RSA key whose self-signed certificate (made with the openssl CLI) the registry trusts. The
// token grants the scope asked for; what was asked is recorded for assertions.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file of the signing certificate: the registry's rootcertbundle. */
  certFile: string;
  /** Each token request: who asked (or 'anonymous') for what scope, and whether it was granted. */
  requests: { user: string; scope: string; granted: boolean }[];
  close(): Promise<void>;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

export async function startTokenServer(opts: { users: Record<string, string>; publicRepos?: string[] }): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-token-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=sluice-test-token-issuer'], { stdio: 'ignore' });
  const key = createPrivateKey(readFileSync(keyFile));
  const der = Buffer.from(readFileSync(certFile, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const service = 'sluice-test-registry';
  const issuer = 'sluice-test-issuer';
  const requests: TokenServer['requests'] = [];

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const scope = url.searchParams.get('scope') ?? '';
    const header = req.headers.authorization ?? '';
    let user = 'anonymous';
    if (header.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(header.slice(6), 'base64').toString().split(':');
      if (opts.users[name] !== rest.join(':')) {
        requests.push({ user: name, scope, granted: false });
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const [type, name, actions] = scope.split(':');
    if (user === 'anonymous' && !(opts.publicRepos ?? []).includes(name)) {
      requests.push({ user, scope, granted: false });
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"authentication required"}');
      return;
    }
    requests.push({ user, scope, granted: true });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuer,
      sub: user,
      aud: url.searchParams.get('service') ?? service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access: type === 'repository' ? [{ type, name, actions: user === 'anonymous' ? ['pull'] : (actions ?? '').split(',') }] : [],
    };
    const signingInput = `${b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] }))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    close: () =>
      new Promise<void>((resolve) =>
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        }),
      ),
  };
}
