// A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) started on
// 127.0.0.1 with a free port and temporary storage, plain or with htpasswd basic auth (bcrypt
// entries made by `htpasswd -B`). Installed by .ci/run; tests fail with what to install without it.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  /** The registry's stderr so far (its log). */
  log(): string;
  /** Stops the registry and waits for it to exit (storage stays until `remove`). */
  stop(): Promise<void>;
  /** Stops it and deletes its storage. */
  remove(): Promise<void>;
  dir: string;
}

const INSTALL = 'install it with `apt-get install -y docker-registry apache2-utils` (.ci/run does)';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function htpasswdLine(user: string, password: string): string {
  try {
    return execFileSync('htpasswd', ['-nbB', user, password], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new Error(`htpasswd failed (${(error as Error).message}): ${INSTALL}`);
  }
}

async function waitReady(host: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}:\n${log()}`);
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${host} within 15 s:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The registry's token auth: Bearer tokens (JWTs) from `realm`, signed by the key of the certificate in `rootCertBundle`. */
export interface TokenAuth {
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
}

/** Starts a registry; `users` turns on basic auth with these user → password pairs, `token` Bearer token auth. */
export async function startRegistry(opts: { users?: Record<string, string>; token?: TokenAuth } = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-registry-'));
  const auth = opts.users
    ? `auth:\n  htpasswd:\n    realm: sluice-test\n    path: ${join(dir, 'htpasswd')}\n`
    : opts.token
      ? `auth:\n  token:\n    realm: ${opts.token.realm}\n    service: ${opts.token.service}\n    issuer: ${opts.token.issuer}\n    rootcertbundle: ${opts.token.rootCertBundle}\n`
      : '';
  if (opts.users) {
    await writeFile(join(dir, 'htpasswd'), Object.entries(opts.users).map(([u, p]) => htpasswdLine(u, p)).join('\n') + '\n');
  }
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const config = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'storage')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
      auth,
    ].join('\n');
    await writeFile(join(dir, 'config.yml'), config);
    let child: ChildProcess;
    try {
      child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      throw new Error(`cannot start docker-registry (${(error as Error).message}): ${INSTALL}`);
    }
    let stderr = '';
    child.stderr!.on('data', (c) => (stderr += c));
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', (e) => resolve(e));
    });
    if (spawned) throw new Error(`cannot start docker-registry (${spawned.message}): ${INSTALL}`);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await waitReady(host, child, () => stderr);
    } catch (error) {
      child.kill('SIGKILL');
      await exited;
      // Another process may have taken the port between freePort() and the registry's bind.
      if (/address already in use/.test(stderr) && attempt < 3) continue;
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    };
    return {
      host,
      dir,
      log: () => stderr,
      stop,
      remove: async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}
