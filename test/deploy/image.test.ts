// The images' contents as scripts/build-images.sh builds them (cached by .ci/run in
// ~/.cache/sluice/images/<version>): `sluice --version` in both, the controller's as its
// non-root user, and `sluice run` on the example config inside the node image's root filesystem
// (chroot, in fresh network, mount and pid namespaces), read back with `sluice status` from
// inside; the OCI layout's image configs. Needs root and a built image, else skips saying so.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const dir = join(process.env.SLUICE_IMAGE_CACHE || join(homedir(), '.cache/sluice/images'), version);
const why = process.getuid?.() !== 0
  ? 'needs root (chroot, namespaces)'
  : !existsSync(join(dir, '.complete'))
    ? `no image built in ${dir}: run scripts/build-images.sh (root, debootstrap, umoci; about a minute, .ci/run does it)`
    : undefined;
const run = skipUnless(why);
const rootfs = (image: string) => join(dir, image, 'rootfs');
// The image's environment, not this process's (NODE_EXTRA_CA_CERTS and the like name host files).
const env = { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' };

run('sluice --version runs in both images; the controller\'s as user 65532', (t) => {
  t.log(readFileSync(join(dir, 'sizes.txt'), 'utf8').trim());
  const c = spawnSync('chroot', ['--userspec=65532:65532', rootfs('controller'), '/usr/local/bin/node', '/app/bin/sluice.js', '--version'], { encoding: 'utf8', env });
  t.is(c.status, 0, c.stderr);
  t.is(c.stdout, `sluice ${version}\n`);
  const n = spawnSync('chroot', [rootfs('node'), '/usr/local/bin/sluice', '--version'], { encoding: 'utf8', env });
  t.is(n.status, 0, n.stderr);
  t.is(n.stdout, `sluice ${version}\n`);
  // What capture runs in pods' netns is in the node image.
  for (const tool of [['/usr/sbin/nft', '--version'], ['/usr/bin/nsenter', '--version']]) {
    const r = spawnSync('chroot', [rootfs('node'), ...tool], { encoding: 'utf8', env });
    t.is(r.status, 0, `${tool[0]}: ${r.stderr}`);
  }
  t.true(existsSync(join(rootfs('node'), 'app/build/cni/sluice-cni')));
  t.true(existsSync(join(rootfs('node'), 'app/runtime/capture/native/build/Release/sluice_capture.node')));
  t.false(existsSync(join(rootfs('controller'), 'bin/sh')), 'the controller image has no shell');
});

run('sluice run serves the example config inside the node image; sluice status reads it there', (t) => {
  const r = rootfs('node');
  // Fresh namespaces: the example's fixed ports (15000, 15001) collide with nothing, the image's
  // /tmp is a tmpfs (the cached tree is not written), and everything dies with the shell.
  const inside = [
    'sluice run -c /app/examples/local/sluice.yaml --drain-ms 200 >/tmp/run.log 2>&1 & pid=$!',
    'i=0; until sluice status >/tmp/status.txt 2>&1; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.2; done',
    'echo "status=$?"; cat /tmp/status.txt',
    'node -e "fetch(\'http://127.0.0.1:15001/healthz\').then(r => r.text()).then(b => process.stdout.write(\'healthz=\' + b))"',
    'kill -TERM $pid; wait $pid; echo "run exit=$?"; grep -c \'"msg":"stopped"\' /tmp/run.log',
  ].join('\n');
  const script = `set -e; ip link set lo up; mount -t tmpfs tmpfs ${r}/tmp; exec chroot ${r} /bin/sh -c '${inside.replaceAll("'", "'\\''")}'`;
  const p = spawnSync('unshare', ['--net', '--mount', '--pid', '--fork', `--mount-proc=${r}/proc`, 'sh', '-c', script], { encoding: 'utf8', timeout: 60_000, env });
  t.is(p.status, 0, p.stderr + p.stdout);
  const lines = p.stdout.split('\n');
  t.is(lines[0], 'status=0', p.stdout);
  t.is(lines[1], 'proxy:    ready (admin 127.0.0.1:15000)');
  t.regex(lines[2], /^config: {3}file \/app\/examples\/local\/sluice\.yaml, version [0-9a-f]{16}$/);
  t.is(lines[3], 'filters:  8');
  t.true(lines.includes('capture:  off (no --capture-socket)'));
  t.true(lines.includes('healthz=ok'), p.stdout);
  t.true(lines.includes('run exit=0'), p.stdout);
  t.is(lines.at(-2), '1', 'the proxy logged "stopped"');
});

run('the OCI layout holds both images, with their entrypoint and user', (t) => {
  const oci = join(dir, 'oci');
  const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  const blob = (digest: string) => JSON.parse(readFileSync(join(oci, 'blobs/sha256', digest.split(':')[1]), 'utf8'));
  const configs = Object.fromEntries(index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], blob(blob(m.digest).config.digest).config]));
  t.deepEqual(Object.keys(configs).sort(), ['controller', 'node']);
  t.deepEqual([configs.controller.User, configs.controller.Entrypoint, configs.controller.Cmd], ['65532:65532', ['/usr/local/bin/node', '/app/bin/sluice.js'], ['controller']]);
  t.deepEqual([configs.node.User, configs.node.Cmd], ['0:0', ['run', '--controller', 'sluice-controller.sluice-system.svc:15012']]);
});

/** The final stage's COPY lines of a Dockerfile: [source or undefined (from a stage), destination under /]. */
function finalCopies(dockerfile: string): Array<{ from?: string; src: string; dest: string }> {
  const text = readFileSync(join(repoRoot, 'deploy/images', dockerfile), 'utf8').replace(/\\\n/g, ' ');
  const stages = text.split(/^FROM /m);
  const last = stages[stages.length - 1];
  let workdir = '/';
  const out: Array<{ from?: string; src: string; dest: string }> = [];
  for (const line of last.split('\n')) {
    const w = /^WORKDIR (\S+)/.exec(line);
    if (w) workdir = w[1];
    const c = /^COPY (?:--from=(\S+) )?(\S+) (\S+)$/.exec(line.trim());
    if (c) out.push({ from: c[1], src: c[2], dest: c[3].startsWith('/') ? c[3] : join(workdir, c[3]) });
  }
  return out;
}

test('the Dockerfiles copy only what exists here, and put in /app what scripts/build-images.sh puts there', (t) => {
  for (const [dockerfile, image] of [['Dockerfile.controller', 'controller'], ['Dockerfile.node', 'node']] as const) {
    const copies = finalCopies(dockerfile);
    for (const c of copies.filter((x) => !x.from)) t.true(existsSync(join(repoRoot, c.src)), `${dockerfile}: COPY ${c.src}: no such file in the repository`);
    const dests = copies.map((c) => c.dest.replace(/\/$/, '')).filter((d) => d.startsWith('/app/'));
    if (why) {
      t.log(`${dockerfile}: the comparison with the built image is skipped: ${why}`);
      continue;
    }
    const app = join(rootfs(image), 'app');
    for (const d of dests) t.true(existsSync(join(rootfs(image), d)), `${dockerfile} puts ${d} in the image; build-images.sh does not`);
    // Everything build-images.sh put in /app is under a destination of the Dockerfile.
    const uncovered: string[] = [];
    const walk = (rel: string) => {
      const abs = join(app, rel);
      if (dests.includes(`/app/${rel}`)) return;
      if (!dests.some((d) => d.startsWith(`/app/${rel}/`))) return void uncovered.push(rel);
      for (const e of readdirSync(abs)) walk(rel ? `${rel}/${e}` : e);
    };
    for (const e of readdirSync(app)) walk(e);
    t.deepEqual(uncovered, [], `${dockerfile}: in the built ${image} image's /app but not in the Dockerfile`);
  }
});
