// A real Kubernetes control plane for tests: etcd and kube-apiserver (built by scripts/build-k8s.sh)
// on loopback with free ports and temporary data, RBAC on, service-account tokens signed with a
// key made for this run, an admin kubeconfig for the real kubectl, and tokens for any ServiceAccount.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './fixtures.ts';
import { freePort } from './free-port.ts';

/** The directory scripts/build-k8s.sh builds into, from the same variables and defaults it uses. */
export function k8sBinDir(): string {
  const script = readFileSync(join(repoRoot, 'scripts/build-k8s.sh'), 'utf8');
  const dflt = (name: string) => new RegExp(`\\$\\{${name}:-([^}]+)\\}`).exec(script)![1];
  const k8s = process.env.SLUICE_K8S_VERSION || dflt('SLUICE_K8S_VERSION');
  const etcd = process.env.SLUICE_ETCD_VERSION || dflt('SLUICE_ETCD_VERSION');
  const cache = process.env.SLUICE_K8S_CACHE || join(homedir(), '.cache/sluice/k8s');
  return join(cache, `${k8s}-etcd-${etcd}`);
}

/** Paths of the binaries; throws saying how to build them when one is missing. */
export function k8sBinaries(): { etcd: string; apiserver: string; kubectl: string } {
  const dir = k8sBinDir();
  const bins = { etcd: join(dir, 'etcd'), apiserver: join(dir, 'kube-apiserver'), kubectl: join(dir, 'kubectl') };
  const missing = Object.values(bins).filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(`Kubernetes test binaries are missing (${missing.join(', ')}): run scripts/build-k8s.sh (needs Go; npm test runs it first)`);
  }
  return bins;
}

export function hasK8sBinaries(): boolean {
  try {
    k8sBinaries();
    return true;
  } catch {
    return false;
  }
}

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface KubeCluster {
  dir: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** An admin kubeconfig file (system:masters). */
  kubeconfig: string;
  adminToken: string;
  kubectlPath: string;
  /** Runs the real kubectl as admin (or with `kubeconfig`); never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string }): Promise<KubectlResult>;
  /** Like kubectl, but throws with its stderr when it fails; returns stdout. */
  kubectlOk(args: string[], opts?: { input?: string; kubeconfig?: string }): Promise<string>;
  /** A token for a ServiceAccount through the TokenRequest API (`kubectl create token`). */
  token(namespace: string, serviceAccount: string, durationSeconds?: number): Promise<string>;
  /** Writes a kubeconfig that authenticates with `token`; returns its path. */
  kubeconfigFor(token: string, name: string): Promise<string>;
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  stopEtcd(): Promise<void>;
  startEtcd(): Promise<void>;
  /** Stops both and removes the temporary data. */
  close(): Promise<void>;
  /** The API server's and etcd's output so far (for failure messages). */
  logs(): string;
}


interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  output: string[];
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

function start(bin: string, args: string[], name: string, log: string[]): Proc {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const output = log;
  const keep = (c: Buffer) => {
    output.push(`[${name}] ${c.toString('utf8')}`);
    if (output.length > 400) output.splice(0, output.length - 400);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      running.delete(child);
      resolve();
    }),
  );
  return { child, exited, output };
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 5000);
  await p.exited;
  clearTimeout(timer);
}

function run(bin: string, args: string[], input?: string): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Starts etcd and kube-apiserver and waits until the API server is ready. */
export async function startKube(): Promise<KubeCluster> {
  const bins = k8sBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-k8s-'));
  const log: string[] = [];
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const server = `https://127.0.0.1:${apiPort}`;
  const adminToken = randomBytes(24).toString('hex');

  // The service-account signing key is made per run: tokens from one run mean nothing in another.
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(join(dir, 'tokens.csv'), `${adminToken},admin,admin-uid,"system:masters"\n`);
  await mkdir(join(dir, 'certs'));

  const etcdArgs = [
    '--name=default',
    `--data-dir=${join(dir, 'etcd')}`,
    `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
    '--log-level=warn',
  ];
  const apiArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${join(dir, 'certs')}`,
    '--authorization-mode=RBAC',
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    `--service-account-key-file=${join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    '--api-audiences=https://kubernetes.default.svc.cluster.local',
    '--service-cluster-ip-range=10.96.0.0/16',
    '--endpoint-reconciler-type=none',
    '--profiling=false',
    '--v=0',
  ];

  let etcd: Proc | undefined;
  let api: Proc | undefined;
  const logs = () => log.join('').slice(-6000);

  const waitReady = async (what: string, probe: () => Promise<boolean>, proc: () => Proc | undefined, ms = 90_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const p = proc();
      if (p && (p.child.exitCode !== null || p.child.signalCode !== null)) throw new Error(`${what} exited while starting:\n${logs()}`);
      if (await probe().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`${what} was not ready within ${ms / 1000} s:\n${logs()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  const startEtcd = async () => {
    etcd = start(bins.etcd, etcdArgs, 'etcd', log);
    await waitReady('etcd', async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok, () => etcd);
  };
  // The API server's serving certificate is self-signed per run; Node's fetch cannot be told to
  // trust it per request without undici's Agent, so readiness is probed over kubectl.
  const startApiServer = async () => {
    api = start(bins.apiserver, apiArgs, 'kube-apiserver', log);
    await waitReady(
      'kube-apiserver',
      async () => (await run(bins.kubectl, ['--kubeconfig', probeKubeconfig, 'get', '--raw', '/readyz'])).stdout.trim() === 'ok',
      () => api,
    );
  };

  // Clients verify the API server's certificate: kube-apiserver writes its self-signed serving
  // certificate, with the CA that signed it, to --cert-dir (kept across restarts). Only the
  // readiness probe during start-up, before that file exists, skips verification.
  const kubeconfigFor = async (token: string, name: string, verify = true) => {
    const file = join(dir, `${name}.kubeconfig`);
    const tls = verify ? { 'certificate-authority': join(dir, 'certs/apiserver.crt') } : { 'insecure-skip-tls-verify': true };
    await writeFile(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'test', cluster: { server, ...tls } }],
        users: [{ name, user: { token } }],
        contexts: [{ name, context: { cluster: 'test', user: name, namespace: 'default' } }],
        'current-context': name,
      }),
    );
    return file;
  };
  const kubeconfig = await kubeconfigFor(adminToken, 'admin');
  const probeKubeconfig = await kubeconfigFor(adminToken, 'probe', false);

  try {
    await startEtcd();
    await startApiServer();
  } catch (error) {
    await stop(api);
    await stop(etcd);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const kubectl = (args: string[], opts: { input?: string; kubeconfig?: string } = {}) =>
    run(bins.kubectl, ['--kubeconfig', opts.kubeconfig ?? kubeconfig, ...args], opts.input);
  const kubectlOk = async (args: string[], opts: { input?: string; kubeconfig?: string } = {}) => {
    const r = await kubectl(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };

  return {
    dir,
    server,
    kubeconfig,
    adminToken,
    kubectlPath: bins.kubectl,
    kubectl,
    kubectlOk,
    token: async (namespace, sa, durationSeconds = 3600) =>
      (await kubectlOk(['create', 'token', sa, '-n', namespace, `--duration=${durationSeconds}s`])).trim(),
    kubeconfigFor,
    stopApiServer: () => stop(api),
    startApiServer,
    stopEtcd: () => stop(etcd),
    startEtcd,
    logs,
    close: async () => {
      await stop(api);
      await stop(etcd);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * `token` (a ServiceAccount JWT this cluster issued) signed again with the cluster's own key, its
 * claims changed by `claims`. For what the TokenRequest API will not issue, such as a token that
 * has already expired (it refuses lifetimes under 10 minutes); the API server judges the result
 * exactly as it judges its own tokens.
 */
export async function resignedToken(kube: KubeCluster, token: string, claims: Record<string, unknown>): Promise<string> {
  const [header, payload] = token.split('.');
  const body = { ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), ...claims };
  const signed = `${header}.${Buffer.from(JSON.stringify(body)).toString('base64url')}`;
  const signature = createSign('RSA-SHA256').update(signed).sign(await readFile(join(kube.dir, 'sa.key'), 'utf8'));
  return `${signed}.${signature.toString('base64url')}`;
}
