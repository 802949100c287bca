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

/** nftables families: `ip` for a pod's IPv4 traffic, `ip6` for its IPv6 traffic. */
export type Family = 'ip' | 'ip6';
export const FAMILIES: readonly Family[] = ['ip', 'ip6'];

const isV6 = (a: string) => a.includes(':');
const ofFamily = (family: Family, list: readonly string[]) => list.filter((a) => isV6(a) === (family === 'ip6'));

/**
 * One family's table for a pod. `hooks: false` renders the same rules in plain chains, which is
 * how CHECK gets nft's own canonical form of the expected rules without redirecting anything.
 */
export function renderTable(family: Family, ex: Exclusions, table = TABLE, hooks = true): string {
  const cidrs = ofFamily(family, ex.outboundCidrs);
  const sources = ofFamily(family, ex.inboundSources);
  const out: string[] = [`meta mark ${hex(PROXY_MARK)} return`, 'oifname "lo" return', family === 'ip' ? 'ip daddr 127.0.0.0/8 return' : 'ip6 daddr ::1 return'];
  if (cidrs.length > 0) out.push(`${family} daddr ${set(cidrs)} return`);
  if (ex.outboundPorts.length > 0) out.push(`tcp dport ${set(ex.outboundPorts)} return`);
  out.push(`meta l4proto tcp redirect to :${OUTBOUND_PORT}`);
  const inb: string[] = ['iifname "lo" return'];
  if (sources.length > 0) inb.push(`${family} saddr ${set(sources)} return`);
  inb.push(`tcp dport ${set([...PROXY_PORTS, ...ex.inboundPorts])} return`);
  inb.push(`meta l4proto tcp redirect to :${INBOUND_PORT}`);
  const hook = (h: string) => (hooks ? [`type nat hook ${h} priority -100; policy accept;`] : []);
  const chain = (name: string, head: string[], rules: string[]) => [`  chain ${name} {`, ...[...head, ...rules].map((r) => `    ${r}`), '  }'];
  return [`table ${family} ${table} {`, ...chain('output', hook('output'), out), ...chain('prerouting', hook('prerouting'), inb), '}', ''].join('\n');
}

/** The tables for the families a pod has addresses in. */
export function renderRules(ex: Exclusions, families: readonly Family[]): string {
  return families.map((f) => renderTable(f, ex)).join('');
}

/** "add then delete" of both tables: drops whatever a previous run left, and succeeds if nothing. */
const DROP_TABLES = FAMILIES.map((f) => `add table ${f} ${TABLE}\ndelete table ${f} ${TABLE}\n`).join('');

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

/** Installs (or replaces, atomically) the pod's tables, one per family it has addresses in. */
export async function installRules(netns: string, ex: Exclusions, families: readonly Family[]): Promise<void> {
  // One transaction: old tables (a retried ADD, a restart) are dropped and the new ones added together.
  await nftIn(netns, ['-f', '-'], DROP_TABLES + renderRules(ex, families));
}

export async function removeRules(netns: string): Promise<void> {
  await nftIn(netns, ['-f', '-'], DROP_TABLES);
}

interface NftObject {
  chain?: { name: string; type?: string; hook?: string; prio?: number; policy?: string };
  rule?: { chain: string; expr: unknown[] };
}

/** What differs between the pod's tables and the expected ones; empty when they match. */
export async function checkRules(netns: string, ex: Exclusions, families: readonly Family[]): Promise<string[]> {
  const problems: string[] = [];
  for (const family of FAMILIES) {
    const actual = await listTable(netns, family, TABLE);
    if (!families.includes(family)) {
      if (actual) problems.push(`table ${family} ${TABLE} exists but the pod has no ${family === 'ip' ? 'IPv4' : 'IPv6'} address`);
      continue;
    }
    if (!actual) {
      problems.push(`table ${family} ${TABLE} is missing`);
      continue;
    }
    const scratch = `sluice_check_${process.pid}`;
    // nft's canonical JSON of the expected rules: load them hookless in a scratch table, read back.
    await nftIn(netns, ['-f', '-'], `add table ${family} ${scratch}\ndelete table ${family} ${scratch}\n${renderTable(family, ex, scratch, false)}`);
    let expected: NftObject[];
    try {
      expected = (await listTable(netns, family, scratch))!;
    } finally {
      await nftIn(netns, ['delete', 'table', family, scratch]);
    }
    for (const name of ['output', 'prerouting']) {
      const c = actual.find((o) => o.chain?.name === name)?.chain;
      if (!c) problems.push(`${family} chain ${name} is missing`);
      else if (c.type !== 'nat' || c.hook !== name || c.prio !== -100 || c.policy !== 'accept') problems.push(`${family} chain ${name} is not a nat ${name} chain at priority -100 with policy accept`);
      const want = rules(expected, name);
      const got = rules(actual, name);
      if (JSON.stringify(want) !== JSON.stringify(got)) problems.push(`${family} chain ${name} has ${got.length} rules, expected ${want.length} as installed${got.length === want.length ? ' (some differ)' : ''}`);
    }
  }
  return problems;
}

function rules(objs: NftObject[], chain: string): string[] {
  return objs.filter((o) => o.rule?.chain === chain).map((o) => JSON.stringify(o.rule!.expr));
}

async function listTable(netns: string, family: Family, table: string): Promise<NftObject[] | undefined> {
  try {
    return JSON.parse(await nftIn(netns, ['-j', 'list', 'table', family, table])).nftables;
  } catch (error) {
    if (error instanceof SluiceError && /No such file or directory/.test(error.message)) return undefined;
    throw error;
  }
}
