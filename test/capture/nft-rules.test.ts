// The in-pod rules as text: what ADD installs for a given set of exclusions, per family.
import test from 'ava';
import { renderRules, renderTable } from '../../runtime/capture/index.ts';

const ex = { outboundPorts: [22, 9999], inboundPorts: [8081], outboundCidrs: ['10.96.0.0/12', 'fd00:96::/108'], inboundSources: ['10.244.0.1', 'fd00:244::1'] };

test('the IPv4 table: mark, loopback and exclusions return before the redirects', (t) => {
  t.is(
    renderTable('ip', ex),
    `table ip sluice {
  chain output {
    type nat hook output priority -100; policy accept;
    meta mark 0x00000539 return
    oifname "lo" return
    ip daddr 127.0.0.0/8 return
    ip daddr { 10.96.0.0/12 } return
    tcp dport { 22, 9999 } return
    meta l4proto tcp redirect to :15001
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    iifname "lo" return
    ip saddr { 10.244.0.1 } return
    tcp dport { 15001, 15006, 15008, 8081 } return
    meta l4proto tcp redirect to :15006
  }
}
`,
  );
});

test('the IPv6 table takes the IPv6 exclusions; a pod gets one table per family it has', (t) => {
  const v6 = renderTable('ip6', ex);
  t.true(v6.startsWith('table ip6 sluice {'));
  t.true(v6.includes('    ip6 daddr ::1 return\n    ip6 daddr { fd00:96::/108 } return\n'));
  t.true(v6.includes('    ip6 saddr { fd00:244::1 } return\n'));
  t.false(v6.includes('10.'));
  t.is(renderRules(ex, ['ip', 'ip6']), renderTable('ip', ex) + v6);
  // No exclusions configured: no empty sets (nft rejects `{ }`).
  const bare = renderTable('ip', { outboundPorts: [], inboundPorts: [], outboundCidrs: [], inboundSources: [] });
  t.false(bare.includes('{ }'));
  t.true(bare.includes('    tcp dport { 15001, 15006, 15008 } return\n'));
});
