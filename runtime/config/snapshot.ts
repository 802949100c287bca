// The snapshot: the one immutable, validated description of what the node proxy runs (listeners,
// routes, clusters, filters, admin). In embedded mode it comes from a YAML/JSON file
// (load-config.ts); in a cluster the node agent will receive it from the controller. The proxy
// applies either the same way.

import type { PluginSpec } from '../host/plugin-spec.ts';

export interface Snapshot {
  /** Where it came from (a file path, or the controller's version), for logs and /config_dump. */
  readonly source: string;
  readonly admin: AdminConfig;
  readonly listeners: readonly ListenerConfig[];
  readonly clusters: readonly ClusterConfig[];
  readonly filters: readonly FilterConfig[];
  /** Span export; none when absent (trace context is still propagated). */
  readonly tracing?: TracingConfig;
  /** Node mode: the pods on the node (from the controller). The agent requests their identities; the proxy does not use it yet. */
  readonly workloads?: readonly WorkloadConfig[];
  /** Node mode: pods on other nodes, reached through the node-to-node tunnel. */
  readonly tunnel?: TunnelConfig;
}

export interface TunnelConfig {
  readonly remoteWorkloads: readonly RemoteWorkloadConfig[];
}

/** A pod on another node: connections to its addresses go through the tunnel to `tunnel`, which must present `identity`. */
export interface RemoteWorkloadConfig {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  /** As WorkloadConfig's, for the istio_* labels. */
  readonly workload?: string;
  readonly app?: string;
  readonly addresses: readonly string[];
  readonly tunnel: { readonly host: string; readonly port: number };
}

/** A pod on the node: who it is and the filters the controller selected for it, per direction. */
export interface WorkloadConfig {
  readonly namespace: string;
  readonly name: string;
  /** The Deployment (StatefulSet, …) the pod belongs to, for the istio_* workload labels; absent: the pod's name. */
  readonly workload?: string;
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount> */
  readonly identity: string;
  readonly serviceAccount?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly addresses: readonly string[];
  /** Filter names in chain order; `ports`: those that run only on some destination ports, per direction. */
  readonly filters: {
    readonly outbound: readonly string[];
    readonly inbound: readonly string[];
    readonly ports?: { readonly outbound?: Readonly<Record<string, readonly number[]>>; readonly inbound?: Readonly<Record<string, readonly number[]>> };
  };
}

export interface TracingConfig {
  /** OTLP/HTTP with JSON encoding, to a collector's traces endpoint. */
  readonly otlp: {
    /** e.g. http://127.0.0.1:4318/v1/traces */
    readonly endpoint: string;
    readonly serviceName: string;
    readonly flushIntervalMs: number;
    readonly maxBatch: number;
  };
}

export interface AdminConfig {
  readonly host: string;
  readonly port: number;
  /** Host names the admin answers to besides localhost, loopback and the address it was reached at (admin.ts). */
  readonly allowedHosts?: readonly string[];
  /** /config_dump: places shown as configured although they may carry secrets (config-dump.ts). */
  readonly configDump?: { readonly show: readonly string[] };
}

export interface ListenerConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** `http`: requests through filters and routes; `tcp`: bytes passed through to `cluster`. */
  readonly protocol: 'http' | 'tcp';
  /** Names of entries in `filters`, in request order (http). */
  readonly filters: readonly string[];
  /** http: tried in order. tcp: none. */
  readonly routes: readonly RouteConfig[];
  /** tcp: the cluster connections go to. */
  readonly cluster?: string;
  /** http: a stream nothing moves on for this long is ended (ms; 0: none). The loader fills in the default; absent means the default. */
  readonly streamIdleTimeoutMs?: number;
  /** One JSON line per request, when configured. */
  readonly accessLog?: AccessLogConfig;
  /** http: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of cleartext (HTTP/1.1 and h2c). */
  readonly tls?: ListenerTls;
  /** http: Upgrade protocol names (lower case) spliced after a 101; absent: CONFIG_DEFAULTS.upgrades. */
  readonly upgrades?: readonly string[];
  /** http: requests with more headers get 431; absent: CONFIG_DEFAULTS.maxRequestHeaders. */
  readonly maxRequestHeaders?: number;
  /**
   * http: bytes a stream may hold waiting for a slow reader, per direction, before Sluice stops
   * reading the other side (Envoy's per_connection_buffer_limit_bytes). Unset: 1 MiB.
   */
  readonly bufferLimitBytes?: number;
}

/** A TLS listener's certificate and, for mTLS, the CA that client certificates must chain to. */
export interface ListenerTls {
  /** Absolute paths (resolved against the config file's folder). */
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile?: string;
  /** Refuse clients without a certificate signed by `caFile`. */
  readonly requireClientCert: boolean;
}

export const ACCESS_LOG_FIELDS = [
  'time', 'method', 'path', 'authority', 'protocol', 'status', 'response_code_details', 'duration_ms',
  'request_bytes', 'response_bytes', 'route', 'upstream_cluster', 'upstream_host', 'request_id',
  'trace_id', 'span_id', 'user_agent', 'downstream_remote_address', 'x_forwarded_for',
] as const;
export type AccessLogField = (typeof ACCESS_LOG_FIELDS)[number];

export interface AccessLogConfig {
  /** `stdout`, `stderr`, or a file path (absolute, resolved against the config file's folder). */
  readonly path: string;
  readonly fields: readonly AccessLogField[];
}

export interface RouteConfig {
  readonly name: string;
  readonly match: RouteMatch;
  readonly action: RouteAction;
  /** Request timeout for this route, in ms (0: none). */
  readonly timeoutMs: number;
  /** Retries (Envoy's model, runtime/proxy/retry.ts); none when absent. A filter may override it per request. */
  readonly retryPolicy?: RetryPolicy;
}

export type RetryOn = '5xx' | 'gateway-error' | 'reset' | 'connect-failure' | 'retriable-status-codes' | 'retriable-4xx';

export interface RetryPolicy {
  readonly numRetries: number;
  readonly retryOn: readonly RetryOn[];
  readonly retriableStatusCodes: readonly number[];
  /** Time each try may take (0: only the route's timeout applies). */
  readonly perTryTimeoutMs: number;
  readonly baseIntervalMs: number;
  readonly maxIntervalMs: number;
}

export interface RouteMatch {
  /** Exactly one of path, prefix, regex (prefix "/" when none is given). */
  readonly path?: string;
  readonly prefix?: string;
  readonly regex?: string;
  readonly methods?: readonly string[];
  readonly headers?: readonly ValueMatch[];
  readonly query?: readonly ValueMatch[];
}

/** A header or query parameter matcher: `exact`, `regex`, or `present` (default: present). */
export interface ValueMatch {
  readonly name: string;
  readonly exact?: string;
  readonly regex?: string;
  readonly present?: boolean;
  readonly invert?: boolean;
}

export type RouteAction =
  | { readonly kind: 'cluster'; readonly clusters: readonly WeightedCluster[]; readonly prefixRewrite?: string; readonly hostRewrite?: string }
  | { readonly kind: 'redirect'; readonly status: number; readonly location: string }
  | { readonly kind: 'direct'; readonly status: number; readonly body: string; readonly headers: Readonly<Record<string, string>> };

export interface WeightedCluster {
  readonly cluster: string;
  readonly weight: number;
}

export interface ClusterConfig {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  /** Node mode: the Service addresses (ClusterIP:port) captured outbound connections to which go to this cluster. */
  readonly vips?: readonly Endpoint[];
  readonly loadBalancing: 'round-robin' | 'least-request' | 'ring-hash';
  /** ring-hash: the request header whose value picks the endpoint. */
  readonly hashOn?: { readonly header: string };
  /** How Sluice talks to the endpoints: HTTP/1.1, or HTTP/2 with prior knowledge (h2c, gRPC). */
  readonly protocol: 'http1' | 'http2';
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly circuitBreakers: CircuitBreakers;
  readonly outlierDetection: OutlierDetection;
}

/** Envoy's circuit breakers: past them a request is answered 503 at once, naming the breaker. */
export interface CircuitBreakers {
  /** Requests in flight to the cluster. */
  readonly maxRequests: number;
  /** Retries in flight (on top of the retry budget). */
  readonly maxRetries: number;
  /** Requests waiting for a connection to an endpoint. */
  readonly maxPendingRequests: number;
}

/** Passive outlier detection: an endpoint that keeps failing is ejected for a while. */
export interface OutlierDetection {
  /** Consecutive 5xx answers (and connect failures) that eject an endpoint; 0 turns it off. */
  readonly consecutive5xx: number;
  /** Consecutive 502/503/504 and connect failures that eject an endpoint; 0 turns it off. */
  readonly consecutiveGatewayFailure: number;
  /** Ejection time is this × the number of times the endpoint was ejected. */
  readonly baseEjectionTimeMs: number;
  /** At most this share of the endpoints is ejected at once (at least one always may be). */
  readonly maxEjectionPercent: number;
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** A plugin's spec (host/plugin-spec.ts) as the file gives it: the module by path, the configuration as text. */
export interface FilterConfig extends Omit<PluginSpec, 'configuration' | 'vmConfiguration'> {
  /** Absolute path of the .wasm (the file's `module`, resolved against the config file's folder); '' when `unavailable`. */
  readonly module: string;
  /** Node mode: why the filter has no module to run (the controller never validated a version of it). */
  readonly unavailable?: string;
  /** What proxy_on_configure reads: the file's string as-is, any other YAML value as JSON. */
  readonly configuration: string;
}
