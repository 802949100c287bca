// Paths of compiled test fixtures and filters (built by `npm run build` into build/).
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

export const fixture = (name: string): string => `${root}build/fixtures/${name}.wasm`;
export const filterWasm = (name: string): string => `${root}build/filters/${name}.wasm`;
export const repoRoot = root;
