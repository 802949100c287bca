// Builds the hand-written WebAssembly text fixtures (test/fixtures/**/*.wat) into
// build/fixtures/<same path>.wasm with binaryen's text parser. Up-to-date outputs are skipped.
// A file whose first line is `;; @names` keeps its name section (function and local names, as
// debug builds of filters have); binaryen drops it otherwise.

import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import binaryen from 'binaryen';

async function* walk(dir) {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.name.endsWith('.wat')) yield p;
  }
}

async function newer(src, out) {
  try {
    return (await stat(out)).mtimeMs >= (await stat(src)).mtimeMs;
  } catch {
    return false;
  }
}

export async function buildFixtures({ root = process.cwd(), log = console.log } = {}) {
  const srcRoot = join(root, 'test/fixtures');
  let built = 0;
  for await (const src of walk(srcRoot)) {
    const out = join(root, 'build/fixtures', relative(srcRoot, src).replace(/\.wat$/, '.wasm'));
    if (await newer(src, out)) continue;
    const text = await readFile(src, 'utf8');
    let module;
    try {
      module = binaryen.parseText(text);
    } catch (error) {
      throw new Error(`${relative(root, src)}: not valid WebAssembly text: ${error.message}`);
    }
    module.setFeatures(binaryen.Features.All);
    if (!module.validate()) throw new Error(`${relative(root, src)}: binaryen validation failed (see above)`);
    await mkdir(dirname(out), { recursive: true });
    const names = /^;;\s*@names\b/.test(text);
    const debugInfo = binaryen.getDebugInfo();
    binaryen.setDebugInfo(names);
    try {
      await writeFile(out, module.emitBinary());
    } finally {
      binaryen.setDebugInfo(debugInfo);
      module.dispose();
    }
    built++;
  }
  log(`fixtures: ${built} built`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildFixtures().catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}
