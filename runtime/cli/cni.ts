// `sluice cni install|uninstall`: sets sluice-cni up on a node (run by the DaemonSet with the
// node's CNI dirs mounted), or removes it. `--watch` keeps the entry chained until SIGTERM;
// `uninstall --release-pods DIR` also takes the capture rules out of the pods a proxy recorded.

import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chain, install, uninstall, watchAndRepair } from '../capture/cni-install.ts';
import { removeRules } from '../capture/nft-rules.ts';
import { SluiceError } from '../errors.ts';
import { packageRoot } from './paths.ts';

const log = (level: string, msg: string, extra: Record<string, unknown> = {}) =>
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...extra })}\n`);

/** The entry `install` chains when no --config is given (docs/capture.md). */
const DEFAULT_ENTRY = { proxySocket: '/var/run/sluice/cni.sock', excludeNamespaces: ['kube-system'], capabilities: { 'io.kubernetes.cri.pod-annotations': true } };

export async function runCni(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'cni-bin-dir': { type: 'string', default: '/opt/cni/bin' },
      'cni-conf-dir': { type: 'string', default: '/etc/cni/net.d' },
      binary: { type: 'string' },
      config: { type: 'string' },
      watch: { type: 'boolean', default: false },
      'release-pods': { type: 'string' },
    },
  });
  const [action] = positionals;
  const dirs = { binDir: values['cni-bin-dir']!, confDir: values['cni-conf-dir']! };
  if (action === 'uninstall') {
    const files = await uninstall(dirs);
    log('info', files.length > 0 ? `sluice-cni removed from ${files.join(', ')}` : 'sluice-cni was not chained in any config', { binDir: dirs.binDir });
    return values['release-pods'] ? releasePods(values['release-pods']) : 0;
  }
  if (values['release-pods'] !== undefined) {
    process.stderr.write('sluice cni: --release-pods goes with `uninstall`\n');
    return 2;
  }
  if (action !== 'install' || positionals.length !== 1) {
    process.stderr.write('sluice cni: give `install` or `uninstall`, e.g. `sluice cni install --cni-conf-dir /etc/cni/net.d`\n');
    return 2;
  }
  let entry: Record<string, unknown> = DEFAULT_ENTRY;
  if (values.config) {
    try {
      entry = JSON.parse(await readFile(values.config, 'utf8'));
    } catch (error) {
      throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `--config ${values.config}: ${(error as Error).message}; give a JSON object with sluice-cni's fields (docs/capture.md)`);
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || 'type' in entry) {
      throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `--config ${values.config}: must be a JSON object of sluice-cni's fields, without "type"`);
    }
  }
  const binary = values.binary ?? join(packageRoot(), 'build/cni/sluice-cni');
  const opts = { ...dirs, binary, entry };
  const { file, changed } = await install(opts);
  log('info', changed ? `sluice-cni chained into ${file}` : `sluice-cni already chained in ${file}`, { binary: join(dirs.binDir, 'sluice-cni') });
  // Pods started before this moment were not captured; the runtime only calls CNI at sandbox
  // creation, so they stay so until recreated.
  log('warn', 'pods already running on this node are not captured until they are recreated (kubectl rollout restart)');
  if (!values.watch) return 0;
  // Listen for the end before anything can make the caller think we are up (a SIGTERM right after
  // the first repair must still end us cleanly).
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  const watcher = watchAndRepair(
    opts,
    (f) => log('warn', `the chain in ${f} was rewritten (by the primary CNI?); sluice-cni chained again`),
    (error) => log('error', `cannot repair the CNI config: ${error.message}`),
  );
  // A rewrite that happened between install and the watch's start.
  await chain(opts);
  await stopped;
  watcher.close();
  return 0;
}

/**
 * Removes the capture rules (`table ip/ip6 sluice`) from every pod recorded in `dir` (the proxy's
 * pods/<containerId>.json) whose netns still exists, and the records: run with the proxy stopped,
 * after the plugin is unchained, so those pods talk directly again. Returns 1 when a pod's rules
 * could not be removed (the others are still done).
 */
async function releasePods(dir: string): Promise<number> {
  const files = existsSync(dir) ? (await readdir(dir)).filter((f) => f.endsWith('.json')) : [];
  let failed = 0;
  for (const file of files) {
    const path = join(dir, file);
    let pod: { netns?: unknown; namespace?: unknown; name?: unknown };
    try {
      pod = JSON.parse(await readFile(path, 'utf8'));
    } catch (error) {
      log('warn', `${path} is not a pod record (${(error as Error).message}); left as it is`);
      continue;
    }
    const who = `${pod.namespace || '?'}/${pod.name || file.slice(0, -5)}`;
    if (typeof pod.netns !== 'string' || !existsSync(pod.netns)) {
      await rm(path, { force: true });
      log('info', `pod ${who} is gone; record removed`);
      continue;
    }
    try {
      await removeRules(pod.netns);
      await rm(path, { force: true });
      log('info', `pod ${who} released: its capture rules are removed`, { netns: pod.netns });
    } catch (error) {
      failed++;
      const e = error as Error & { code?: string };
      log('error', `pod ${who}: cannot remove its capture rules; its connections stay refused until it is recreated`, { code: e.code, error: e.message, netns: pod.netns });
    }
  }
  log('info', `released ${files.length - failed} of ${files.length} recorded pods`, { dir });
  return failed > 0 ? 1 : 0;
}
