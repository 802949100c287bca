// Types of scripts/build-filters.js, for TypeScript callers (tests, scripts/build.js users).

export interface BuildTarget {
  kind: 'filter' | 'fixture';
  name: string;
  entry: string;
  usesSdk: boolean;
  config?: string;
  inputs: string[];
  wasm: string;
}

export interface BuildOptions {
  /** Repository root (default: this checkout). */
  root?: string;
  /** Output root (default <root>/build). */
  outDir?: string;
  /** Names of the filters or fixtures to build; default: all. */
  only?: string[];
  /** false skips filters. */
  filters?: boolean;
  /** false skips fixtures. */
  fixtures?: boolean;
  /** Rebuild even when up to date. */
  force?: boolean;
  /** Receives one line per target built. */
  log?: (line: string) => void;
}

export interface BuildResult {
  kind: 'filter' | 'fixture';
  name: string;
  wasm: string;
  built: boolean;
  ms: number;
}

export const ROOT: string;
export function ascArgs(target: BuildTarget, root?: string): string[];
export function listTargets(opts?: { root?: string; outDir?: string }): Promise<BuildTarget[]>;
export function buildFilters(opts?: BuildOptions): Promise<BuildResult[]>;
export function compile(target: BuildTarget, root?: string): Promise<void>;
