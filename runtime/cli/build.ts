// `sluice build [dir]`: compiles the filter in a folder to Wasm. A filter of a Sluice checkout
// (`filters/<name>`) goes through scripts/build-filters.js as `npm run build` does; a standalone
// project (made by `sluice new` outside a checkout) is compiled with asc against the SDK installed
// in its node_modules, to `<dir>/build/<name>.wasm`.

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from './paths.ts';

export interface BuiltFilter {
  /** The filter's name: its folder in a checkout, its package.json name in a standalone project. */
  name: string;
  /** The root id the filter registers (the second argument of registerRootContext), else its name. */
  rootId: string;
  wasm: string;
  standalone: boolean;
  /** The filter's example configuration: config.example.json, else the schema's first example, else its top-level defaults. */
  exampleConfig?: unknown;
}

/** The SDK's abort, as asc names it when the SDK comes from node_modules/sluice. */
const STANDALONE_ABORT = 'abort=~lib/sluice/sdk/assembly/abort/sluiceAbort';

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file} is not valid JSON: ${(error as Error).message}`);
  }
}

function exampleConfig(dir: string): unknown {
  const example = readJson(join(dir, 'config.example.json'));
  if (example !== undefined) return example;
  const schema = readJson(join(dir, 'config.schema.json')) as { examples?: unknown[]; properties?: Record<string, { default?: unknown }> } | undefined;
  if (Array.isArray(schema?.examples) && schema.examples.length > 0) return schema.examples[0];
  if (!schema?.properties) return undefined;
  const defaults = Object.fromEntries(Object.entries(schema.properties).filter(([, p]) => p && p.default !== undefined).map(([k, p]) => [k, p.default]));
  return Object.keys(defaults).length > 0 ? defaults : undefined;
}

function rootIdOf(source: string): string | undefined {
  return /registerRootContext\s*\([\s\S]*?,\s*["']([^"']*)["']\s*\)/.exec(source)?.[1];
}

/** The checkout a `filters/<name>` folder belongs to, if it is one. */
function checkoutOf(dir: string): string | undefined {
  const root = resolve(dir, '..', '..');
  return basename(dirname(dir)) === 'filters' && existsSync(join(root, 'scripts', 'build-filters.js')) && existsSync(join(root, 'sdk', 'assembly', 'exports.ts')) ? root : undefined;
}

export async function buildFilterDir(dirArg: string, log: (line: string) => void = () => {}): Promise<BuiltFilter> {
  const dir = resolve(dirArg);
  const entry = join(dir, 'assembly', 'index.ts');
  if (!existsSync(entry)) {
    throw new Error(`no filter in ${dir}: expected assembly/index.ts there (create one with \`sluice new <name>\`, or give the filter's folder)`);
  }
  const source = readFileSync(entry, 'utf8');
  const checkout = checkoutOf(dir);
  if (checkout) {
    const name = basename(dir);
    const { buildFilters } = (await import(pathToFileURL(join(checkout, 'scripts', 'build-filters.js')).href)) as typeof import('../../scripts/build-filters.js');
    const [result] = await buildFilters({ root: checkout, only: [name], fixtures: false, log });
    return { name, rootId: rootIdOf(source) ?? name, wasm: result.wasm, standalone: false, exampleConfig: exampleConfig(dir) };
  }
  const pkg = readJson(join(dir, 'package.json')) as { name?: unknown } | undefined;
  const name = typeof pkg?.name === 'string' ? pkg.name.replace(/^@[^/]+\//, '') : basename(dir);
  if (!/from\s+["']sluice\/sdk\/assembly["']/.test(source)) {
    throw new Error(`${relative(process.cwd(), entry) || entry} does not import the SDK as "sluice/sdk/assembly": a standalone filter imports it from the sluice package (see \`sluice new\`)`);
  }
  if (!existsSync(join(dir, 'node_modules', 'sluice', 'sdk', 'assembly', 'index.ts'))) {
    throw new Error(`the sluice package is not installed in ${dir}: run \`npm install\` there first`);
  }
  const wasm = join(dir, 'build', `${name}.wasm`);
  await compileStandalone(dir, wasm);
  log(`built ${relative(process.cwd(), wasm) || wasm}`);
  return { name, rootId: rootIdOf(source) ?? name, wasm, standalone: true, exampleConfig: exampleConfig(dir) };
}

/** asc with the same options as the checkout's asconfig.json release target. */
async function compileStandalone(dir: string, wasm: string): Promise<void> {
  const asconfig = readJson(join(packageRoot(), 'asconfig.json')) as { targets: { release: Record<string, unknown> }; options: Record<string, unknown> };
  const options = { ...asconfig.options, ...asconfig.targets.release };
  const args = ['assembly/index.ts', '--baseDir', dir, '--use', STANDALONE_ABORT, '--outFile', relative(dir, wasm)];
  for (const [key, value] of Object.entries(options)) {
    if (key === 'use') continue;
    // Transforms are paths relative to the package's asconfig.json, not to the filter's folder.
    if (key === 'transform') {
      for (const path of value as string[]) args.push('--transform', resolve(packageRoot(), path));
      continue;
    }
    if (typeof value === 'boolean') {
      if (value) args.push(`--${key}`);
    } else args.push(`--${key}`, String(value));
  }
  const { default: asc } = await import('assemblyscript/asc');
  const stdout = asc.createMemoryStream();
  const stderr = asc.createMemoryStream();
  let binary: Uint8Array | undefined;
  const result = await asc.main(args, {
    stdout,
    stderr,
    writeFile(filename: string, contents: Uint8Array | string) {
      if (filename.endsWith('.wasm')) binary = contents as Uint8Array;
    },
  });
  if (result.error || !binary) {
    const output = [stderr.toString(), stdout.toString()].filter((s) => s.trim() !== '').join('\n');
    throw new Error(`building ${dir} failed: ${result.error?.message ?? 'asc produced no .wasm'}\n  command: npx asc ${args.join(' ')}\n${output.replace(/^/gm, '  ')}`);
  }
  await mkdir(dirname(wasm), { recursive: true });
  const temp = `${wasm}.${process.pid}.tmp`;
  try {
    await writeFile(temp, binary);
    await rename(temp, wasm);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
