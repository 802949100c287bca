// `sluice new <name>`: copies sdk/template into a new filter folder, filling in the filter's name
// and the relative paths from that folder to the SDK, the harness and the build script.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Filter names: lower-case words joined by single dashes, starting with a letter (a DNS label). */
const NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const MAX_NAME_LENGTH = 63;

/** The checkout holding sdk/template, found upward from this file (it may run from dist/). */
function sluiceRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'sdk', 'template', 'assembly', 'index.ts'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find sdk/template above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** An import specifier for `target` as seen from the folder `fromDir` (always ./ or ../ and forward slashes). */
function importPath(fromDir: string, target: string): string {
  const rel = relative(fromDir, target).split(sep).join('/');
  return rel.startsWith('.') ? rel : `./${rel}`;
}

function pascalCase(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

function listFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const full = join(dir, entry);
    if (statSync(full).isDirectory()) out.push(...listFiles(full, base));
    else out.push(relative(base, full));
  }
  return out;
}

/**
 * Creates the filter `name` in `destDir` (which must not exist yet) from sdk/template and returns
 * the absolute paths of the files written. Filters belong in `filters/<name>` of the checkout:
 * that is where scripts/build-filters.js looks. Throws an Error saying what to change for an
 * invalid name or an existing folder; nothing is left behind when writing fails.
 */
export function scaffoldFilter(name: string, destDir: string): string[] {
  if (typeof name !== 'string' || !NAME.test(name) || name.length > MAX_NAME_LENGTH) {
    throw new Error(
      `invalid filter name ${JSON.stringify(name)}: use lower-case letters, digits and single dashes, ` +
        `starting with a letter, at most ${MAX_NAME_LENGTH} characters (e.g. "rate-limit")`,
    );
  }
  const dest = resolve(destDir);
  if (existsSync(dest)) {
    throw new Error(`${dest} already exists: choose another name or folder, or remove it first`);
  }
  const root = sluiceRoot();
  const template = join(root, 'sdk', 'template');
  const values: Record<string, string> = {
    name,
    className: pascalCase(name),
    metricPrefix: name.replaceAll('-', '_'),
    sdk: importPath(join(dest, 'assembly'), join(root, 'sdk', 'assembly')),
    harness: importPath(join(dest, 'test'), join(root, 'sdk', 'harness', 'index.ts')),
    buildScript: importPath(join(dest, 'test'), join(root, 'scripts', 'build-filters.js')),
    wasm: importPath(join(dest, 'test'), join(root, 'build', 'filters', `${name}.wasm`)),
    testPath: relative(root, join(dest, 'test', `${name}.test.ts`)).split(sep).join('/'),
  };
  const fill = (text: string): string =>
    text.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
      const value = values[key];
      if (value === undefined) throw new Error(`sdk/template uses an unknown placeholder ${whole}`);
      return value;
    });

  // Written next to the destination, then renamed into place: a failure leaves no half-made filter.
  const staging = `${dest}.scaffold-${process.pid}`;
  const written: string[] = [];
  try {
    for (const file of listFiles(template)) {
      // The template's test is named after the filter.
      const target = file === join('test', 'filter.test.ts') ? join('test', `${name}.test.ts`) : file;
      mkdirSync(dirname(join(staging, target)), { recursive: true });
      writeFileSync(join(staging, target), fill(readFileSync(join(template, file), 'utf8')));
      written.push(join(dest, target));
    }
    renameSync(staging, dest);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return written;
}
