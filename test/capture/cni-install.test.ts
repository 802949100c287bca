// `sluice cni install|uninstall` on temp CNI dirs: chaining into the node's primary config,
// lifting a .conf, idempotence, repair after the primary CNI rewrites its file, uninstall.

import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { chain, install, uninstall } from '../../runtime/capture/cni-install.ts';
import { SluiceError } from '../../runtime/errors.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';

const bridge = { cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.0.0/24' } }, { type: 'portmap', capabilities: { portMappings: true } }] };
const entry = { proxySocket: '/var/run/sluice/cni.sock', capabilities: { 'io.kubernetes.cri.pod-annotations': true } };

async function dirs(t: { teardown(fn: () => Promise<void>): void }) {
  const root = await mkdtemp(join(tmpdir(), 'sluice-cni-install-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const binDir = join(root, 'bin');
  const confDir = join(root, 'net.d');
  const binary = join(root, 'sluice-cni-built');
  await writeFile(binary, '#!/bin/sh\n');
  await Promise.all([binDir, confDir].map((dir) => mkdir(dir)));
  return { root, binDir, confDir, binary };
}

const readJson = async (f: string) => JSON.parse(await readFile(f, 'utf8'));

test('install copies the plugin and chains it last into the first config by name; again changes nothing', async (t) => {
  const d = await dirs(t);
  await writeFile(join(d.confDir, '10-bridge.conflist'), JSON.stringify(bridge));
  await writeFile(join(d.confDir, '99-other.conflist'), JSON.stringify({ ...bridge, name: 'other' }));
  const first = await install({ ...d, entry });
  t.deepEqual(first, { file: join(d.confDir, '10-bridge.conflist'), changed: true });
  t.deepEqual(await readJson(first.file), { ...bridge, plugins: [...bridge.plugins, { type: 'sluice-cni', ...entry }] });
  t.deepEqual(await readJson(join(d.confDir, '99-other.conflist')), { ...bridge, name: 'other' });
  t.is((await stat(join(d.binDir, 'sluice-cni'))).mode & 0o777, 0o755);
  const text = await readFile(first.file, 'utf8');
  t.deepEqual(await install({ ...d, entry }), { file: first.file, changed: false });
  t.is(await readFile(first.file, 'utf8'), text);
  // A changed entry replaces the old one in place, never a second copy.
  await install({ ...d, entry: { ...entry, failOpen: true } });
  t.deepEqual((await readJson(first.file)).plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'sluice-cni']);
  t.is((await readJson(first.file)).plugins[2].failOpen, true);
  t.deepEqual((await readdir(d.confDir)).sort(), ['10-bridge.conflist', '99-other.conflist']);
});

test('a single-plugin .conf is lifted into a .conflist of the same name', async (t) => {
  const d = await dirs(t);
  await writeFile(join(d.confDir, '10-flannel.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'cbr0', type: 'flannel', delegate: { isDefaultGateway: true } }));
  const { file } = await install({ ...d, entry });
  t.is(file, join(d.confDir, '10-flannel.conflist'));
  t.deepEqual(await readdir(d.confDir), ['10-flannel.conflist']);
  t.deepEqual(await readJson(file), { cniVersion: '0.4.0', name: 'cbr0', plugins: [{ type: 'flannel', delegate: { isDefaultGateway: true } }, { type: 'sluice-cni', ...entry }] });
});

test('install without a primary config, or with a broken one, says what to do', async (t) => {
  const d = await dirs(t);
  const none = await t.throwsAsync(install({ ...d, entry }), { instanceOf: SluiceError });
  t.is(none!.code, 'SLUICE_ERR_CNI_INSTALL');
  t.is(none!.message, `no CNI config in ${d.confDir}: install the primary CNI (bridge, Calico, Cilium...) first; sluice-cni chains after it`);
  await writeFile(join(d.confDir, '10-x.conflist'), '{"plugins": [');
  const broken = await t.throwsAsync(chain({ ...d, entry }), { instanceOf: SluiceError });
  t.regex(broken!.message, /^.*10-x\.conflist is not JSON \(.*\); fix or remove it, then install again$/);
});

test('uninstall removes the entry and the binary and leaves the primary chain as it was', async (t) => {
  const d = await dirs(t);
  const file = join(d.confDir, '10-bridge.conflist');
  await writeFile(file, JSON.stringify(bridge));
  await install({ ...d, entry });
  t.deepEqual(await uninstall(d), [file]);
  t.deepEqual(await readJson(file), bridge);
  await t.throwsAsync(stat(join(d.binDir, 'sluice-cni')), { code: 'ENOENT' });
  t.deepEqual(await uninstall(d), []);
});

test('sluice cni install --watch chains the plugin again when the primary CNI rewrites its config', async (t) => {
  const d = await dirs(t);
  const file = join(d.confDir, '10-bridge.conflist');
  await writeFile(file, JSON.stringify(bridge));
  const p = spawnSluice(['cni', 'install', '--watch', '--cni-bin-dir', d.binDir, '--cni-conf-dir', d.confDir, '--binary', d.binary]);
  t.teardown(() => void p.child.kill('SIGKILL'));
  await until('the first install', () => (p.stderr().includes('sluice-cni chained into') ? true : undefined));
  t.deepEqual((await readJson(file)).plugins.map((x: { type: string }) => x.type), ['bridge', 'portmap', 'sluice-cni']);
  // The primary CNI's installer writes its own file again, without sluice-cni.
  await writeFile(file, JSON.stringify(bridge));
  await until('the repair', () => (p.stderr().includes('sluice-cni chained again') ? true : undefined));
  t.deepEqual((await readJson(file)).plugins.map((x: { type: string }) => x.type), ['bridge', 'portmap', 'sluice-cni']);
  t.deepEqual((await readJson(file)).plugins[2], { type: 'sluice-cni', proxySocket: '/var/run/sluice/cni.sock', excludeNamespaces: ['kube-system'], capabilities: { 'io.kubernetes.cri.pod-annotations': true } });
  p.child.kill('SIGTERM');
  t.is(await p.exited, 0);
});

test('the watch\'s repair leaves an entry another installer chained (a newer one, another config) as it is; a missing or misplaced one it chains', async (t) => {
  const d = await dirs(t);
  const file = join(d.confDir, '10-bridge.conflist');
  const newer = { type: 'sluice-cni', proxySocket: '/var/run/sluice/cni.sock', excludeNamespaces: ['kube-system', 'monitoring'] };
  await writeFile(file, JSON.stringify({ ...bridge, plugins: [...bridge.plugins, newer] }));
  t.deepEqual(await chain({ confDir: d.confDir, entry }, true), { file, changed: false });
  t.deepEqual((await readJson(file)).plugins[2], newer);
  // At install (no ifMissing) the installer's own entry replaces it.
  t.is((await chain({ confDir: d.confDir, entry })).changed, true);
  t.deepEqual((await readJson(file)).plugins[2], { type: 'sluice-cni', ...entry });
  await writeFile(file, JSON.stringify({ ...bridge, plugins: [newer, ...bridge.plugins] }));
  t.is((await chain({ confDir: d.confDir, entry }, true)).changed, true);
  t.deepEqual((await readJson(file)).plugins.map((x: { type: string }) => x.type), ['bridge', 'portmap', 'sluice-cni']);
  await writeFile(file, JSON.stringify(bridge));
  t.is((await chain({ confDir: d.confDir, entry }, true)).changed, true);
  t.deepEqual((await readJson(file)).plugins.at(-1), { type: 'sluice-cni', ...entry });
});
