// Dependencies point one way: inside runtime/, abi ← engine ← host ← config ← proxy ← capture,
// tunnel, agent, identity ← cli (a folder imports only folders of its rank or below; errors.ts and
// log.ts sit with abi at the bottom), and
// sdk/ and controller/ reach the runtime only through runtime/index.ts. Every static import,
// `export ... from` and literal dynamic import of runtime/, sdk/ and controller/ is checked.

import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Rank of each part of runtime/: a file may import files of its own rank or lower. */
const RUNTIME_RANK: Record<string, number> = {
  abi: 0,
  'errors.ts': 0,
  'log.ts': 0,
  engine: 1,
  host: 2,
  config: 3,
  proxy: 4,
  capture: 5,
  identity: 5,
  tunnel: 5,
  agent: 5,
  cli: 6,
  'index.ts': 7,
};
const RUNTIME_ORDER = 'abi ← engine ← host ← config ← proxy ← capture, tunnel, agent, identity ← cli';

/** What the CLI may use of the controller: its module-source package (build, push) and the controller itself (`sluice controller`), by their indexes. */
const CLI_MAY_IMPORT = new Set(['controller/source/index.ts', 'controller/index.ts']);

function runtimePart(path: string): string {
  return path.split('/')[1];
}

/** Why `from` must not import `to` (both repository-relative, forward slashes), or undefined. */
export function wrongWay(from: string, to: string): string | undefined {
  const fromTop = from.split('/')[0];
  const toTop = to.split('/')[0];
  if (!['runtime', 'sdk', 'controller'].includes(toTop)) return undefined;
  if (fromTop === 'runtime') {
    const part = runtimePart(from);
    if (toTop === 'sdk') return 'the runtime must not import the SDK (the SDK sits on top of the runtime)';
    if (toTop === 'controller') {
      if (part === 'cli' && CLI_MAY_IMPORT.has(to)) return undefined;
      return part === 'cli'
        ? `the CLI uses the controller only through ${[...CLI_MAY_IMPORT].join(', ')}`
        : 'the runtime must not import the controller';
    }
    const fromRank = RUNTIME_RANK[part];
    const toRank = RUNTIME_RANK[runtimePart(to)];
    if (fromRank === undefined) return `runtime/${part} has no place in ${RUNTIME_ORDER}: add it to RUNTIME_RANK`;
    if (toRank === undefined) return `runtime/${runtimePart(to)} has no place in ${RUNTIME_ORDER}: add it to RUNTIME_RANK`;
    if (to === 'runtime/index.ts' && from !== to) return 'runtime/index.ts is the surface for other packages; import the module itself';
    if (toRank > fromRank) return `runtime/${part} is below runtime/${runtimePart(to)} (${RUNTIME_ORDER})`;
    return undefined;
  }
  if (toTop === 'runtime' && to !== 'runtime/index.ts') return `${fromTop}/ reaches the runtime only through runtime/index.ts`;
  if (fromTop === 'controller' && toTop === 'sdk') return 'the controller must not import the SDK';
  if (fromTop === 'sdk' && toTop === 'controller') return 'the SDK must not import the controller';
  return undefined;
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      // AssemblyScript sources (sdk/assembly, sdk/template/assembly) are the guest's, not the host's.
      if (entry.name !== 'assembly' && entry.name !== 'node_modules') out.push(...listTs(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      out.push(path);
    }
  }
  return out;
}

/** The relative imports of a file, resolved to repository-relative paths. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => relative(ROOT, resolve(ROOT, dirname(file), name)).split(sep).join('/'));
}

test('wrongWay flags imports against the direction and allows the rest', (t) => {
  t.is(wrongWay('runtime/config/load-config.ts', 'runtime/proxy/retry.ts'), 'runtime/config is below runtime/proxy (abi ← engine ← host ← config ← proxy ← capture, tunnel, agent, identity ← cli)');
  t.is(wrongWay('runtime/abi/host-functions.ts', 'runtime/host/header-map.ts'), 'runtime/abi is below runtime/host (abi ← engine ← host ← config ← proxy ← capture, tunnel, agent, identity ← cli)');
  t.is(wrongWay('runtime/cli/new.ts', 'sdk/index.ts'), 'the runtime must not import the SDK (the SDK sits on top of the runtime)');
  t.is(wrongWay('sdk/harness/index.ts', 'runtime/host/plugin.ts'), 'sdk/ reaches the runtime only through runtime/index.ts');
  t.is(wrongWay('controller/source/oci.ts', 'runtime/host/index.ts'), 'controller/ reaches the runtime only through runtime/index.ts');
  t.is(wrongWay('runtime/host/vm.ts', 'runtime/index.ts'), 'runtime/index.ts is the surface for other packages; import the module itself');
  t.is(wrongWay('runtime/proxy/node-proxy.ts', 'runtime/host/plugin.ts'), undefined);
  t.is(wrongWay('runtime/log.ts', 'runtime/abi/constants.ts'), undefined);
  t.is(wrongWay('runtime/cli/push.ts', 'controller/source/index.ts'), undefined);
  t.is(wrongWay('runtime/cli/run.ts', 'controller/index.ts'), undefined);
  t.is(wrongWay('runtime/cli/run.ts', 'controller/distribution/server.ts'), 'the CLI uses the controller only through controller/source/index.ts, controller/index.ts');
  t.is(wrongWay('runtime/proxy/router.ts', 'runtime/capture/index.ts'), 'runtime/proxy is below runtime/capture (abi ← engine ← host ← config ← proxy ← capture, tunnel, agent, identity ← cli)');
  t.is(wrongWay('sdk/harness/index.ts', 'runtime/index.ts'), undefined);
});

test('imports in runtime/, sdk/ and controller/ point one way', (t) => {
  const files = [...listTs('runtime'), ...listTs('sdk'), ...listTs('controller')];
  t.true(files.includes('runtime/host/index.ts') && files.includes('sdk/harness/index.ts'), `files found: ${files.length}`);
  const wrong: string[] = [];
  for (const file of files) {
    for (const target of importsOf(file)) {
      const why = wrongWay(file, target);
      if (why) wrong.push(`${file} imports ${target}: ${why}`);
    }
  }
  t.deepEqual(wrong, []);
});
