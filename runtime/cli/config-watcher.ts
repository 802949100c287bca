// Watches the config file through the ways files change in practice: written in place, replaced
// by a rename (editors, `mv new.yaml sluice.yaml`), or swapped through symlinks (a Kubernetes
// ConfigMap volume: sluice.yaml -> ..data/sluice.yaml, ..data -> ..2026_xx, and ..data replaced
// atomically by a rename). A watch on the file itself follows its old inode and goes deaf after a
// rename, so this watches the directories on the way to it, filters their events on the names on
// that way, re-arms whenever the file resolves elsewhere, and calls back once per settled change
// of the file's content.

import { createHash } from 'node:crypto';
import { type FSWatcher, lstatSync, readFileSync, readlinkSync, realpathSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface ConfigWatcher {
  close(): void;
}

/** Symlinks followed at most, as the kernel's limit (ELOOP beyond). */
const MAX_LINKS = 40;

/**
 * Calls `onChange` after `file`'s content changed and then stayed unchanged for `debounceMs`
 * (an edit is often several writes; a swap is several renames).
 */
export function watchConfig(file: string, onChange: () => void, debounceMs = 200): ConfigWatcher {
  const path = resolve(file);
  const watchers = new Map<string, { watcher: FSWatcher; names: Set<string> }>();
  let last = fingerprint(path);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const settle = () => {
    clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
  };

  const check = () => {
    if (closed) return;
    arm();
    const now = fingerprint(path);
    // Missing (between two renames of a swap): the rename that completes it brings another event.
    if (now === undefined || now === last) return;
    last = now;
    onChange();
  };

  /** Watches every directory on the way to the file and forgets the ones no longer on it. */
  const arm = () => {
    const wanted = namesOnTheWay(path);
    for (const [dir, entry] of watchers) {
      if (wanted.has(dir)) continue;
      entry.watcher.close();
      watchers.delete(dir);
    }
    for (const [dir, names] of wanted) {
      const entry = watchers.get(dir);
      if (entry) {
        entry.names = names;
        continue;
      }
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          const known = watchers.get(dir);
          if (name === null || known === undefined || known.names.has(name.toString())) settle();
        });
        // A watched directory that is deleted (an old ConfigMap version) may report an error: look again.
        watcher.on('error', () => {
          watcher.close();
          if (watchers.get(dir)?.watcher === watcher) watchers.delete(dir);
          settle();
        });
        watchers.set(dir, { watcher, names });
      } catch {
        // The directory is gone already; the next event elsewhere re-arms.
      }
    }
  };

  arm();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      for (const { watcher } of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}

/** The file's content digest, or undefined when it cannot be read now. */
function fingerprint(path: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return undefined;
  }
}

/**
 * The directories (by real path) whose entries decide what `path` reads, each with the names in
 * it that matter: the file's own name, every symlink followed on the way, a symlinked directory
 * on the way (ConfigMap's `..data`), and the real file's name in its real directory.
 */
function namesOnTheWay(path: string): Map<string, Set<string>> {
  const dirs = new Map<string, Set<string>>();
  const add = (p: string) => {
    let dir = dirname(p);
    try {
      dir = realpathSync(dir);
    } catch {
      // not there (yet): watch it by the name given
    }
    if (!dirs.has(dir)) dirs.set(dir, new Set());
    dirs.get(dir)!.add(basename(p));
  };
  let p = path;
  for (let i = 0; i < MAX_LINKS; i++) {
    add(p);
    const parent = dirname(p);
    if (isLink(parent)) add(parent);
    if (!isLink(p)) break;
    try {
      p = resolve(dirname(p), readlinkSync(p));
    } catch {
      break;
    }
  }
  try {
    add(realpathSync(path));
  } catch {
    // a dangling link mid-swap: the names above cover it
  }
  return dirs;
}

function isLink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
