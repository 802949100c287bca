// The configuration file's format: its JSON Schema (draft 2020-12, `additionalProperties: false`
// everywhere), the defaults of the fields it owns, and the custom string formats the schema names,
// each with the sentence a user reads when a value does not fit. Filter defaults are not here:
// they come from runtime/host/plugin-spec.ts, the one place the host takes them from too.

import { isIPv4, isIPv6 } from 'node:net';
import { LOG_LEVEL_NAMES } from '../abi/constants.ts';
import { ACCESS_LOG_FIELDS, type RetryOn, type RetryPolicy } from './snapshot.ts';
import { showPathProblem } from './dump-paths.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE, ENV_NAME, FAIL_STRATEGIES, pluginSpec } from '../host/plugin-spec.ts';

/** Defaults of the fields the file format owns (filters' defaults: plugin-spec.ts). */
/** A route's retries when its config says nothing (Envoy's retryOn names; see runtime/proxy/retry.ts). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  numRetries: 1,
  retryOn: Object.freeze(['5xx', 'reset', 'connect-failure'] as RetryOn[]),
  retriableStatusCodes: Object.freeze([]),
  perTryTimeoutMs: 0,
  baseIntervalMs: 25,
  maxIntervalMs: 250,
});

export const CONFIG_DEFAULTS = Object.freeze({
  adminAddress: '127.0.0.1:15000',
  protocol: 'http',
  routeTimeoutMs: 15_000,
  redirectStatus: 302,
  directResponseStatus: 200,
  loadBalancing: 'round-robin',
  connectTimeoutMs: 1_000,
  requestTimeoutMs: 15_000,
  idleTimeoutMs: 60_000,
  maxConnections: 1024,
  /** Envoy's per_connection_buffer_limit_bytes default. */
  bufferLimitBytes: 1024 * 1024,
  /** Envoy's stream_idle_timeout default (5 minutes). */
  streamIdleTimeoutMs: 300_000,
  // Envoy's defaults.
  circuitBreakers: Object.freeze({ maxRequests: 1024, maxRetries: 3, maxPendingRequests: 1024 }),
  upstreamProtocol: 'http1',
  outlierDetection: Object.freeze({ consecutive5xx: 5, consecutiveGatewayFailure: 0, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 }),
  vmId: '',
  tracing: Object.freeze({ serviceName: 'sluice', flushIntervalMs: 1000, maxBatch: 512 }),
  // Envoy's defaults: WebSocket is the one upgrade honoured; 100 request headers.
  upgrades: Object.freeze(['websocket']),
  maxRequestHeaders: 100,
} as const);

/** The most request headers a listener may allow (`maxRequestHeaders`). */
export const MAX_REQUEST_HEADERS_CEILING = 8192;

/** The fail strategy a filter gets when it names none, as the host fills it in. */
const DEFAULT_FAIL_STRATEGY = pluginSpec({ name: 'defaults' }).failStrategy;

/** Largest delay Node's timers accept (longer ones fire after 1 ms), so the largest *Ms value. */
export const MAX_MS = 2 ** 31 - 1;

const q = (s: string): string => JSON.stringify(s);

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface HostPort {
  /** An IP address (IPv6 without brackets) or a host name. */
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `host:port` (`[v6]:port` for IPv6). Ports below `minPort` are refused: 1 for upstream
 * endpoints, 0 for addresses Sluice binds (port 0: any free port, what tests use).
 */
export function parseHostPort(text: string, minPort = 1): HostPort | { error: string } {
  const notHostPort = (hint = ''): { error: string } => ({ error: `${q(text)} is not host:port${hint}` });
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
    if (!bracketed) return notHostPort(' (as in [::1]:15001)');
    host = bracketed[1]!;
    portText = bracketed[2]!;
    if (!isIPv6(host)) return { error: `${q(host)} in ${q(text)} is not an IPv6 address` };
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return notHostPort();
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return notHostPort(' (put an IPv6 address in brackets, as in [::1]:15001)');
    if (host === '') return notHostPort(' (give the host too, as in 0.0.0.0:15001)');
    if (/^[0-9.]+$/.test(host) && !isIPv4(host)) return { error: `${q(host)} in ${q(text)} is not an IPv4 address` };
    if (!isIPv4(host) && !HOSTNAME.test(host)) return { error: `${q(host)} in ${q(text)} is not an IP address or host name` };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return notHostPort(' (the port must be a number)');
  const port = Number(portText);
  if (port < minPort || port > 65535) return { error: `port ${port} is out of range (${minPort}-65535)` };
  return { host, port };
}

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function headerName(text: string, pseudo: boolean): string | undefined {
  const name = pseudo && text.startsWith(':') ? text.slice(1) : text;
  if (!TOKEN.test(name)) return `${q(text)} is not a valid header name`;
  if (name !== name.toLowerCase()) return `header names are written in lower case: ${q(text.toLowerCase())}, not ${q(text)}`;
  return undefined;
}

/**
 * The custom formats the schema uses, by name: each returns what is wrong with a string, or
 * undefined when it fits. load-config.ts registers them with ajv and uses the sentence as the
 * problem's text.
 */
export const FORMATS: Readonly<Record<string, (text: string) => string | undefined>> = Object.freeze({
  name: (text) =>
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(text)
      ? undefined
      : `${q(text)} is not a valid name (up to 128 letters, digits, ".", "_" and "-", starting with a letter or digit)`,
  'bind-address': (text) => {
    const parsed = parseHostPort(text, 0);
    return 'error' in parsed ? parsed.error : undefined;
  },
  endpoint: (text) => {
    const parsed = parseHostPort(text, 1);
    return 'error' in parsed ? parsed.error : undefined;
  },
  authority: (text) => {
    if (HOSTNAME.test(text) || isIPv4(text)) return undefined;
    const parsed = parseHostPort(text, 1);
    return 'error' in parsed ? `${q(text)} is not a host or host:port` : undefined;
  },
  path: (text) =>
    !text.startsWith('/')
      ? `${q(text)} must start with "/"`
      : /[\s\u0000-\u001f\u007f?#]/.test(text)
        ? `${q(text)} must not contain spaces, control characters, "?" or "#"`
        : undefined,
  regex: (text) => {
    try {
      new RegExp(text);
      return undefined;
    } catch (error) {
      // V8 says "Invalid regular expression: /<source>/: <reason>"; the reason is what helps.
      const reason = (error as Error).message.split(': ').pop();
      return `${q(text)} does not compile (${reason})`;
    }
  },
  'http-method': (text) =>
    /^[A-Z][A-Z0-9_-]*$/.test(text)
      ? undefined
      : TOKEN.test(text)
        ? `HTTP methods are written in upper case: ${q(text.toUpperCase())}, not ${q(text)}`
        : `${q(text)} is not an HTTP method`,
  'header-name': (text) => headerName(text, false),
  'upgrade-name': (text) => (TOKEN.test(text) ? undefined : `${q(text)} is not an Upgrade protocol name (letters, digits and !#$%&'*+.^_\`|~-, as in websocket)`),
  'http-url': (text) => {
    try {
      const url = new URL(text);
      if (url.protocol === 'http:' || url.protocol === 'https:') return undefined;
    } catch {
      // said below
    }
    return `${q(text)} is not an http(s) URL`;
  },
  'admin-host': (text) => {
    const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
    return HOSTNAME.test(bare) || isIPv4(bare) || isIPv6(bare) ? undefined : `${q(text)} is not a host name or IP address (give no port: the admin answers to its host on any port)`;
  },
  'dump-path': (text) => showPathProblem(text),
  'ip-address': (text) => (isIPv4(text) || isIPv6(text) ? undefined : `${q(text)} is not an IPv4 or IPv6 address`),
  'spiffe-id': (text) =>
    /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+$/.test(text) ? undefined : `${q(text)} is not a SPIFFE ID (spiffe://<trust-domain>/<path>, as in spiffe://cluster.local/ns/default/sa/default)`,
  file: (text) => (text.length === 0 || text.includes('\u0000') ? `${q(text)} is not a file path` : undefined),
  'match-header-name': (text) => headerName(text, true),
  'header-value': (text) => (/[\r\n\u0000]/.test(text) ? `${q(text)} must not contain CR, LF or NUL` : undefined),
  location: (text) => {
    if (/[\u0000-\u0020\u007f]/.test(text)) return `${q(text)} must not contain spaces or control characters`;
    if (text.startsWith('/') && !text.startsWith('//')) return undefined;
    try {
      const url = new URL(text);
      if (url.protocol === 'http:' || url.protocol === 'https:') return undefined;
    } catch {
      // not a URL: said below
    }
    return `${q(text)} is neither a path ("/...") nor an http(s) URL`;
  },
});

// ---- the schema ----------------------------------------------------------------------------

type Schema = Record<string, unknown>;

const string = (format: string, description: string, extra: Schema = {}): Schema => ({ type: 'string', format, description, ...extra });
const integer = (minimum: number, maximum: number, description: string, def?: number): Schema => ({
  type: 'integer',
  minimum,
  maximum,
  description,
  ...(def === undefined ? {} : { default: def }),
});
const ms = (description: string, def?: number, minimum = 0): Schema => integer(minimum, MAX_MS, description, def);
const object = (description: string, properties: Record<string, Schema>, required: string[] = []): Schema => ({
  type: 'object',
  description,
  additionalProperties: false,
  properties,
  ...(required.length > 0 ? { required } : {}),
});

const valueMatch = (of: 'header' | 'query parameter', nameSchema: Schema): Schema =>
  object(
    `Matches one ${of}. Give at most one of exact, regex, present; none means present: true.`,
    {
      name: nameSchema,
      exact: string('header-value', 'The value equals this string.'),
      regex: string('regex', 'The value matches this JavaScript regular expression (unanchored: anchor it with ^ and $).'),
      present: { type: 'boolean', description: `true: the ${of} is there; false: it is absent.` },
      invert: { type: 'boolean', default: false, description: 'Negate the result.' },
    },
    ['name'],
  );
const headerMatch = valueMatch('header', string('match-header-name', 'Header name, lower case (pseudo-headers such as :authority too).'));
const queryMatch = valueMatch('query parameter', { type: 'string', minLength: 1, description: 'Query parameter name.' });

const route = object(
  'A route: a match and exactly one action (cluster, weightedClusters, redirect, directResponse). Routes are tried in order; the first match wins.',
  {
    name: string('name', 'Unique within the listener. Default: route-<index>.'),
    match: object('What the request must look like. Give at most one of path, prefix, regex; none means prefix "/".', {
      path: string('path', 'The path (without query string) equals this.'),
      prefix: string('path', 'The path starts with this string (a plain string prefix: /api also matches /apix).'),
      regex: string('regex', 'The path (without query string) matches this JavaScript regular expression (unanchored).'),
      methods: { type: 'array', minItems: 1, uniqueItems: true, items: string('http-method', 'An HTTP method, upper case.'), description: 'Any of these methods.' },
      headers: { type: 'array', items: { $ref: '#/$defs/headerMatch' }, description: 'All of these header matchers.' },
      query: { type: 'array', items: { $ref: '#/$defs/queryMatch' }, description: 'All of these query parameter matchers.' },
    }),
    cluster: string('name', 'Send the request to this cluster.'),
    weightedClusters: {
      type: 'array',
      minItems: 1,
      description: 'Split requests between clusters by weight (relative; at least one above 0).',
      items: object('A cluster and its share.', { cluster: string('name', 'A cluster name.'), weight: integer(0, 1_000_000, 'Relative weight.') }, ['cluster', 'weight']),
    },
    redirect: object(
      'Answer with a redirect.',
      {
        status: { enum: [301, 302, 303, 307, 308], default: CONFIG_DEFAULTS.redirectStatus, description: 'Redirect status.' },
        location: string('location', 'The Location header: a path or an http(s) URL.'),
      },
      ['location'],
    ),
    directResponse: object('Answer directly, without an upstream.', {
      status: integer(200, 599, 'Response status.', CONFIG_DEFAULTS.directResponseStatus),
      body: { type: 'string', default: '', description: 'Response body.' },
      headers: {
        type: 'object',
        description: 'Response headers, name (lower case) to value.',
        propertyNames: { format: 'header-name' },
        additionalProperties: string('header-value', 'Header value.'),
      },
    }),
    prefixRewrite: string('path', 'Replace the matched prefix with this before forwarding (prefix matches, cluster and weightedClusters routes only).'),
    hostRewrite: string('authority', 'Replace the Host/:authority header with this before forwarding (cluster and weightedClusters routes only).'),
    timeoutMs: ms('Request timeout, from the request\'s arrival to the end of the response, time filters hold the stream included; 0: none.', CONFIG_DEFAULTS.routeTimeoutMs),
    retryPolicy: object('Retry failed tries (Envoy\'s model); cluster and weightedClusters routes only.', {
      numRetries: integer(0, 10, 'Retries after the first try.', DEFAULT_RETRY_POLICY.numRetries),
      retryOn: {
        type: 'array',
        minItems: 1,
        uniqueItems: true,
        items: { enum: ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-status-codes', 'retriable-4xx'] },
        default: [...DEFAULT_RETRY_POLICY.retryOn],
        description: 'Which outcomes are retried.',
      },
      retriableStatusCodes: { type: 'array', uniqueItems: true, items: integer(100, 599, 'A status code.'), default: [], description: 'With retriable-status-codes: these statuses.' },
      perTryTimeoutMs: ms('Time each try may take; 0: only the route timeout.', DEFAULT_RETRY_POLICY.perTryTimeoutMs),
      baseIntervalMs: ms('Backoff base: the n-th retry waits a random time up to base × 2^(n-1).', DEFAULT_RETRY_POLICY.baseIntervalMs, 1),
      maxIntervalMs: ms('Backoff ceiling.', DEFAULT_RETRY_POLICY.maxIntervalMs, 1),
    }),
  },
);

const listener = object(
  'A port Sluice listens on, the filters requests pass through, and the routes they take.',
  {
    name: string('name', 'Unique among listeners.'),
    address: string('bind-address', 'host:port to bind ([::1]:15001 for IPv6; port 0: any free port).'),
    protocol: { enum: ['http', 'tcp'], default: CONFIG_DEFAULTS.protocol, description: 'http: requests through filters and routes; tcp: bytes passed through to `cluster`.' },
    cluster: string('name', 'tcp listeners: the cluster every connection goes to.'),
    filters: { type: 'array', uniqueItems: true, default: [], items: string('name', 'A filter name.'), description: 'Names from the top-level filters, in request order.' },
    routes: { type: 'array', minItems: 1, items: { $ref: '#/$defs/route' }, description: 'http listeners: tried in order; the first match wins.' },
    streamIdleTimeoutMs: ms('http listeners: a stream on which nothing moves (no request or response bytes, a filter holding it) for this long is ended (408 before the response headers, else a reset); 0: none.', CONFIG_DEFAULTS.streamIdleTimeoutMs),
    accessLog: object(
      'One JSON line per request.',
      {
        path: { type: 'string', minLength: 1, default: 'stdout', description: 'stdout, stderr, or a file (relative to the config file) that lines are appended to.' },
        fields: { type: 'array', uniqueItems: true, minItems: 1, items: { enum: [...ACCESS_LOG_FIELDS] }, default: [...ACCESS_LOG_FIELDS], description: 'The fields of each line, in this order.' },
      },
      [],
    ),
    upgrades: {
      type: 'array',
      uniqueItems: true,
      items: string('upgrade-name', 'An Upgrade protocol name, matched case-insensitively.'),
      default: [...CONFIG_DEFAULTS.upgrades],
      description: 'http listeners: the HTTP/1.1 upgrades spliced to the upstream once it answers 101. Any other Upgrade header is removed and the request proxied as a plain one. h2c is never honoured. []: none.',
    },
    maxRequestHeaders: integer(1, MAX_REQUEST_HEADERS_CEILING, 'http listeners: a request with more headers than this gets 431.', CONFIG_DEFAULTS.maxRequestHeaders),
    bufferLimitBytes: integer(
      1024,
      1024 ** 3,
      'http listeners: bytes one stream may hold waiting for a slow reader, per direction, before Sluice stops reading the other side (Envoy\'s per_connection_buffer_limit_bytes).',
      CONFIG_DEFAULTS.bufferLimitBytes,
    ),
    tls: object(
      'http listeners: serve HTTPS, HTTP/2 or HTTP/1.1 as the client picks by ALPN. With caFile, clients may present a certificate (mTLS); its SPIFFE ID becomes the peer identity filters read.',
      {
        certFile: string('file', 'PEM certificate chain, relative to the config file.'),
        keyFile: string('file', 'PEM private key, relative to the config file.'),
        caFile: string('file', 'PEM CA bundle client certificates must chain to.'),
        requireClientCert: { type: 'boolean', default: false, description: 'Refuse clients without a valid certificate (needs caFile).' },
      },
      ['certFile', 'keyFile'],
    ),
  },
  ['name', 'address'],
);

const cluster = object(
  'A set of upstream endpoints and how to reach them.',
  {
    name: string('name', 'Unique among clusters.'),
    endpoints: { type: 'array', minItems: 1, uniqueItems: true, items: string('endpoint', 'host:port of an upstream.'), description: 'host:port strings.' },
    vips: { type: 'array', uniqueItems: true, items: string('endpoint', 'address:port of the Service (its ClusterIP and port).'), description: 'Node mode (discovery fills it in): the Service addresses of this cluster. A captured outbound connection to one goes to the cluster\'s endpoints, picked by its load balancing, instead of to the address the pod dialled.' },
    loadBalancing: { enum: ['round-robin', 'least-request', 'ring-hash'], default: CONFIG_DEFAULTS.loadBalancing, description: 'How an endpoint is picked: in turn, the less busy of two at random, or by a hash of the hashOn header (the same value, the same endpoint).' },
    hashOn: object('ring-hash: what the hash is taken of.', { header: string('header-name', 'A request header name; requests without it go to a random endpoint.') }, ['header']),
    protocol: { enum: ['http1', 'http2'], default: CONFIG_DEFAULTS.upstreamProtocol, description: 'http1: HTTP/1.1; http2: HTTP/2 with prior knowledge (h2c), as gRPC services speak it.' },
    connectTimeoutMs: ms('Time to establish a connection.', CONFIG_DEFAULTS.connectTimeoutMs, 1),
    requestTimeoutMs: ms('Time for one upstream request; 0: none.', CONFIG_DEFAULTS.requestTimeoutMs),
    idleTimeoutMs: ms('How long an idle pooled connection is kept.', CONFIG_DEFAULTS.idleTimeoutMs, 1),
    circuitBreakers: object('Past these limits a request is answered 503 at once, naming the breaker.', {
      maxRequests: integer(1, 1_000_000, 'Requests in flight to the cluster.', CONFIG_DEFAULTS.circuitBreakers.maxRequests),
      maxRetries: integer(0, 1_000_000, 'Retries in flight to the cluster.', CONFIG_DEFAULTS.circuitBreakers.maxRetries),
      maxPendingRequests: integer(1, 1_000_000, 'Requests waiting for a connection to an endpoint.', CONFIG_DEFAULTS.circuitBreakers.maxPendingRequests),
    }),
    outlierDetection: object('Eject an endpoint that keeps failing, for a time that grows with each ejection.', {
      consecutive5xx: integer(0, 1_000_000, 'Consecutive 5xx answers or connect failures that eject an endpoint; 0: off.', CONFIG_DEFAULTS.outlierDetection.consecutive5xx),
      consecutiveGatewayFailure: integer(0, 1_000_000, 'Consecutive 502/503/504 or connect failures that eject an endpoint; 0: off.', CONFIG_DEFAULTS.outlierDetection.consecutiveGatewayFailure),
      baseEjectionTimeMs: ms('Ejection time × the number of ejections so far.', CONFIG_DEFAULTS.outlierDetection.baseEjectionTimeMs, 1),
      maxEjectionPercent: integer(0, 100, 'Most endpoints ejected at once, in percent (one always may be).', CONFIG_DEFAULTS.outlierDetection.maxEjectionPercent),
    }),
    maxConnections: integer(1, 1_000_000, 'Most connections open to the cluster at once.', CONFIG_DEFAULTS.maxConnections),
  },
  ['name', 'endpoints'],
);

/** A string without NUL characters (an environment variable's value). */
export const NO_NUL = '^[^\\u0000]*$';

const positive = (description: string, def: number, minimum = 1, maximum = Number.MAX_SAFE_INTEGER): Schema => integer(minimum, maximum, description, def);

const filter = object(
  'A proxy-wasm plugin: a module, its configuration and how it is contained.',
  {
    name: string('name', 'Unique among filters; listeners refer to it.'),
    module: { type: 'string', minLength: 1, description: 'Path of the .wasm file, relative to the configuration file. Give module or unavailable.' },
    unavailable: { type: 'string', minLength: 1, description: 'Node mode: the filter has no module this node can run (the controller never validated a version of it), and this says why. Its streams get its fail strategy: FAIL_OPEN skips it, the others answer 503 (captured TCP is closed). Give module or unavailable.' },
    rootId: { type: 'string', default: '', description: 'Root id handed to the module (plugin_root_id). Default: "", as in Envoy and Istio.' },
    vmId: { type: 'string', default: CONFIG_DEFAULTS.vmId, description: 'VM id handed to the module.' },
    config: { description: 'What proxy_on_configure reads: a string as-is, any other value as JSON. Default: empty.' },
    environment: {
      type: 'object',
      default: {},
      maxProperties: 256,
      propertyNames: { pattern: ENV_NAME.source, maxLength: 256 },
      additionalProperties: { type: 'string', maxLength: 65536, pattern: NO_NUL },
      description: 'Environment variables the filter reads through WASI (environ_get), name to value, in this order; nothing of the host\'s own environment. A WasmFilter\'s vmConfig.env.',
    },
    failStrategy: { enum: [...FAIL_STRATEGIES], default: DEFAULT_FAIL_STRATEGY, description: 'What a failing filter does to the request.' },
    limits: object('Resource limits of the filter.', {
      callBudgetMs: positive('Wall-clock budget of one call into the filter.', DEFAULT_LIMITS.callBudgetMs, 1, MAX_MS),
      memoryBytes: positive('Ceiling of the VM linear memory (at least one 64 KiB page).', DEFAULT_LIMITS.memoryBytes, 65_536, 4 * 1024 ** 3),
      bodyBytes: positive('Largest body the filter may buffer.', DEFAULT_LIMITS.bodyBytes),
    }),
    capabilities: object('Host functions the filter may use.', {
      httpCalls: {
        type: ['boolean', 'array'],
        uniqueItems: true,
        items: string('name', 'A cluster name.'),
        default: DEFAULT_CAPABILITIES.httpCalls,
        description: 'proxy_http_call: true for any cluster, a list of cluster names for only those, false for none.',
      },
      sharedData: { type: 'boolean', default: DEFAULT_CAPABILITIES.sharedData, description: 'proxy_get/set_shared_data.' },
      sharedQueues: { type: 'boolean', default: DEFAULT_CAPABILITIES.sharedQueues, description: 'proxy_register/resolve_shared_queue, enqueue, dequeue.' },
      foreignFunctions: { type: 'boolean', default: DEFAULT_CAPABILITIES.foreignFunctions, description: 'proxy_call_foreign_function.' },
    }),
    quarantine: object('When a failing filter is taken out of the chain, and for how long.', {
      failures: positive('Failures within windowMs that quarantine the filter.', DEFAULT_QUARANTINE.failures, 1, 1_000_000),
      windowMs: positive('The failure-counting window.', DEFAULT_QUARANTINE.windowMs, 1, MAX_MS),
      backoffMs: positive('First quarantine period; doubles on each quarantine that follows closely.', DEFAULT_QUARANTINE.backoffMs, 1, MAX_MS),
      maxBackoffMs: positive('Longest quarantine period (at least backoffMs).', DEFAULT_QUARANTINE.maxBackoffMs, 1, MAX_MS),
    }),
    logLevel: { enum: [...LOG_LEVEL_NAMES], description: 'The filter\'s own log level: what proxy_get_log_level returns to it and below which its proxy_log lines are dropped. Default: sluice run --log-level.' },
  },
  ['name'],
);

const workload = object(
  'A pod on this node, as the controller describes it (node mode). The node agent requests a certificate for its identity; captured traffic of the pod runs its filters and is labelled with it in the istio_* metrics.',
  {
    namespace: string('name', 'The pod\'s namespace.'),
    name: { type: 'string', minLength: 1, maxLength: 253, description: 'The pod\'s name.' },
    workload: { type: 'string', minLength: 1, maxLength: 253, description: 'The workload the pod belongs to (its Deployment, StatefulSet, DaemonSet, Job; the pod itself without one): the source_workload / destination_workload label. Default: the pod\'s name.' },
    identity: string('spiffe-id', 'The workload\'s identity: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.'),
    serviceAccount: { type: 'string', minLength: 1, maxLength: 253, description: 'The pod\'s ServiceAccount.' },
    labels: { type: 'object', additionalProperties: { type: 'string' }, default: {}, description: 'The pod\'s labels.' },
    addresses: { type: 'array', uniqueItems: true, default: [], items: string('ip-address', 'An IP address of the pod.'), description: 'The pod\'s IP addresses.' },
    filters: object('The filters selected for this workload, per direction, in chain order (names from the top-level filters).', {
      outbound: { type: 'array', uniqueItems: true, default: [], items: string('name', 'A filter name.'), description: 'Traffic from the pod.' },
      inbound: { type: 'array', uniqueItems: true, default: [], items: string('name', 'A filter name.'), description: 'Traffic to the pod.' },
      ports: object('Filters that run only on some destination ports (a WasmFilter\'s match.ports), per direction: filter name to ports. A filter not named runs on every port.', {
        outbound: { type: 'object', additionalProperties: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'integer', minimum: 1, maximum: 65535 } }, description: 'Outbound: the port the pod dialled.' },
        inbound: { type: 'object', additionalProperties: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'integer', minimum: 1, maximum: 65535 } }, description: 'Inbound: the pod\'s port.' },
      }),
    }),
  },
  ['namespace', 'name', 'identity'],
);

const remoteWorkload = object(
  'A pod on another node that this node\'s pods may connect to: connections to its addresses go through the node-to-node tunnel (docs/capture.md#the-node-to-node-tunnel).',
  {
    namespace: string('name', 'The pod\'s namespace.'),
    name: { type: 'string', minLength: 1, maxLength: 253, description: 'The pod\'s name.' },
    identity: string('spiffe-id', 'The SPIFFE ID the pod\'s node must present for it (the pod\'s ServiceAccount).'),
    workload: { type: 'string', minLength: 1, maxLength: 253, description: 'The workload the pod belongs to, as for workloads[].workload (istio_* labels). Default: the pod\'s name.' },
    app: { type: 'string', maxLength: 253, description: 'The pod\'s app (or app.kubernetes.io/name) label, for the istio_* source_app / destination_app labels.' },
    addresses: { type: 'array', uniqueItems: true, minItems: 1, items: string('ip-address', 'An IP address of the pod.'), description: 'The pod\'s IP addresses.' },
    tunnel: string('bind-address', 'host:port of the tunnel on the pod\'s node (its hostIP and 15008).'),
  },
  ['namespace', 'name', 'identity', 'addresses', 'tunnel'],
);

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** The JSON Schema of the configuration file (YAML or JSON). Custom formats: FORMATS. */
export const configSchema: Readonly<Schema> = deepFreeze({
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://sluice.dev/schemas/config.json',
  title: 'Sluice configuration',
  ...object('What the node proxy runs: admin endpoint, listeners with their routes, clusters, filters.', {
    admin: object('The admin endpoint (/ready, /stats/prometheus, /config_dump, /filters).', {
      address: string('bind-address', 'host:port to bind.', { default: CONFIG_DEFAULTS.adminAddress }),
      allowedHosts: {
        type: 'array',
        uniqueItems: true,
        items: string('admin-host', 'A host name or IP address, without port.'),
        description: 'Host header values the admin answers to besides localhost, 127.0.0.1, [::1], its bind address and the address a request reached it at (e.g. a Service name when it binds 0.0.0.0). Others get 403 (DNS rebinding).',
      },
      configDump: object('What /config_dump shows.', {
        show: {
          type: 'array',
          uniqueItems: true,
          items: string('dump-path', 'A place in the dump: steps separated by dots; a list entry by index or name; * for any.'),
          description: 'Places shown as configured although they may hold secrets, e.g. filters.headers.configuration.response or listeners.*.routes.*.match.headers.',
        },
      }),
    }),
    listeners: { type: 'array', minItems: 1, items: { $ref: '#/$defs/listener' }, description: 'Ports Sluice listens on.' },
    clusters: { type: 'array', default: [], items: { $ref: '#/$defs/cluster' }, description: 'Upstreams routes and filters send requests to.' },
    filters: { type: 'array', default: [], items: { $ref: '#/$defs/filter' }, description: 'proxy-wasm plugins listeners run.' },
    workloads: { type: 'array', items: { $ref: '#/$defs/workload' }, description: 'Node mode: the pods on this node, with their identities and the filters selected for each. The node agent requests a certificate per identity; their pods\' connections to remote workloads go through the tunnel with it.' },
    tunnel: object('Node mode: the node-to-node tunnel (HTTP/2 CONNECT over mTLS on 15008). Captured connections to the pods listed here go through it with the source pod\'s identity.', {
      remoteWorkloads: { type: 'array', default: [], items: { $ref: '#/$defs/remoteWorkload' }, description: 'Pods on other nodes, with the tunnel address of their node and their identity (from the controller).' },
    }),
    tracing: object('Span export: the proxy\'s span of every request, to an OpenTelemetry collector.', {
      otlp: object('OTLP/HTTP, JSON encoding.', {
        endpoint: string('http-url', 'The collector\'s traces endpoint, e.g. http://127.0.0.1:4318/v1/traces.'),
        serviceName: { type: 'string', minLength: 1, default: CONFIG_DEFAULTS.tracing.serviceName, description: 'The service.name resource attribute.' },
        flushIntervalMs: ms('Spans are sent at least this often.', CONFIG_DEFAULTS.tracing.flushIntervalMs, 10),
        maxBatch: integer(1, 100_000, 'Most spans per request to the collector; a full batch is sent at once.', CONFIG_DEFAULTS.tracing.maxBatch),
      }, ['endpoint']),
    }, ['otlp']),
  }, ['listeners']),
  $defs: { listener, route, headerMatch, queryMatch, cluster, filter, workload, remoteWorkload },
});
