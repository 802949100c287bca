// The in-pod redirect rules: rendered from a pod's exclusions, installed atomically with
// `nft -f -` inside the pod's netns, removed, and checked against a fresh rendering.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SluiceError } from '../errors.ts';

export const TABLE = 'sluice';
/** SO_MARK of the proxy's own sockets in a pod: the rules let them through unredirected. */
export const PROXY_MARK = 0x539;
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
/** Never redirected inbound: the proxy's own ports (a connection to them would loop). */
const PROXY_PORTS = [15001, 15006, 15008];

export interface Exclusions {
  readonly outboundPorts: readonly number[];
  readonly inboundPorts: readonly number[];
  readonly outboundCidrs: readonly string[];
  /** Sources whose inbound connections are not redirected (the node, for kubelet probes). */
  readonly inboundSources: readonly string[];
}

const set = (items: readonly (string | number)[]) => `{ ${items.join(', ')} }`;

/**
 * The table for one pod. `hooks: false` renders the same rules in plain chains, which is how
 * CHECK gets nft's own canonical form of the expected rules without redirecting anything.
 */
export function renderRules(ex: Exclusions, table = TABLE, hooks = true): string {
  const out: string[] = [`meta mark ${hex(PROXY_MARK)} return`, 'oifname "lo" return', 'ip daddr 127.0.0.0/8 return'];
  if (ex.outboundCidrs.length > 0) out.push(`ip daddr ${set(ex.outboundCidrs)} return`);
  if (ex.outboundPorts.length > 0) out.push(`tcp dport ${set(ex.outboundPorts)} return`);
  out.push(`meta l4proto tcp redirect to :${OUTBOUND_PORT}`);
  const inb: string[] = ['iifname "lo" return'];
  if (ex.inboundSources.length > 0) inb.push(`ip saddr ${set(ex.inboundSources)} return`);
  inb.push(`tcp dport ${set([...PROXY_PORTS, ...ex.inboundPorts])} return`);
  inb.push(`meta l4proto tcp redirect to :${INBOUND_PORT}`);
  const hook = (h: string) => (hooks ? [`type nat hook ${h} priority -100; policy accept;`] : []);
  const chain = (name: string, head: string[], rules: string[]) => [`  chain ${name} {`, ...[...head, ...rules].map((r) => `    ${r}`), '  }'];
  return [`table ip ${table} {`, ...chain('output', hook('output'), out), ...chain('prerouting', hook('prerouting'), inb), '}', ''].join('\n');
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/**
 * The nftables CLI by absolute path: a PATH lookup can find another `nft` first (npm puts
 * node_modules/.bin on PATH, where @vercel/nft installs one).
 */
export const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft', '/usr/local/sbin/nft'].find((p) => existsSync(p)) ?? 'nft';

/** Runs nft inside the netns; stdin is an nft script. Resolves with stdout. */
export function nftIn(netns: string, args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netns}`, NFT, ...args], { stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => (stdout += c));
    child.stderr!.on('data', (c) => (stderr += c));
    child.on('error', (error) => reject(new SluiceError('SLUICE_ERR_CAPTURE_NFT', `cannot run nsenter/nft: ${error.message}; install util-linux and nftables on the node`, { cause: error })));
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new SluiceError('SLUICE_ERR_CAPTURE_NFT', `nft ${args.join(' ')} in ${netns} failed (exit ${code}): ${stderr.trim()}`));
    });
    if (stdin !== undefined) child.stdin!.on('error', () => {}).end(stdin);
  });
}

/** Installs (or replaces, atomically) the pod's table. */
export async function installRules(netns: string, ex: Exclusions): Promise<void> {
  // One transaction: an old table (a retried ADD) is dropped and the new one added together.
  await nftIn(netns, ['-f', '-'], `add table ip ${TABLE}\ndelete table ip ${TABLE}\n${renderRules(ex)}`);
}

export async function removeRules(netns: string): Promise<void> {
  await nftIn(netns, ['-f', '-'], `add table ip ${TABLE}\ndelete table ip ${TABLE}\n`);
}

interface NftObject {
  chain?: { name: string; type?: string; hook?: string; prio?: number; policy?: string };
  rule?: { chain: string; expr: unknown[] };
}

/** What differs between the pod's table and the expected one; empty when they match. */
export async function checkRules(netns: string, ex: Exclusions): Promise<string[]> {
  let actual: NftObject[];
  try {
    actual = JSON.parse(await nftIn(netns, ['-j', 'list', 'table', 'ip', TABLE])).nftables;
  } catch (error) {
    if (error instanceof SluiceError && /No such file or directory/.test(error.message)) return [`table ip ${TABLE} is missing`];
    throw error;
  }
  const scratch = `sluice_check_${process.pid}`;
  // nft's canonical JSON of the expected rules: load them hookless in a scratch table, read back.
  await nftIn(netns, ['-f', '-'], `add table ip ${scratch}\ndelete table ip ${scratch}\n${renderRules(ex, scratch, false)}`);
  let expected: NftObject[];
  try {
    expected = JSON.parse(await nftIn(netns, ['-j', 'list', 'table', 'ip', scratch])).nftables;
  } finally {
    await nftIn(netns, ['delete', 'table', 'ip', scratch]);
  }
  const problems: string[] = [];
  for (const [name, hook] of [['output', 'output'], ['prerouting', 'prerouting']]) {
    const c = actual.find((o) => o.chain?.name === name)?.chain;
    if (!c) problems.push(`chain ${name} is missing`);
    else if (c.type !== 'nat' || c.hook !== hook || c.prio !== -100 || c.policy !== 'accept') problems.push(`chain ${name} is not a nat ${hook} chain at priority -100 with policy accept`);
  }
  const rules = (objs: NftObject[], chain: string) => objs.filter((o) => o.rule?.chain === chain).map((o) => JSON.stringify(o.rule!.expr));
  for (const chain of ['output', 'prerouting']) {
    const want = rules(expected, chain);
    const got = rules(actual, chain);
    if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`chain ${chain} has ${got.length} rules, expected ${want.length} as installed${got.length === want.length ? ' (some differ)' : ''}`);
  }
  return problems;
}
