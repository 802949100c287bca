#!/usr/bin/env node
// The `sluice` command. It runs the compiled TypeScript in dist/ (made by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/runtime/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('sluice: dist/ is missing; run `npm run build` in the sluice checkout first');
  process.exit(1);
}
const { main: run } = await import(main);
process.exitCode = await run(process.argv.slice(2));
