// `sluice new <name>`: scaffolds a filter and says what to do next. Inside a Sluice checkout the
// filter goes in filters/<name>, built with the checkout; anywhere else (or with --standalone) it
// is a project of its own in ./<name> that depends on the sluice package.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { scaffoldFilter, scaffoldProject } from './scaffold.ts';

/** The Sluice checkout holding `dir`, if any: a package named sluice with the SDK and the build script. */
function checkoutAbove(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    try {
      const pkg = JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { name?: unknown };
      if (pkg.name === 'sluice' && existsSync(join(d, 'scripts', 'build-filters.js')) && existsSync(join(d, 'sdk', 'template'))) return d;
    } catch {
      // no package.json here
    }
    if (dirname(d) === d) return undefined;
  }
}

export function runNew(name: string, opts: { dir?: string; standalone?: boolean } = {}): number {
  const standalone = opts.standalone === true || checkoutAbove(process.cwd()) === undefined;
  if (!standalone) {
    const dest = opts.dir ?? `filters/${name}`;
    const files = scaffoldFilter(name, dest);
    process.stdout.write(`created filter "${name}" in ${dest}:\n`);
    for (const f of files) process.stdout.write(`  ${relative(process.cwd(), f) || f}\n`);
    process.stdout.write(`\nnext:\n  npm run build      # compiles it to build/filters/${name}.wasm\n  npx ava ${dest}/test  # runs its harness test\n`);
    return 0;
  }
  const dest = opts.dir ?? name;
  const files = scaffoldProject(name, dest);
  process.stdout.write(`created filter project "${name}" in ${dest}:\n`);
  for (const f of files) process.stdout.write(`  ${relative(process.cwd(), f) || f}\n`);
  process.stdout.write(
    `\nnext:\n  cd ${dest}\n  npm install                     # the sluice package: SDK, harness, compiler\n` +
      `  npm test                        # builds build/${name}.wasm and runs its harness test\n` +
      `  npm run push -- <registry>/<repo>:<tag>   # publishes it and prints a WasmFilter to apply\n`,
  );
  return 0;
}
