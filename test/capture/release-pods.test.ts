// `sluice cni uninstall --release-pods DIR` (root on Linux, with nft): the last step of taking
// capture off a node: the rules a proxy left in its pods' netns are removed, so those pods talk
// directly again; records of pods that are gone are dropped; a record that is not JSON is left.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { captureUnavailable } from '../../runtime/capture/index.ts';
import { installRules, NFT } from '../../runtime/capture/nft-rules.ts';
import { spawnSluice } from '../helpers/sluice-run.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const why = captureUnavailable() ?? (spawnSync(NFT, ['--version']).status === 0 ? undefined : 'nft is not installed');
const run = skipUnless(why);

const netns = `sl-rel-${process.pid % 10000}${Math.random().toString(36).slice(2, 5)}`;
const path = `/var/run/netns/${netns}`;
if (!why) {
  test.before(() => void spawnSync('ip', ['netns', 'add', netns]));
  test.after.always(() => void spawnSync('ip', ['netns', 'del', netns]));
}
// NFT is nft's absolute path: under npx, node_modules/.bin has another `nft`.
const tables = () => spawnSync('nsenter', [`--net=${path}`, NFT, 'list', 'tables'], { encoding: 'utf8' }).stdout.trim();

run('uninstall --release-pods removes the recorded pods\' capture rules and records', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-release-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pods = join(dir, 'pods');
  await mkdir(pods);
  await mkdir(join(dir, 'bin'));
  await mkdir(join(dir, 'net.d'));
  await installRules(path, { outboundPorts: [], inboundPorts: [], outboundCidrs: [], inboundSources: [] }, ['ip', 'ip6']);
  t.is(tables(), 'table ip sluice\ntable ip6 sluice');
  await writeFile(join(pods, 'c1.json'), JSON.stringify({ containerId: 'c1', netns: path, namespace: 'default', name: 'web-0' }));
  await writeFile(join(pods, 'c2.json'), JSON.stringify({ containerId: 'c2', netns: '/var/run/netns/sluice-gone-pod', namespace: 'default', name: 'old-0' }));
  await writeFile(join(pods, 'c3.json'), 'not json');

  const p = spawnSluice(['cni', 'uninstall', '--cni-bin-dir', join(dir, 'bin'), '--cni-conf-dir', join(dir, 'net.d'), '--release-pods', pods]);
  t.is(await p.exited, 0, p.stderr());
  t.is(tables(), '', 'no sluice table left in the pod');
  t.deepEqual(await readdir(pods), ['c3.json']);
  const msgs = p.stderr().trim().split('\n').map((l) => JSON.parse(l).msg);
  t.deepEqual(msgs, [
    'sluice-cni was not chained in any config',
    'pod default/web-0 released: its capture rules are removed',
    'pod default/old-0 is gone; record removed',
    `${join(pods, 'c3.json')} is not a pod record (Unexpected token 'o', "not json" is not valid JSON); left as it is`,
    'released 3 of 3 recorded pods',
  ]);
  // Again: nothing left to do, still success (a DaemonSet's init container may run twice).
  const again = spawnSluice(['cni', 'uninstall', '--cni-bin-dir', join(dir, 'bin'), '--cni-conf-dir', join(dir, 'net.d'), '--release-pods', join(dir, 'none')]);
  t.is(await again.exited, 0);
  t.false(existsSync(join(dir, 'none')));
});

test('--release-pods goes with uninstall only', async (t) => {
  const p = spawnSluice(['cni', 'install', '--release-pods', '/tmp/x']);
  t.is(await p.exited, 2);
  t.is(p.stderr(), 'sluice cni: --release-pods goes with `uninstall`\n');
});
