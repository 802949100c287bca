// A filter the node cannot run (`unavailable`: the controller never validated a version of it)
// on captured traffic, in network namespaces: FAIL_CLOSE answers the HTTP it selects with a 503
// naming it and closes the TCP it selects; FAIL_OPEN lets both through. Root on Linux only.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { until } from '../helpers/sluice-run.ts';
import { sh, Lab, labUnavailable, type Pod } from './netns-lab.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const why = labUnavailable();
const serial = skipUnless(why);

const lab = new Lab('10.249.7.0/24', 'fd00:5c:e2f::/64');
let a: Pod, b: Pod, c: Pod;
let proxy: Awaited<ReturnType<Lab['spawnIn']>> | undefined;

test.after.always(async () => {
  if (!why) await lab.destroy();
});

const REASON = 'the controller could not validate it: DigestMismatch: the module\'s sha256 is 1234, not abcd';

/** GET from inside a netns: the status line's code and the body, whatever the status. */
function getRaw(netns: string, url: string): { status: number; body: string; failed: string } {
  const script = `require('http').get(process.argv[1], (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b, failed: r.headers['x-sluice-filter-failed'] ?? '' }))); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
  const r = sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url]);
  if (r.status !== 0) throw new Error(`GET ${url} from ${netns} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

serial('captured traffic to a pod selected by an unavailable FAIL_CLOSE filter: HTTP gets a 503 naming it, TCP is closed; FAIL_OPEN passes both', async (t) => {
  await lab.create();
  a = lab.pod('a', 'team-a');
  b = lab.pod('b', 'team-a');
  c = lab.pod('c', 'team-a');
  const config = join(lab.dir, 'sluice.yaml');
  const workload = (name: string, inbound: string[]) => `  - { namespace: team-a, name: ${name}, identity: spiffe://cluster.local/ns/team-a/sa/default, filters: { outbound: [], inbound: ${JSON.stringify(inbound)} } }`;
  await writeFile(
    config,
    `admin: { address: 127.0.0.1:0 }
listeners:
  - { name: capture-outbound, address: 127.0.0.1:0, protocol: http, routes: [{ name: own, match: { prefix: / }, directResponse: { status: 404 } }] }
  - { name: capture-inbound, address: 127.0.0.1:0, protocol: http, filters: [team-a.guard, team-a.stats], routes: [{ name: own, match: { prefix: / }, directResponse: { status: 404 } }] }
filters:
  - { name: team-a.guard, unavailable: ${JSON.stringify(REASON)}, failStrategy: FAIL_CLOSE }
  - { name: team-a.stats, unavailable: "the controller has not validated it yet", failStrategy: FAIL_OPEN }
workloads:
${workload('a', [])}
${workload('b', ['team-a.guard', 'team-a.stats'])}
${workload('c', ['team-a.stats'])}
`,
  );
  proxy = await lab.spawnIn(lab.node, [process.execPath, join(repoRoot, 'bin/sluice.js'), 'run', '-c', config, '--capture-socket', lab.socket], 'CNI API listening');
  for (const p of [a, b, c]) {
    const r = lab.cni('add', p);
    t.is(r.status, 0, r.stdout);
    p.ip = (JSON.parse(r.stdout).ips as Array<{ address: string }>)[0]!.address.split('/')[0];
  }
  await lab.serve(b);
  await lab.serve(c);

  // B: the FAIL_CLOSE filter refuses; B's server never sees the request.
  const refused = getRaw(a.netns, `http://${b.ip}:8080/hello`);
  t.deepEqual(refused, {
    status: 503,
    failed: 'team-a.guard',
    body: `sluice: filter "team-a.guard" is unavailable on this node (${REASON}); the request was refused (failStrategy FAIL_CLOSE)\n`,
  });
  // Non-HTTP bytes would pass unfiltered: B's side resets the connection, client-first or
  // server-first; A sees it closed with nothing (A's own proxy relays the end), not B's answer.
  t.is(lab.tcp(a.netns, b.ip!, 9000, 'ping\n'), '');
  t.is(lab.tcp(a.netns, b.ip!, 9001, ''), '');

  // C: only the FAIL_OPEN one, skipped: the request and the TCP reach C.
  t.like(lab.get(a.netns, `http://${c.ip}:8080/hello`), { pod: 'c', remote: c.ip! });
  t.is(lab.tcp(a.netns, c.ip!, 9000, 'ping\n'), 'PING\n');

  // The proxy's output is read between the synchronous client runs above: wait for its lines.
  const log = await until('the proxy to log both closed connections', () => (/port 9001 closed/.test(proxy!.output()) ? proxy!.output() : undefined));
  t.regex(log, /filter unavailable: the controller could not validate it: DigestMismatch.*its streams are refused \(failStrategy FAIL_CLOSE\)/);
  for (const port of [9000, 9001]) t.regex(log, new RegExp(`capture: inbound TCP connection of (pod )?team-a/b to port ${port} closed: filter \\\\"team-a\\.guard\\\\" is unavailable`));
  t.like((await lab.api('GET', '/v1/pods')).body.pods.find((p: { name: string }) => p.name === 'b'), { refused: 2 });
  const admin = Number(/admin listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]);
  const filters = JSON.parse(sh('ip', ['netns', 'exec', lab.node, process.execPath, '-e', `fetch('http://127.0.0.1:${admin}/filters').then((r) => r.text()).then((t) => process.stdout.write(t))`]).stdout) as Array<{ name: string; state: string; failStrategy: string }>;
  t.deepEqual(filters.map((f) => [f.name, f.state, f.failStrategy]), [['team-a.guard', 'unavailable', 'FAIL_CLOSE'], ['team-a.stats', 'unavailable', 'FAIL_OPEN']]);
});
