// The real Helm CLI for the chart tests: built once per machine by scripts/build-helm.sh (through
// the Go module proxy) into ~/.cache/sluice/helm/<version>/; built here when missing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './fixtures.ts';

let found: { path?: string; why?: string } | undefined;

/** The helm binary's path, or why there is none (the build failed: its output). */
export function helm(): { path?: string; why?: string } {
  if (found) return found;
  const r = spawnSync('bash', [join(repoRoot, 'scripts/build-helm.sh')], { encoding: 'utf8', timeout: 15 * 60_000 });
  const dir = r.stdout.trim().split('\n').pop() ?? '';
  const path = join(dir, 'helm');
  found = r.status === 0 && existsSync(path) ? { path } : { why: `scripts/build-helm.sh could not build helm: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' ')}` };
  return found;
}

/** Runs helm; returns its output or throws with its stderr. */
export function runHelm(args: string[]): string {
  const { path } = helm();
  if (!path) throw new Error(helm().why);
  const r = spawnSync(path, args, { encoding: 'utf8', cwd: repoRoot, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}
