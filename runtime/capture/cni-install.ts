// `sluice cni install`: puts sluice-cni on a node. Copies the plugin binary into the CNI bin dir,
// chains its entry at the end of the node's primary conflist, and (with a watcher) puts it back
// when the primary CNI rewrites that file; `uninstall` removes both.

import { watch, type FSWatcher } from 'node:fs';
import { copyFile, chmod, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SluiceError } from '../errors.ts';

export const PLUGIN_TYPE = 'sluice-cni';

export interface InstallOptions {
  /** The built plugin, e.g. build/cni/sluice-cni. */
  readonly binary: string;
  /** Where the runtime looks for plugins (/opt/cni/bin). */
  readonly binDir: string;
  /** Where the runtime reads network configs (/etc/cni/net.d). */
  readonly confDir: string;
  /** sluice-cni's conflist entry, without `type` (docs/capture.md lists its fields). */
  readonly entry: Record<string, unknown>;
}

type Conflist = { cniVersion?: string; name?: string; plugins: Array<Record<string, unknown>> } & Record<string, unknown>;

/**
 * The config file the runtime uses: the first by name among *.conf, *.conflist and *.json, as
 * containerd, CRI-O and libcni's ConfFiles order them.
 */
export async function primaryConfig(confDir: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(confDir);
  } catch {
    return undefined;
  }
  const first = names.filter((n) => /\.(conf|conflist|json)$/.test(n)).sort()[0];
  return first === undefined ? undefined : join(confDir, first);
}

/** The conflist of a .conflist, or a single-plugin .conf lifted into one. */
export function toConflist(text: string, file: string): Conflist {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `${file} is not JSON (${(error as Error).message}); fix or remove it, then install again`);
  }
  if (Array.isArray(parsed.plugins)) return parsed as Conflist;
  if (typeof parsed.type !== 'string') throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `${file} is neither a conflist (no "plugins") nor a plugin config (no "type")`);
  // A .conf is one plugin: cniVersion and name move up to the list, the rest stays in the entry.
  const { cniVersion, name, ...plugin } = parsed;
  return { cniVersion: cniVersion as string, name: name as string, plugins: [plugin] };
}

/** `list` with sluice-cni as its last plugin, configured with `entry`; unchanged when it already is. */
export function withPlugin(list: Conflist, entry: Record<string, unknown>): { list: Conflist; changed: boolean } {
  const ours = { type: PLUGIN_TYPE, ...entry };
  const others = list.plugins.filter((p) => p.type !== PLUGIN_TYPE);
  const next = { ...list, plugins: [...others, ours] };
  return { list: next, changed: JSON.stringify(next) !== JSON.stringify(list) };
}

export function withoutPlugin(list: Conflist): { list: Conflist; changed: boolean } {
  const plugins = list.plugins.filter((p) => p.type !== PLUGIN_TYPE);
  return { list: { ...list, plugins }, changed: plugins.length !== list.plugins.length };
}

/** Writes through a temp file and rename: the runtime never reads a half-written file. */
async function writeAtomic(file: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = join(file, '..', `.${basename(file)}.sluice-tmp`);
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}

/**
 * Copies the binary and chains the entry into the primary config. A .conf is rewritten as a
 * .conflist of the same name (the .conf removed) since a .conf cannot chain. Idempotent.
 */
export async function install(opts: InstallOptions): Promise<{ file: string; changed: boolean }> {
  const target = join(opts.binDir, PLUGIN_TYPE);
  const tmp = join(opts.binDir, `.${PLUGIN_TYPE}.sluice-tmp`);
  try {
    await copyFile(opts.binary, tmp);
  } catch (error) {
    throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `cannot copy ${opts.binary} to ${opts.binDir}: ${(error as Error).message}; is the CNI bin dir mounted into the pod?`, { cause: error });
  }
  await chmod(tmp, 0o755);
  await rename(tmp, target);
  return { ...(await chain(opts)) };
}

/**
 * Chains the entry into the primary config (the repair step of the watcher). With `ifMissing`,
 * an entry of sluice-cni already chained is left as it is, whatever its config: during an upgrade
 * the new installer writes its entry while the old one still watches, and the old one must not
 * write its own back (docs/operations.md#upgrade).
 */
export async function chain(opts: Pick<InstallOptions, 'confDir' | 'entry'>, ifMissing = false): Promise<{ file: string; changed: boolean }> {
  const file = await primaryConfig(opts.confDir);
  if (!file) throw new SluiceError('SLUICE_ERR_CNI_INSTALL', `no CNI config in ${opts.confDir}: install the primary CNI (bridge, Calico, Cilium...) first; sluice-cni chains after it`);
  const text = await readFile(file, 'utf8');
  const current = toConflist(text, file);
  if (ifMissing && current.plugins.at(-1)?.type === PLUGIN_TYPE) return { file, changed: false };
  const { list, changed } = withPlugin(current, opts.entry);
  if (!changed) return { file, changed: false };
  const out = file.endsWith('.conf') ? `${file}list` : file;
  await writeAtomic(out, `${JSON.stringify(list, null, 2)}\n`, 0o644);
  if (out !== file) await rm(file, { force: true });
  return { file: out, changed: true };
}

/** Removes sluice-cni's entry from every config in confDir and its binary from binDir. */
export async function uninstall(opts: Pick<InstallOptions, 'binDir' | 'confDir'>): Promise<string[]> {
  const changedFiles: string[] = [];
  let names: string[] = [];
  try {
    names = await readdir(opts.confDir);
  } catch {
    // No config dir: nothing chained.
  }
  for (const name of names.filter((n) => /\.(conflist|json)$/.test(n))) {
    const file = join(opts.confDir, name);
    let list: Conflist;
    try {
      list = toConflist(await readFile(file, 'utf8'), file);
    } catch {
      continue; // not ours to judge: another tool's broken file
    }
    const { list: next, changed } = withoutPlugin(list);
    if (!changed) continue;
    await writeAtomic(file, `${JSON.stringify(next, null, 2)}\n`, 0o644);
    changedFiles.push(file);
  }
  await rm(join(opts.binDir, PLUGIN_TYPE), { force: true });
  return changedFiles;
}

/**
 * Watches confDir and chains the entry again whenever the primary config loses it (the primary
 * CNI's own installer rewrites its file on restart or upgrade). An entry another installer wrote
 * (a newer one, with another config) stays. `onRepair` hears each repair.
 */
export function watchAndRepair(opts: Pick<InstallOptions, 'confDir' | 'entry'>, onRepair: (file: string) => void, onError: (error: Error) => void): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const check = () => {
    running = running
      .then(() => chain(opts, true))
      .then(({ file, changed }) => {
        if (changed) onRepair(file);
      })
      .catch(onError);
  };
  const watcher: FSWatcher = watch(opts.confDir, (_event, name) => {
    // Our own temp files come and go during a write; their rename is the event that matters.
    if (name?.toString().endsWith('.sluice-tmp')) return;
    clearTimeout(timer);
    timer = setTimeout(check, 100);
  });
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
