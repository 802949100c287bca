// A KubeConfig whose API calls reuse their connections. @kubernetes/client-node 1.x builds a new
// https.Agent for every request, so every call (a status write, a TokenReview) pays a TCP and TLS
// handshake; here each request's agent is swapped for a kept-alive one made once per set of
// connection settings (server CA, client certificate, TLS options).

import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

type RequestContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];

/** Connection settings change rarely (a rotated client certificate); keep the few latest. */
const MAX_AGENTS = 4;

/** The TLS options of an agent that decide which connections it may share. */
const SHARED_BY = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername'] as const;

export class PooledKubeConfig extends KubeConfig {
  private readonly agents = new Map<string, http.Agent>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const made = context.getAgent();
    // Proxies keep the library's own agent: their connections are the proxy's business.
    if (!made || (made.constructor !== https.Agent && made.constructor !== http.Agent)) return;
    context.setAgent(this.pooled(made));
  }

  /** The kept-alive agent for the settings of `made` (tests read it to count connections). */
  pooled(made: http.Agent): http.Agent {
    const options = (made as http.Agent & { options: Record<string, unknown> }).options;
    const h = createHash('sha256').update(made.constructor === https.Agent ? 'https' : 'http');
    for (const k of SHARED_BY) h.update(`\0${k}=`).update(serialize(options[k]));
    const key = h.digest('hex');
    let agent = this.agents.get(key);
    if (agent) {
      // Most recently used last: the first is the one to evict.
      this.agents.delete(key);
      this.agents.set(key, agent);
      return agent;
    }
    const Agent = made.constructor as typeof https.Agent;
    agent = new Agent({ ...options, keepAlive: true });
    this.agents.set(key, agent);
    if (this.agents.size > MAX_AGENTS) {
      const [oldKey, old] = this.agents.entries().next().value as [string, http.Agent];
      this.agents.delete(oldKey);
      // Requests in flight finish; only idle connections close now.
      for (const list of Object.values(old.freeSockets)) for (const s of list ?? []) s.destroy();
    }
    return agent;
  }

  /** Closes the idle connections (at shutdown). */
  closeIdle(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

function serialize(v: unknown): string {
  if (v === undefined) return '';
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (Array.isArray(v)) return v.map(serialize).join('\0');
  return String(v);
}
