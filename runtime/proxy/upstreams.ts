// Upstream clusters: a connection pool per endpoint (undici), and load balancing across them
// (round robin, or least request by the power of two choices).

import { Pool } from 'undici';
import type { ClusterConfig, Endpoint } from '../config/snapshot.ts';
import { RetryBudget } from './retry.ts';

export interface UpstreamHost {
  readonly endpoint: Endpoint;
  readonly address: string;
  readonly pool: Pool;
  active: number;
}

export class Cluster {
  readonly hosts: UpstreamHost[];
  readonly retryBudget = new RetryBudget();
  private next = 0;

  constructor(readonly config: ClusterConfig) {
    this.hosts = config.endpoints.map((endpoint) => {
      const authority = endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
      return {
        endpoint,
        address: authority,
        active: 0,
        pool: new Pool(`http://${authority}`, {
          connections: config.maxConnections,
          connectTimeout: config.connectTimeoutMs,
          keepAliveTimeout: config.idleTimeoutMs,
          headersTimeout: config.requestTimeoutMs,
          bodyTimeout: config.requestTimeoutMs,
        }),
      };
    });
  }

  get name(): string {
    return this.config.name;
  }

  /** The host for the next request, or undefined when the cluster has no endpoints. A retry prefers a host not `tried` yet. */
  pick(tried?: ReadonlySet<UpstreamHost>): UpstreamHost | undefined {
    if (tried && tried.size > 0 && tried.size < this.hosts.length) {
      for (let i = 0; i < this.hosts.length; i++) {
        const host = this.pick();
        if (host && !tried.has(host)) return host;
      }
    }
    const hosts = this.hosts;
    if (hosts.length <= 1) return hosts[0];
    if (this.config.loadBalancing === 'least-request') {
      const a = hosts[Math.floor(Math.random() * hosts.length)];
      const b = hosts[Math.floor(Math.random() * hosts.length)];
      return a.active <= b.active ? a : b;
    }
    const host = hosts[this.next];
    this.next = (this.next + 1) % hosts.length;
    return host;
  }

  /** Closes the pools once their requests are done. */
  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pool.close()));
  }

  /** Closes the pools now, aborting what is still in flight (the end of a drain). */
  async destroy(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pool.destroy()));
  }
}
