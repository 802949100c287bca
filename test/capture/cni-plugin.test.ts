// sluice-cni invoked directly as a runtime would (environment + stdin), for what needs no
// namespaces: VERSION, config validation, prevResult passed through for pods left alone,
// failOpen, and the errors when the node proxy is absent. Needs the Go-built plugin.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const PLUGIN = join(repoRoot, 'build/cni/sluice-cni');
const why = existsSync(PLUGIN) ? undefined : `${PLUGIN} is missing (npm run build needs Go on PATH to build it)`;
const run = skipUnless(why, test);

const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:00:05', sandbox: '/var/run/netns/x' }],
  ips: [{ address: '10.244.0.5/24', gateway: '10.244.0.1', interface: 0 }],
};
const missingSocket = '/nonexistent/sluice-test/cni.sock';

function plugin(command: string, config: Record<string, unknown>, env: Record<string, string> = {}) {
  const r = spawnSync(PLUGIN, [], {
    input: JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'sluice-cni', proxySocket: missingSocket, ...config }),
    encoding: 'utf8',
    env: { CNI_COMMAND: command, CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/does-not-exist', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0', ...env },
  });
  return { status: r.status, out: r.stdout ? JSON.parse(r.stdout) : undefined };
}

run('VERSION lists the spec versions the plugin speaks', (t) => {
  const { status, out } = plugin('VERSION', {});
  t.is(status, 0);
  t.deepEqual(out, { cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
});

run('a bad config is refused with CNI code 7 naming the field', (t) => {
  const ports = plugin('ADD', { prevResult, excludeOutboundPorts: [0] });
  t.is(ports.status, 1);
  t.like(ports.out, { code: 7, msg: 'sluice-cni: invalid plugin config: excluded ports must be from 1 to 65535, got 0' });
  const cidr = plugin('ADD', { prevResult, excludeOutboundCIDRs: ['10.0.0.0'] });
  t.like(cidr.out, { code: 7, msg: 'sluice-cni: invalid plugin config: "10.0.0.0" in excludeOutboundCIDRs/excludeInboundSources is not a CIDR (write 10.0.0.0/8, or 10.0.0.1/32 for one address)' });
  const json = spawnSync(PLUGIN, [], { input: '{not json', encoding: 'utf8', env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/x', CNI_IFNAME: 'eth0', CNI_PATH: '/x' } });
  t.is(json.status, 1);
  t.is(JSON.parse(json.stdout).code, 6);
});

run('ADD without prevResult says the plugin must be chained', (t) => {
  const { status, out } = plugin('ADD', {});
  t.is(status, 1);
  t.like(out, { code: 7, msg: 'sluice-cni: no prevResult; sluice-cni is a chained plugin and must come after the primary plugin (bridge, calico, cilium...) in the conflist' });
});

run('ADD with the proxy absent fails with code 11 and what to check; failOpen passes prevResult on instead', (t) => {
  const closed = plugin('ADD', { prevResult });
  t.is(closed.status, 1);
  t.is(closed.out.code, 11);
  t.regex(closed.out.msg, /^sluice-cni: cannot capture pod default\/web-0 \(container c1\): the Sluice node proxy is not running on this node \(the node proxy is not reachable on \/nonexistent\/sluice-test\/cni\.sock .*\); the pod is not started uncaptured\. Check the sluice DaemonSet pod on this node, or set failOpen/);
  const open = plugin('ADD', { prevResult, failOpen: true });
  t.is(open.status, 0);
  t.deepEqual(open.out, prevResult);
});

run('pods left alone get prevResult unchanged without the proxy: excluded namespace, annotation, host network', (t) => {
  t.deepEqual(plugin('ADD', { prevResult, excludeNamespaces: ['default'] }).out, prevResult);
  t.deepEqual(plugin('ADD', { prevResult, runtimeConfig: { 'io.kubernetes.cri.pod-annotations': { 'sluice.dev/capture': 'disabled' } } }).out, prevResult);
  // The node's own netns: skel refuses it (code 8) before sluice-cni is asked, unless the runtime
  // sets CNI_NETNS_OVERRIDE; then sluice-cni leaves the pod alone itself.
  t.deepEqual(plugin('ADD', { prevResult }, { CNI_NETNS: '/proc/self/ns/net', CNI_NETNS_OVERRIDE: '1' }).out, prevResult);
});

run('DEL succeeds when the proxy and the netns are both gone; STATUS reports the proxy down', (t) => {
  t.is(plugin('DEL', {}).status, 0);
  t.is(plugin('DEL', {}).status, 0);
  const status = plugin('STATUS', { cniVersion: '1.1.0' }, { CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '' });
  t.is(status.status, 1);
  t.is(status.out.code, 50);
  t.regex(status.out.msg, /the Sluice node proxy is not ready .*new pods cannot be captured/);
  t.is(plugin('STATUS', { cniVersion: '1.1.0', failOpen: true }, { CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '' }).status, 0);
});
