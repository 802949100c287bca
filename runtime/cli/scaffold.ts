// `sluice new <name>`: copies sdk/template into a new filter folder of a checkout, filling in the
// filter's name and the relative paths from that folder to the SDK, the harness and the build
// script; or makes a standalone project (sdk/standalone plus the template's filter) that depends
// on the sluice package.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { packageRoot } from './paths.ts';

/** Filter names: lower-case words joined by single dashes, starting with a letter (a DNS label). */
const NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const MAX_NAME_LENGTH = 63;

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

function checkName(name: string): void {
  if (typeof name !== 'string' || !NAME.test(name) || name.length > MAX_NAME_LENGTH) {
    throw new Error(
      `invalid filter name ${JSON.stringify(name)}: use lower-case letters, digits and single dashes, ` +
        `starting with a letter, at most ${MAX_NAME_LENGTH} characters (e.g. "rate-limit")`,
    );
  }
}

/** Writes `files` (template path → [source file, target path]) filled with `values` into dest, atomically. */
function writeFilled(dest: string, files: [string, string][], values: Record<string, string>, templateName: string): string[] {
  if (existsSync(dest)) {
    throw new Error(`${dest} already exists: choose another name or folder, or remove it first`);
  }
  const fill = (text: string): string =>
    text.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
      const value = values[key];
      if (value === undefined) throw new Error(`${templateName} uses an unknown placeholder ${whole}`);
      return value;
    });
  // Written next to the destination, then renamed into place: a failure leaves no half-made filter.
  const staging = `${dest}.scaffold-${process.pid}`;
  const written: string[] = [];
  try {
    for (const [source, target] of files) {
      mkdirSync(dirname(join(staging, target)), { recursive: true });
      writeFileSync(join(staging, target), fill(readFileSync(source, 'utf8')));
      written.push(join(dest, target));
    }
    renameSync(staging, dest);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  return written;
}

function filterValues(name: string): Record<string, string> {
  return { name, className: pascalCase(name), metricPrefix: name.replaceAll('-', '_') };
}

/**
 * Creates the filter `name` in `destDir` (which must not exist yet) from sdk/template and returns
 * the absolute paths of the files written. Filters belong in `filters/<name>` of the checkout:
 * that is where scripts/build-filters.js looks. Throws an Error saying what to change for an
 * invalid name or an existing folder; nothing is left behind when writing fails.
 */
export function scaffoldFilter(name: string, destDir: string): string[] {
  checkName(name);
  const dest = resolve(destDir);
  const root = packageRoot();
  const template = join(root, 'sdk', 'template');
  const values: Record<string, string> = {
    ...filterValues(name),
    sdk: importPath(join(dest, 'assembly'), join(root, 'sdk', 'assembly')),
    // In a checkout the build passes sdk/assembly/exports.ts to asc as a second entry.
    callbacks: '',
    harness: importPath(join(dest, 'test'), join(root, 'sdk', 'harness', 'index.ts')),
    buildScript: importPath(join(dest, 'test'), join(root, 'scripts', 'build-filters.js')),
    wasm: importPath(join(dest, 'test'), join(root, 'build', 'filters', `${name}.wasm`)),
    testPath: relative(root, join(dest, 'test', `${name}.test.ts`)).split(sep).join('/'),
  };
  // The template's test is named after the filter.
  const files = listFiles(template).map((file): [string, string] => [join(template, file), file === join('test', 'filter.test.ts') ? join('test', `${name}.test.ts`) : file]);
  return writeFilled(dest, files, values, 'sdk/template');
}

/**
 * Creates a standalone filter project in `destDir` (default ./<name>): the template's filter
 * importing the SDK from the sluice package, its schema and example configuration, and
 * sdk/standalone's package.json (build, test and push scripts), README, .gitignore and a harness
 * test run by `node --test`.
 */
export function scaffoldProject(name: string, destDir: string): string[] {
  checkName(name);
  const dest = resolve(destDir);
  const root = packageRoot();
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const values: Record<string, string> = {
    ...filterValues(name),
    sdk: 'sluice/sdk/assembly',
    callbacks: '\n// The proxy_on_* callbacks the host calls, from the SDK: keep this line.\nexport * from "sluice/sdk/assembly/exports";\n',
    version,
  };
  const template = join(root, 'sdk', 'template');
  const standalone = join(root, 'sdk', 'standalone');
  const files: [string, string][] = [
    [join(template, 'assembly', 'index.ts'), join('assembly', 'index.ts')],
    [join(template, 'config.schema.json'), 'config.schema.json'],
    // npm leaves .gitignore files out of packages: the template's is named gitignore.
    ...listFiles(standalone).map((file): [string, string] => [
      join(standalone, file),
      file === 'gitignore' ? '.gitignore' : file === join('test', 'filter.test.js') ? join('test', `${name}.test.js`) : file,
    ]),
  ];
  return writeFilled(dest, files, values, 'sdk/standalone');
}
