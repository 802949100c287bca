// `npm run build`: AssemblyScript filters and fixtures, WAT fixtures, capture's native parts
// (Go CNI plugin, N-API addon), then TypeScript (dist/).
// Each step skips outputs that are newer than their inputs, so a second run is quick.

import { spawnSync } from 'node:child_process';
import { buildFilters } from './build-filters.js';
import { buildFixtures } from './build-fixtures.js';
import { buildNative } from './build-native.js';

const started = Date.now();
try {
  await buildFilters();
  await buildFixtures();
  await buildNative();
} catch (error) {
  console.error(`build failed: ${error.message}`);
  process.exit(1);
}
const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error('build failed: TypeScript errors above');
  process.exit(1);
}
console.log(`build: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
