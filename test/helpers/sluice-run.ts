// Integration tests through `sluice run`: write a config into a temp dir, start the real CLI as a
// child process, wait for its listeners, and stop it at the end. Plus a loopback echo upstream
// that answers with what it received, the usual partner of such a test.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './fixtures.ts';

export interface SluiceProcess {
  child: ChildProcess;
  /** The config file's path (edit it to trigger a hot reload). */
  file: string;
  dir: string;
  stderr(): string;
  stdout(): string;
  exited: Promise<number | null>;
  /** The port a listener bound, by name (from its "listening" log line). */
  port(listener: string): Promise<number>;
  /** The admin port. */
  adminPort(): Promise<number>;
  /** Resolves once stderr contains `text`. */
  waitFor(text: string | RegExp, ms?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function until<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Spawns `bin/sluice.js` with `args` as an operator would. */
export function spawnSluice(args: string[], cwd = repoRoot): Omit<SluiceProcess, 'file' | 'dir' | 'port' | 'adminPort' | 'waitFor' | 'stop'> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/sluice.js'), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (c) => (stderr += c));
  child.stdout!.on('data', (c) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, stdout: () => stdout, exited };
}

/**
 * Writes `yaml` to a fresh temp dir as sluice.yaml and runs `sluice run -c` on it. Module paths in
 * the YAML may use `${repo}` for the repository root (e.g. `${repo}/build/filters/router.wasm`).
 * Use address 127.0.0.1:0 for listeners and admin; `port(name)` tells the bound port.
 */
export async function runSluice(yaml: string, extraArgs: string[] = []): Promise<SluiceProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-it-'));
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, yaml.replaceAll('${repo}', repoRoot.replace(/\/$/, '')));
  const p = spawnSluice(['run', '-c', file, ...extraArgs]);
  const waitFor = (text: string | RegExp, ms?: number) =>
    until(`"${String(text)}" in sluice's log; it said:\n${p.stderr()}`, () => {
      if (typeof text === 'string' ? p.stderr().includes(text) : text.test(p.stderr())) return true;
      if (p.child.exitCode !== null) throw new Error(`sluice exited with ${p.child.exitCode}:\n${p.stderr()}`);
      return undefined;
    }, ms).then(() => undefined);
  const port = async (listener: string) => {
    const re = new RegExp(`${listener} listening on [^:]+:(\\d+)`);
    await waitFor(re);
    return Number(re.exec(p.stderr())![1]);
  };
  return {
    ...p,
    file,
    dir,
    waitFor,
    port,
    adminPort: () => port('admin'),
    stop: async () => {
      if (p.child.exitCode === null) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface EchoUpstream {
  port: number;
  /** Every request received, in order. */
  requests: Array<{ method: string; path: string; headers: IncomingMessage['headers']; body: string }>;
  close(): Promise<void>;
}

/**
 * A loopback HTTP/1.1 upstream. By default it answers 200 with a JSON echo of the request
 * ({ name, method, path, headers, body }); pass `handler` to answer otherwise.
 */
export async function echoUpstream(name = 'echo', handler?: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<EchoUpstream> {
  const requests: EchoUpstream['requests'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method!, path: req.url!, headers: req.headers, body });
      if (handler) return handler(req, res, body);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name, method: req.method, path: req.url, headers: req.headers, body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
