// Configuration: the snapshot the proxy runs (snapshot.ts) and the file format it is loaded from
// (config-schema.ts, load-config.ts). This is the package's public surface.

export { loadConfig, parseConfig, ConfigError } from './load-config.ts';
export { configSchema, CONFIG_DEFAULTS, DEFAULT_RETRY_POLICY, MAX_REQUEST_HEADERS_CEILING, parseHostPort, type HostPort } from './config-schema.ts';
export type {
  Snapshot,
  AdminConfig,
  ListenerConfig,
  RouteConfig,
  RouteMatch,
  ValueMatch,
  RouteAction,
  WeightedCluster,
  ClusterConfig,
  Endpoint,
  FilterConfig,
  WorkloadConfig,
  TunnelConfig,
  RemoteWorkloadConfig,
} from './snapshot.ts';
