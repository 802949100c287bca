// Where Sluice's own files are: the checkout (or installed package) root, found from this module,
// whether it runs from source (runtime/cli) or compiled (dist/runtime/cli).

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || existsSync(join(dir, 'tsconfig.json')) === false) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the sluice package root above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}
