// Where Sluice's own files are: the checkout (or installed package) root, found from this module,
// whether it runs from source (runtime/cli), compiled (dist/runtime/cli), or from an installed
// package (node_modules/sluice/dist/runtime/cli).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function isSluicePackage(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'sluice';
  } catch {
    return false;
  }
}

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!(existsSync(join(dir, 'package.json')) && isSluicePackage(dir))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the sluice package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}
