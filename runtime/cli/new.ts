// `sluice new <name>`: scaffolds a filter folder from the SDK template and says what to do next.

import { relative } from 'node:path';
import { scaffoldFilter } from '../../sdk/index.ts';

export function runNew(name: string, dir?: string): number {
  const dest = dir ?? `filters/${name}`;
  const files = scaffoldFilter(name, dest);
  process.stdout.write(`created filter "${name}" in ${dest}:\n`);
  for (const f of files) process.stdout.write(`  ${relative(process.cwd(), f) || f}\n`);
  process.stdout.write(`\nnext:\n  npm run build      # compiles it to build/filters/${name}.wasm\n  npx ava ${dest}/test  # runs its harness test\n`);
  return 0;
}
