// Builds capture's native parts where the machine can: the CNI plugin and its test driver (Go,
// runtime/cni -> build/cni/) and the N-API addon (runtime/capture/native, node-gyp from npm's
// bundled copy, against the installed Node headers). Each is skipped, with the reason, when its
// tool is missing or its outputs are newer than its sources; what needs them then skips too.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

async function newest(dir, pattern) {
  let latest = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !pattern.test(e.name)) continue;
    const p = join(e.parentPath ?? e.path, e.name);
    if (p.includes('/build/')) continue;
    latest = Math.max(latest, (await stat(p)).mtimeMs);
  }
  return latest;
}

async function upToDate(outputs, sourcesMtime) {
  for (const out of outputs) {
    try {
      if ((await stat(out)).mtimeMs < sourcesMtime) return false;
    } catch {
      return false;
    }
  }
  return true;
}

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
}

function has(cmd) {
  return spawnSync(cmd, ['version'], { stdio: 'ignore' }).error === undefined;
}

export async function buildNative({ root = process.cwd(), log = console.log } = {}) {
  const cni = join(root, 'runtime/cni');
  const outDir = join(root, 'build/cni');
  const binaries = ['sluice-cni', 'cni-run'].map((b) => join(outDir, b));
  if (!has('go')) {
    log('build: skipping the CNI plugin (runtime/cni): no `go` on PATH; the capture tests will skip');
  } else if (!(await upToDate(binaries, await newest(cni, /\.(go|mod|sum)$/)))) {
    // CGO off: a static plugin binary runs on any node, whatever its libc.
    run('go', ['build', '-trimpath', '-o', `${outDir}/`, './cmd/sluice-cni', './cmd/cni-run'], { cwd: cni, env: { ...process.env, CGO_ENABLED: '0' } });
    log('build: CNI plugin -> build/cni/sluice-cni');
  }

  const native = join(root, 'runtime/capture/native');
  const addon = join(native, 'build/Release/sluice_capture.node');
  const nodeGyp = join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  const headers = join(dirname(process.execPath), '../include/node/node_api.h');
  if (process.platform !== 'linux') {
    log(`build: skipping the capture addon: it needs Linux (network namespaces), this is ${process.platform}`);
  } else if (!existsSync(nodeGyp) || !existsSync(headers)) {
    log(`build: skipping the capture addon: needs npm's node-gyp (${nodeGyp}) and the Node headers (${headers})`);
  } else if (!(await upToDate([addon], await newest(native, /\.(c|gyp)$/)))) {
    // The installed headers, not a download: npm_config_nodedir points node-gyp at them.
    run(process.execPath, [nodeGyp, 'rebuild'], { cwd: native, env: { ...process.env, npm_config_nodedir: join(dirname(process.execPath), '..') } });
    log('build: capture addon -> runtime/capture/native/build/Release/sluice_capture.node');
  }
}
