#!/usr/bin/env node
// Compiles AssemblyScript filters (filters/*/assembly/index.ts → build/filters/<name>.wasm) and
// test fixtures (test/fixtures/as/*.ts → build/fixtures/<name>.wasm) with asc, skipping up-to-date ones.
//
// Per target this runs the equivalent of (from the repository root):
//   npx asc filters/<name>/assembly/index.ts sdk/assembly/exports.ts \
//       --config asconfig.json --target release -o build/filters/<name>.wasm
// sdk/assembly/exports.ts is the second entry because asc exports the top-level exports of every
// entry file: that is how the proxy_on_* callbacks reach the module without a re-export line in
// the filter. A fixture that does not import the SDK ("raw" ABI fixtures) gets
// sdk/assembly/abort.ts instead, only so the asconfig `use abort=...` resolves.
//
// Usage: node scripts/build-filters.js [--force] [--quiet] [name ...]

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root (this file lives in <root>/scripts). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const SDK_DIR = 'sdk/assembly';
const SDK_EXPORTS = 'sdk/assembly/exports.ts';
const SDK_ABORT = 'sdk/assembly/abort.ts';
/** The asc transform asconfig.json names: it drops the callbacks a filter does not override. */
const SDK_TRANSFORM = 'sdk/transform/prune-callbacks.js';
const FIXTURES_DIR = 'test/fixtures/as';

/**
 * The asc arguments for one target, paths relative to `root` (asc runs with --baseDir root, so the
 * SDK's internal path — and with it `use abort=sdk/assembly/abort/sluiceAbort` — is stable).
 */
export function ascArgs(target, root = ROOT) {
  const rel = (p) => path.relative(root, p).split(path.sep).join('/');
  const entries = [rel(target.entry), target.usesSdk ? SDK_EXPORTS : SDK_ABORT];
  const config = target.config ? rel(target.config) : 'asconfig.json';
  return [...entries, '--baseDir', root, '--config', config, '--target', 'release', '--outFile', rel(target.wasm)];
}

/**
 * Lists the targets: every filters/<name>/assembly/index.ts and every test/fixtures/as/<name>.ts.
 * A filter folder may hold its own asconfig.json (extending the root one) to change options.
 */
export async function listTargets({ root = ROOT, outDir = path.join(root, 'build') } = {}) {
  const targets = [];
  const filtersDir = path.join(root, 'filters');
  for (const name of await dirNames(filtersDir)) {
    const dir = path.join(filtersDir, name);
    const entry = path.join(dir, 'assembly', 'index.ts');
    if (!existsSync(entry)) continue;
    const config = path.join(dir, 'asconfig.json');
    targets.push({
      kind: 'filter',
      name,
      entry,
      usesSdk: true,
      config: existsSync(config) ? config : undefined,
      inputs: [path.join(dir, 'assembly'), ...(existsSync(config) ? [config] : [])],
      wasm: path.join(outDir, 'filters', `${name}.wasm`),
    });
  }
  const fixturesDir = path.join(root, FIXTURES_DIR);
  for (const file of await fileNames(fixturesDir)) {
    if (!file.endsWith('.ts') || file.endsWith('.d.ts')) continue;
    const entry = path.join(fixturesDir, file);
    const source = await readFile(entry, 'utf8');
    targets.push({
      kind: 'fixture',
      name: file.slice(0, -3),
      entry,
      usesSdk: /from\s+["'][^"']*sdk\/assembly(\/index)?["']/.test(source),
      // Fixtures may share helpers in their folder: any change there rebuilds them all.
      inputs: [fixturesDir],
      wasm: path.join(outDir, 'fixtures', `${file.slice(0, -3)}.wasm`),
    });
  }
  return targets;
}

/**
 * Builds filters and fixtures. Options:
 *   root      repository root (default: this checkout)
 *   outDir    output root (default <root>/build)
 *   only      names to build (filters or fixtures); default: all
 *   filters   false to skip filters;  fixtures  false to skip fixtures
 *   force     rebuild even when up to date
 *   log       (line: string) => void for progress lines (default: none)
 * Resolves to [{ kind, name, wasm, built, ms }]; rejects with the compiler's output on failure.
 */
export async function buildFilters(opts = {}) {
  const root = opts.root ?? ROOT;
  const log = opts.log ?? (() => {});
  let targets = await listTargets({ root, outDir: opts.outDir ?? path.join(root, 'build') });
  if (opts.filters === false) targets = targets.filter((t) => t.kind !== 'filter');
  if (opts.fixtures === false) targets = targets.filter((t) => t.kind !== 'fixture');
  if (opts.only) {
    const wanted = new Set(opts.only);
    const unknown = [...wanted].filter((n) => !targets.some((t) => t.name === n));
    if (unknown.length > 0) {
      throw new Error(`build-filters: no filter or fixture named ${unknown.join(', ')} (looked in filters/*/assembly/index.ts and ${FIXTURES_DIR}/*.ts)`);
    }
    targets = targets.filter((t) => wanted.has(t.name));
  }
  const shared = [path.join(root, SDK_DIR), path.join(root, 'asconfig.json'), fileURLToPath(import.meta.url), path.join(root, SDK_TRANSFORM)];
  const results = [];
  for (const target of targets) {
    const inputs = target.usesSdk ? [...shared, ...target.inputs] : [path.join(root, SDK_ABORT), ...shared.slice(1), ...target.inputs];
    if (!opts.force && (await upToDate(target.wasm, inputs))) {
      results.push({ kind: target.kind, name: target.name, wasm: target.wasm, built: false, ms: 0 });
      continue;
    }
    const started = Date.now();
    await compile(target, root);
    const ms = Date.now() - started;
    log(`built ${path.relative(root, target.wasm)} (${ms} ms)`);
    results.push({ kind: target.kind, name: target.name, wasm: target.wasm, built: true, ms });
  }
  return results;
}

// asc keeps compiler state in module-level objects (binaryen's global options among them), so two
// compilations in one process must not interleave: they queue here. Separate processes are safe.
let queue = Promise.resolve();

/** Compiles one target; the .wasm appears atomically (temp file + rename). */
export function compile(target, root = ROOT) {
  const run = queue.then(() => compileNow(target, root));
  queue = run.catch(() => {});
  return run;
}

async function compileNow(target, root) {
  const { default: asc } = await import('assemblyscript/asc');
  const args = ascArgs(target, root);
  const stdout = asc.createMemoryStream();
  const stderr = asc.createMemoryStream();
  let binary;
  const result = await asc.main(args, {
    stdout,
    stderr,
    // Keep the output in memory so that a half-written .wasm is never visible to a test running in parallel.
    writeFile(filename, contents) {
      if (filename.endsWith('.wasm')) binary = contents;
    },
  });
  if (result.error || !binary) {
    const output = [stderr.toString(), stdout.toString()].filter((s) => s.trim() !== '').join('\n');
    const reason = result.error ? result.error.message : 'asc produced no .wasm';
    const error = new Error(
      `build-filters: compiling ${target.kind} "${target.name}" failed: ${reason}\n` +
        `  command: npx asc ${args.join(' ')}\n${output.replace(/^/gm, '  ')}`,
      { cause: result.error ?? undefined },
    );
    throw error;
  }
  await mkdir(path.dirname(target.wasm), { recursive: true });
  const temp = `${target.wasm}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await writeFile(temp, binary);
    await rename(temp, target.wasm);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** True when `wasm` exists and is newer than every file under `inputs` (files or folders). */
async function upToDate(wasm, inputs) {
  let built;
  try {
    built = (await stat(wasm)).mtimeMs;
  } catch {
    return false;
  }
  for (const input of inputs) {
    if ((await newestMtime(input)) >= built) return false;
  }
  return true;
}

async function newestMtime(p) {
  let info;
  try {
    info = await stat(p);
  } catch {
    return 0;
  }
  if (!info.isDirectory()) return info.mtimeMs;
  let newest = info.mtimeMs; // a deleted file changes its folder's mtime
  for (const entry of await readdir(p)) newest = Math.max(newest, await newestMtime(path.join(p, entry)));
  return newest;
}

async function dirNames(dir) {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

async function fileNames(dir) {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isFile()).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

async function main(argv) {
  const force = argv.includes('--force');
  const quiet = argv.includes('--quiet');
  const names = argv.filter((a) => !a.startsWith('--'));
  const results = await buildFilters({ force, only: names.length > 0 ? names : undefined, log: quiet ? undefined : console.log });
  if (!quiet) {
    const skipped = results.filter((r) => !r.built).length;
    if (skipped > 0) console.log(`${skipped} up to date`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error.message);
    process.exitCode = 1;
  });
}
