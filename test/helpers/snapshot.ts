// Snapshot pieces for proxy tests, with the defaults the config loader fills in.
import type { ClusterConfig } from '../../runtime/config/snapshot.ts';
import { CONFIG_DEFAULTS } from '../../runtime/config/index.ts';

export function cluster(name: string, ports: number[], overrides: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name,
    endpoints: ports.map((port) => ({ host: '127.0.0.1', port })),
    loadBalancing: 'round-robin',
    protocol: 'http1',
    connectTimeoutMs: 1000,
    requestTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    maxConnections: 16,
    circuitBreakers: CONFIG_DEFAULTS.circuitBreakers,
    outlierDetection: CONFIG_DEFAULTS.outlierDetection,
    ...overrides,
  };
}
