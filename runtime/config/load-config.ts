// Turns a configuration file (YAML or JSON) into a frozen Snapshot: parse, check the shape against
// the JSON Schema, check what a schema cannot say (references, duplicates, exactly-one-of), fill in
// defaults, resolve paths, deep-freeze. Every problem is collected and reported at once, each as
// `<path>: <what>`; nothing half-valid gets through.

import { readFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import YAML from 'yaml';
import { SluiceError } from '../errors.ts';
import { ENV_NAME, FAIL_STRATEGIES, pluginSpec, type PluginCapabilities, type PluginLimits, type PluginSpec, type QuarantinePolicy } from '../host/plugin-spec.ts';
import { CONFIG_DEFAULTS, DEFAULT_RETRY_POLICY, FORMATS, NO_NUL, configSchema, parseHostPort, type HostPort } from './config-schema.ts';
import { ACCESS_LOG_FIELDS, type AccessLogConfig, type AccessLogField, type RetryOn, type RetryPolicy } from './snapshot.ts';
import { logLevelNumber } from '../log.ts';
import type {
  AdminConfig,
  ClusterConfig,
  Endpoint,
  FilterConfig,
  ListenerConfig,
  ListenerTls,
  RouteAction,
  RouteConfig,
  RouteMatch,
  Snapshot,
  TracingConfig,
  ValueMatch,
  WorkloadConfig,
  TunnelConfig,
  WeightedCluster,
} from './snapshot.ts';

/** An invalid configuration. `problems` lists every problem found, each as `<path>: <what>`. */
export class ConfigError extends SluiceError {
  /** Where the configuration came from (a file path, or what the caller passed as `source`). */
  readonly source: string;
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[], options?: { cause?: unknown }) {
    const shown = problems.slice(0, MAX_PROBLEMS_SHOWN).map((problem) => `\n  - ${problem}`);
    if (problems.length > MAX_PROBLEMS_SHOWN) shown.push(`\n  - … and ${problems.length - MAX_PROBLEMS_SHOWN} more (see .problems)`);
    super('SLUICE_ERR_CONFIG', `${source}: invalid configuration:${shown.join('')}`, options);
    this.name = 'ConfigError';
    this.source = source;
    this.problems = Object.freeze([...problems]);
  }
}

/** The message lists this many problems; `problems` has them all. */
const MAX_PROBLEMS_SHOWN = 50;

/** Reads `file` (YAML or JSON; paths in it are relative to its folder) and returns its snapshot. */
export async function loadConfig(file: string): Promise<Snapshot> {
  const source = resolve(file);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file; check the path' : code === 'EISDIR' ? 'it is a directory, not a file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new ConfigError(source, [`cannot read the file (${why})`], { cause: error });
  }
  return parseConfig(text, source, dirname(source));
}

/**
 * Parses configuration text (YAML, or JSON, which YAML includes) and returns its snapshot.
 * `source` names it in errors and becomes `snapshot.source`; filter modules resolve against `baseDir`.
 */
export function parseConfig(text: string, source: string, baseDir: string): Snapshot {
  const problems: string[] = [];
  const document = parseYaml(text, problems);
  // After a syntax error the tree is a guess; checking it would only add noise.
  if (problems.length > 0) throw new ConfigError(source, problems);
  checkShape(document, problems);
  const snapshot = new Resolver(source, resolve(baseDir), problems).snapshot(document);
  if (problems.length > 0) throw new ConfigError(source, [...new Set(problems)]);
  return deepFreeze(snapshot);
}

// ---- parsing -------------------------------------------------------------------------------

function parseYaml(text: string, problems: string[]): unknown {
  // merge: `<<: *anchor` copies a mapping, so settings shared by entries are written once.
  const document = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true, merge: true });
  for (const error of document.errors) {
    // prettyErrors appends " at line L, column C:" and a code excerpt; we say where in front.
    const what = error.message.split(/ at line \d+, column \d+/)[0]!;
    const at = error.linePos?.[0];
    problems.push(at ? `${at.line}:${at.col}: ${what}` : what);
  }
  if (problems.length > 0) return undefined;
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias to an anchor that is not defined, or an alias bomb.
    problems.push(`(top level): ${(error as Error).message}`);
    return undefined;
  }
}

// ---- shape: the JSON Schema, with ajv's errors said in our words ----------------------------

let validator: ValidateFunction | undefined;

function checkShape(document: unknown, problems: string[]): void {
  if (!validator) {
    const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    for (const [name, check] of Object.entries(FORMATS)) ajv.addFormat(name, { type: 'string', validate: (text: string) => check(text) === undefined });
    validator = ajv.compile(configSchema);
  }
  if (validator(document)) return;
  const errors = validator.errors ?? [];
  // A value of the wrong type fails its other keywords too; the type is the one thing to say.
  const wrongType = new Set(errors.filter((error) => error.keyword === 'type').map((error) => error.instancePath));
  for (const error of errors) {
    if (error.keyword !== 'type' && error.propertyName === undefined && wrongType.has(error.instancePath)) continue;
    const problem = describeError(error);
    if (problem !== undefined) problems.push(problem);
  }
}

function describeError(error: ErrorObject): string | undefined {
  const at = pointerToPath(error.instancePath);
  const params = error.params as Record<string, unknown>;
  const data: unknown = error.data;
  switch (error.keyword) {
    case 'required':
      return `${show(at)}: missing required property ${JSON.stringify(params.missingProperty)}`;
    case 'additionalProperties':
      return `${show(at)}: unknown property ${JSON.stringify(params.additionalProperty)}`;
    case 'type': {
      const types = ([] as string[]).concat(params.type as string | string[]).map(typeName);
      return `${show(at)}: must be ${types.join(' or ')}, got ${describeValue(data)}`;
    }
    case 'enum':
      return `${show(at)}: ${describeValue(data)} is not one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'minimum':
    case 'maximum':
      return `${show(at)}: must be at ${error.keyword === 'minimum' ? 'least' : 'most'} ${params.limit as number}, got ${describeValue(data)}`;
    case 'minItems':
    case 'minLength':
      return params.limit === 1 ? `${show(at)}: must not be empty` : `${show(at)}: must have at least ${params.limit as number} entries`;
    case 'uniqueItems':
      return `${show(at)}: lists ${describeValue((data as unknown[])[params.i as number])} twice`;
    case 'format': {
      // A property name's format (directResponse.headers) is reported on the object: point at the key.
      const name = error.propertyName;
      const explain = FORMATS[params.format as string]!;
      return name === undefined ? `${show(at)}: ${explain(data as string)}` : `${show(join(at, name))}: ${explain(name)}`;
    }
    case 'pattern':
      // A property name's pattern (a filter's environment) is reported on the object: point at the key.
      if (error.propertyName !== undefined && params.pattern === ENV_NAME.source) return `${show(join(at, error.propertyName))}: ${JSON.stringify(error.propertyName)} is not a variable name (a letter or "_", then letters, digits and "_")`;
      if (params.pattern === NO_NUL) return `${show(at)}: must not contain NUL characters`;
      return `${show(error.propertyName === undefined ? at : join(at, error.propertyName))}: ${error.message ?? 'is invalid'}`;
    case 'propertyNames':
      return undefined; // the failing name's own error (above) says what is wrong
    default:
      // A keyword this translation does not know yet: still name the place.
      return `${show(at)}: ${error.message ?? 'is invalid'}`;
  }
}

function pointerToPath(pointer: string): string {
  if (pointer === '') return '';
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<string>((path, part) => join(path, /^(0|[1-9][0-9]*)$/.test(part) ? Number(part) : part), '');
}

/** `a` + `b` → `a.b`, `a` + 0 → `a[0]`, `a` + `x-y` → `a["x-y"]`. */
function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

const show = (path: string): string => (path === '' ? '(top level)' : path);

function typeName(type: string): string {
  switch (type) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'integer':
      return 'an integer';
    case 'null':
      return 'null';
    default:
      return `a ${type}`;
  }
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

// ---- meaning: what the schema cannot say, and the snapshot itself ---------------------------

type Raw = Record<string, unknown>;
const isRaw = (value: unknown): value is Raw => typeof value === 'object' && value !== null && !Array.isArray(value);
const raw = (value: unknown): Raw => (isRaw(value) ? value : {});
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const whole = (value: unknown, fallback: number): number => (typeof value === 'number' && Number.isInteger(value) ? value : fallback);
const flag = (value: unknown, fallback: boolean): boolean => (typeof value === 'boolean' ? value : fallback);

const ACTIONS = ['cluster', 'weightedClusters', 'redirect', 'directResponse'] as const;
const PATH_MATCHES = ['path', 'prefix', 'regex'] as const;

/**
 * Builds the snapshot from a parsed document and reports what the schema cannot: unknown or
 * duplicate names, clashing addresses, exactly-one-of rules, missing modules. It reads the
 * document defensively: where the shape is wrong, checkShape has said so, and this only must not
 * throw or say it again.
 */
class Resolver {
  private clusterNames: string[] = [];
  private filterNames: string[] = [];

  constructor(
    private readonly source: string,
    private readonly baseDir: string,
    private readonly problems: string[],
  ) {}

  snapshot(document: unknown): Snapshot {
    const root = raw(document);
    const clustersRaw = list(root.clusters).map(raw);
    const filtersRaw = list(root.filters).map(raw);
    this.clusterNames = this.uniqueNames(clustersRaw, 'clusters');
    this.filterNames = this.uniqueNames(filtersRaw, 'filters');

    const adminAddress = str(raw(root.admin).address) ?? CONFIG_DEFAULTS.adminAddress;
    const adminRaw = raw(root.admin);
    const admin: AdminConfig = {
      ...hostPort(adminAddress, 0),
      ...(Array.isArray(adminRaw.allowedHosts) ? { allowedHosts: adminRaw.allowedHosts.filter((h): h is string => typeof h === 'string').map((h) => h.replace(/^\[(.*)\]$/, '$1').toLowerCase()) } : {}),
      ...(isRaw(adminRaw.configDump) ? { configDump: { show: list(adminRaw.configDump.show).filter((p): p is string => typeof p === 'string') } } : {}),
    };
    const listenersRaw = list(root.listeners).map(raw);
    this.uniqueNames(listenersRaw, 'listeners');
    this.checkAddresses(adminAddress, listenersRaw);

    return {
      source: this.source,
      admin,
      listeners: listenersRaw.map((listener, i) => this.listener(listener, `listeners[${i}]`)),
      clusters: clustersRaw.map((cluster, i) => this.cluster(cluster, `clusters[${i}]`)),
      filters: filtersRaw.map((filter, i) => this.filter(filter, `filters[${i}]`)),
      ...(root.tracing === undefined ? {} : { tracing: this.tracing(raw(raw(root.tracing).otlp)) }),
      ...(root.workloads === undefined ? {} : { workloads: this.workloads(list(root.workloads).map(raw)) }),
      ...(root.tunnel === undefined ? {} : { tunnel: this.tunnel(raw(root.tunnel)) }),
    };
  }

  private workloads(items: Raw[]): WorkloadConfig[] {
    const seen = new Map<string, number>();
    return items.map((w, i) => {
      const at = `workloads[${i}]`;
      const key = `${str(w.namespace)}/${str(w.name)}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else this.problem(`${at}.name`, `${JSON.stringify(key)} is already described by workloads[${first}]`);
      const filters = raw(w.filters);
      const names = (direction: 'outbound' | 'inbound'): string[] => {
        const given = list(filters[direction]);
        given.forEach((name, j) => this.reference(`${at}.filters.${direction}[${j}]`, name, 'filter'));
        return given.filter((name): name is string => typeof name === 'string');
      };
      const labels = Object.fromEntries(Object.entries(raw(w.labels)).filter((e): e is [string, string] => typeof e[1] === 'string'));
      return {
        namespace: str(w.namespace) ?? '',
        name: str(w.name) ?? '',
        ...(typeof w.workload === 'string' ? { workload: w.workload } : {}),
        identity: str(w.identity) ?? '',
        ...(typeof w.serviceAccount === 'string' ? { serviceAccount: w.serviceAccount } : {}),
        labels,
        addresses: list(w.addresses).filter((a): a is string => typeof a === 'string'),
        filters: { outbound: names('outbound'), inbound: names('inbound'), ...this.workloadPorts(filters.ports, { outbound: names('outbound'), inbound: names('inbound') }, `${at}.filters.ports`) },
      };
    });
  }

  /** A workload's per-port filters: each must be in its direction's list. */
  private workloadPorts(given: unknown, chains: Record<'outbound' | 'inbound', string[]>, at: string): Pick<WorkloadConfig['filters'], 'ports'> {
    if (given === undefined) return {};
    const ports: Record<string, Record<string, number[]>> = {};
    for (const direction of ['outbound', 'inbound'] as const) {
      const byFilter = raw(raw(given)[direction]);
      for (const [name, value] of Object.entries(byFilter)) {
        if (!chains[direction].includes(name)) this.problem(`${at}.${direction}.${name}`, `"${name}" is not in filters.${direction}; name a filter of that direction`);
        (ports[direction] ??= {})[name] = list(value).filter((p): p is number => typeof p === 'number');
      }
    }
    return { ports };
  }

  private tunnel(t: Raw): TunnelConfig {
    const owner = new Map<string, string>();
    return {
      remoteWorkloads: list(t.remoteWorkloads).map(raw).map((w, i) => {
        const at = `tunnel.remoteWorkloads[${i}]`;
        const addresses = list(w.addresses).filter((a): a is string => typeof a === 'string');
        addresses.forEach((a, j) => {
          const first = owner.get(a);
          if (first !== undefined) this.problem(`${at}.addresses[${j}]`, `${a} is already the address of ${first}`);
          else owner.set(a, at);
        });
        return { namespace: str(w.namespace) ?? '', name: str(w.name) ?? '', identity: str(w.identity) ?? '', ...(typeof w.workload === 'string' ? { workload: w.workload } : {}), ...(typeof w.app === 'string' ? { app: w.app } : {}), addresses, tunnel: hostPort(str(w.tunnel), 1) };
      }),
    };
  }

  private tracing(otlp: Raw): TracingConfig {
    const d = CONFIG_DEFAULTS.tracing;
    return {
      otlp: {
        endpoint: str(otlp.endpoint) ?? '',
        serviceName: str(otlp.serviceName) ?? d.serviceName,
        flushIntervalMs: whole(otlp.flushIntervalMs, d.flushIntervalMs),
        maxBatch: whole(otlp.maxBatch, d.maxBatch),
      },
    };
  }

  private problem(at: string, what: string): void {
    this.problems.push(`${show(at)}: ${what}`);
  }

  /** Reports names used twice in `items`; returns the names (for references). */
  private uniqueNames(items: Raw[], at: string): string[] {
    const seen = new Map<string, number>();
    items.forEach((item, i) => {
      const name = str(item.name);
      if (name === undefined) return;
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else this.problem(`${at}[${i}].name`, `${JSON.stringify(name)} is already used by ${at}[${first}]`);
    });
    return [...seen.keys()];
  }

  /** Two sockets cannot bind the same port on the same address, or on any address when one is a wildcard. */
  private checkAddresses(adminAddress: string, listeners: Raw[]): void {
    const bound: { at: string; owner: string; text: string; address: HostPort }[] = [];
    const add = (at: string, owner: string, value: string | undefined): void => {
      if (value === undefined) return;
      const address = parseHostPort(value, 0);
      if ('error' in address || address.port === 0) return; // port 0 picks a free port: no clash
      const host = address.host.toLowerCase();
      for (const other of bound) {
        if (other.address.port !== address.port) continue;
        const otherHost = other.address.host.toLowerCase();
        if (otherHost === host) return this.problem(at, `${value} is already used by ${other.owner}`);
        if (isWildcard(host) || isWildcard(otherHost)) return this.problem(at, `${value} overlaps ${other.text} of ${other.owner}`);
      }
      bound.push({ at, owner, text: value, address });
    };
    add('admin.address', 'admin.address', adminAddress);
    listeners.forEach((listener, i) => {
      const name = str(listener.name);
      add(`listeners[${i}].address`, `listeners[${i}]${name === undefined ? '' : ` (${JSON.stringify(name)})`}`, str(listener.address));
    });
  }

  private reference(at: string, name: unknown, kind: 'cluster' | 'filter'): void {
    if (typeof name !== 'string') return;
    const known = kind === 'cluster' ? this.clusterNames : this.filterNames;
    if (known.includes(name)) return;
    const plural = `${kind}s`;
    const listed = known.length === 0 ? `no ${plural} are defined` : `${plural} are: ${known.join(', ')}`;
    this.problem(at, `no ${kind} named ${JSON.stringify(name)} (${listed})`);
  }

  private listener(listener: Raw, at: string): ListenerConfig {
    if (listener.protocol === 'tcp') return this.tcpListener(listener, at);
    if (listener.routes === undefined) this.problem(at, 'an http listener needs routes');
    if (listener.cluster !== undefined) this.problem(`${at}.cluster`, 'only tcp listeners have a cluster; http listeners route with routes');
    const filters = list(listener.filters);
    filters.forEach((name, i) => this.reference(`${at}.filters[${i}]`, name, 'filter'));
    const routesRaw = list(listener.routes).map(raw);
    const routes = routesRaw.map((route, i) => this.route(route, `${at}.routes[${i}]`, i));
    // Route names: unique within the listener; a defaulted name that clashes needs a real one.
    const seen = new Map<string, number>();
    routes.forEach((route, i) => {
      const first = seen.get(route.name);
      if (first === undefined) return void seen.set(route.name, i);
      if (typeof routesRaw[i]!.name === 'string') this.problem(`${at}.routes[${i}].name`, `${JSON.stringify(route.name)} is already used by ${at}.routes[${first}]`);
      else this.problem(`${at}.routes[${i}]`, `its default name ${JSON.stringify(route.name)} is already used by ${at}.routes[${first}]; give it a name`);
    });
    return {
      name: str(listener.name) ?? '',
      ...hostPort(str(listener.address), 0),
      protocol: 'http',
      filters: filters.filter((name): name is string => typeof name === 'string'),
      routes,
      streamIdleTimeoutMs: whole(listener.streamIdleTimeoutMs, CONFIG_DEFAULTS.streamIdleTimeoutMs),
      ...(listener.accessLog === undefined ? {} : { accessLog: this.accessLog(raw(listener.accessLog)) }),
      ...(listener.tls === undefined ? {} : { tls: this.tls(raw(listener.tls), `${at}.tls`) }),
      upgrades: this.upgrades(listener.upgrades, `${at}.upgrades`),
      maxRequestHeaders: whole(listener.maxRequestHeaders, CONFIG_DEFAULTS.maxRequestHeaders),
      bufferLimitBytes: whole(listener.bufferLimitBytes, CONFIG_DEFAULTS.bufferLimitBytes),
    };
  }

  private upgrades(value: unknown, at: string): string[] {
    if (value === undefined) return [...CONFIG_DEFAULTS.upgrades];
    const names = list(value).filter((name): name is string => typeof name === 'string').map((name) => name.toLowerCase());
    names.forEach((name, i) => {
      // An h2c upgrade would hand the connection to HTTP/2 past the HTTP/1.1 request's filters.
      if (name === 'h2c') this.problem(`${at}[${i}]`, 'h2c is never honoured as an upgrade: HTTP/2 clients speak it with prior knowledge on the same port (or h2 over TLS); remove it');
    });
    return names;
  }

  private tls(tls: Raw, at: string): ListenerTls {
    const caFile = str(tls.caFile);
    if (tls.requireClientCert === true && caFile === undefined) this.problem(`${at}.requireClientCert`, 'needs caFile, the CA client certificates must chain to');
    return {
      certFile: this.module(str(tls.certFile), `${at}.certFile`),
      keyFile: this.module(str(tls.keyFile), `${at}.keyFile`),
      ...(caFile === undefined ? {} : { caFile: this.module(caFile, `${at}.caFile`) }),
      requireClientCert: tls.requireClientCert === true,
    };
  }

  private tcpListener(listener: Raw, at: string): ListenerConfig {
    for (const field of ['routes', 'filters', 'accessLog', 'tls']) {
      if (listener[field] !== undefined) this.problem(`${at}.${field}`, 'a tcp listener passes bytes through: it has no routes, filters, access log or TLS');
    }
    for (const field of ['upgrades', 'maxRequestHeaders']) {
      if (listener[field] !== undefined) this.problem(`${at}.${field}`, 'a tcp listener passes bytes through: it parses no HTTP, so this applies only to http listeners');
    }
    if (listener.bufferLimitBytes !== undefined) this.problem(`${at}.bufferLimitBytes`, 'applies to http listeners only; a tcp listener passes bytes through with the socket\'s own flow control');
    if (listener.streamIdleTimeoutMs !== undefined) this.problem(`${at}.streamIdleTimeoutMs`, 'a tcp listener has no HTTP streams; its connections stay open until either side closes them');
    if (listener.cluster === undefined) this.problem(at, 'a tcp listener needs a cluster to send connections to');
    else this.reference(`${at}.cluster`, listener.cluster, 'cluster');
    return {
      name: str(listener.name) ?? '',
      ...hostPort(str(listener.address), 0),
      protocol: 'tcp',
      filters: [],
      routes: [],
      cluster: str(listener.cluster) ?? '',
    };
  }

  private accessLog(log: Raw): AccessLogConfig {
    const path = str(log.path) ?? 'stdout';
    return {
      path: path === 'stdout' || path === 'stderr' ? path : resolve(this.baseDir, path),
      fields: (Array.isArray(log.fields) ? log.fields : [...ACCESS_LOG_FIELDS]) as AccessLogField[],
    };
  }

  private route(route: Raw, at: string, index: number): RouteConfig {
    return {
      name: str(route.name) ?? `route-${index}`,
      match: this.match(raw(route.match), `${at}.match`),
      action: this.action(route, at),
      timeoutMs: whole(route.timeoutMs, CONFIG_DEFAULTS.routeTimeoutMs),
      ...(route.retryPolicy === undefined ? {} : { retryPolicy: this.retryPolicy(raw(route.retryPolicy)) }),
    };
  }

  private retryPolicy(p: Raw): RetryPolicy {
    const d = DEFAULT_RETRY_POLICY;
    return {
      numRetries: whole(p.numRetries, d.numRetries),
      retryOn: (Array.isArray(p.retryOn) ? p.retryOn : [...d.retryOn]) as RetryOn[],
      retriableStatusCodes: (Array.isArray(p.retriableStatusCodes) ? p.retriableStatusCodes : []) as number[],
      perTryTimeoutMs: whole(p.perTryTimeoutMs, d.perTryTimeoutMs),
      baseIntervalMs: whole(p.baseIntervalMs, d.baseIntervalMs),
      maxIntervalMs: whole(p.maxIntervalMs, d.maxIntervalMs),
    };
  }

  private match(match: Raw, at: string): RouteMatch {
    const given = PATH_MATCHES.filter((kind) => match[kind] !== undefined);
    if (given.length > 1) this.problem(at, 'give only one of path, prefix, regex');
    const kind = given[0] ?? 'prefix';
    const result: { -readonly [K in keyof RouteMatch]: RouteMatch[K] } = {};
    result[kind] = str(match[kind]) ?? '/';
    if (Array.isArray(match.methods)) result.methods = match.methods.filter((m): m is string => typeof m === 'string');
    if (Array.isArray(match.headers)) result.headers = match.headers.map((m, i) => this.valueMatch(raw(m), `${at}.headers[${i}]`));
    if (Array.isArray(match.query)) result.query = match.query.map((m, i) => this.valueMatch(raw(m), `${at}.query[${i}]`));
    return result;
  }

  private valueMatch(match: Raw, at: string): ValueMatch {
    const given = (['exact', 'regex', 'present'] as const).filter((kind) => match[kind] !== undefined);
    if (given.length > 1) this.problem(at, 'give at most one of exact, regex, present');
    const name = str(match.name) ?? '';
    const invert = flag(match.invert, false);
    if (given[0] === 'exact') return { name, exact: str(match.exact) ?? '', invert };
    if (given[0] === 'regex') return { name, regex: str(match.regex) ?? '', invert };
    return { name, present: flag(match.present, true), invert };
  }

  private action(route: Raw, at: string): RouteAction {
    const given = ACTIONS.filter((kind) => route[kind] !== undefined);
    if (given.length !== 1) this.problem(at, `give exactly one of ${ACTIONS.join(', ')}`);
    const kind = given[0];
    const forwards = kind === 'cluster' || kind === 'weightedClusters';
    for (const rewrite of ['prefixRewrite', 'hostRewrite'] as const) {
      if (route[rewrite] !== undefined && kind !== undefined && !forwards) this.problem(`${at}.${rewrite}`, 'only applies to routes with cluster or weightedClusters');
    }
    if (kind === 'redirect') {
      const redirect = raw(route.redirect);
      return { kind: 'redirect', status: whole(redirect.status, CONFIG_DEFAULTS.redirectStatus), location: str(redirect.location) ?? '' };
    }
    if (kind === 'directResponse') {
      const direct = raw(route.directResponse);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(raw(direct.headers))) if (typeof value === 'string') headers[name] = value;
      return { kind: 'direct', status: whole(direct.status, CONFIG_DEFAULTS.directResponseStatus), body: str(direct.body) ?? '', headers };
    }
    const clusters = kind === 'weightedClusters' ? this.weightedClusters(route.weightedClusters, `${at}.weightedClusters`) : [];
    if (kind === 'cluster') {
      this.reference(`${at}.cluster`, route.cluster, 'cluster');
      clusters.push({ cluster: str(route.cluster) ?? '', weight: 1 });
    }
    const action: { kind: 'cluster'; clusters: WeightedCluster[]; prefixRewrite?: string; hostRewrite?: string } = { kind: 'cluster', clusters };
    const prefixRewrite = str(route.prefixRewrite);
    if (prefixRewrite !== undefined) {
      // The proxy replaces the matched prefix; a path or regex match has none to replace.
      const other = (['path', 'regex'] as const).find((kind) => raw(route.match)[kind] !== undefined);
      if (other !== undefined) this.problem(`${at}.prefixRewrite`, `needs a prefix match to replace (this route matches a ${other})`);
      action.prefixRewrite = prefixRewrite;
    }
    const hostRewrite = str(route.hostRewrite);
    if (hostRewrite !== undefined) action.hostRewrite = hostRewrite;
    return action;
  }

  private weightedClusters(value: unknown, at: string): WeightedCluster[] {
    const entries = list(value).map(raw);
    const seen = new Map<string, number>();
    let total = 0;
    const clusters = entries.map((entry, i) => {
      const cluster = str(entry.cluster) ?? '';
      this.reference(`${at}[${i}].cluster`, entry.cluster, 'cluster');
      const first = seen.get(cluster);
      if (typeof entry.cluster === 'string' && first !== undefined) this.problem(`${at}[${i}].cluster`, `${JSON.stringify(cluster)} is already listed at ${at}[${first}]`);
      seen.set(cluster, first ?? i);
      const weight = whole(entry.weight, 0);
      total += weight;
      return { cluster, weight };
    });
    const weightsGiven = entries.length > 0 && entries.every((entry) => typeof entry.weight === 'number');
    if (weightsGiven && total === 0) this.problem(at, 'the weights add up to 0; give at least one a positive weight');
    return clusters;
  }

  private cluster(cluster: Raw, at: string): ClusterConfig {
    const loadBalancing = cluster.loadBalancing === 'least-request' || cluster.loadBalancing === 'ring-hash' ? cluster.loadBalancing : CONFIG_DEFAULTS.loadBalancing;
    const hashOn = str(raw(cluster.hashOn).header);
    if (loadBalancing === 'ring-hash' && hashOn === undefined) this.problem(at, 'a ring-hash cluster needs hashOn: { header: <name> }');
    if (loadBalancing !== 'ring-hash' && cluster.hashOn !== undefined) this.problem(`${at}.hashOn`, 'only ring-hash clusters hash; set loadBalancing: ring-hash');
    return {
      name: str(cluster.name) ?? '',
      endpoints: endpointList(cluster.endpoints),
      ...(cluster.vips === undefined ? {} : { vips: endpointList(cluster.vips) }),
      loadBalancing,
      ...(hashOn === undefined ? {} : { hashOn: { header: hashOn.toLowerCase() } }),
      protocol: cluster.protocol === 'http2' ? 'http2' : 'http1',
      connectTimeoutMs: whole(cluster.connectTimeoutMs, CONFIG_DEFAULTS.connectTimeoutMs),
      requestTimeoutMs: whole(cluster.requestTimeoutMs, CONFIG_DEFAULTS.requestTimeoutMs),
      idleTimeoutMs: whole(cluster.idleTimeoutMs, CONFIG_DEFAULTS.idleTimeoutMs),
      maxConnections: whole(cluster.maxConnections, CONFIG_DEFAULTS.maxConnections),
      circuitBreakers: withDefaults(raw(cluster.circuitBreakers ?? {}), CONFIG_DEFAULTS.circuitBreakers),
      outlierDetection: withDefaults(raw(cluster.outlierDetection ?? {}), CONFIG_DEFAULTS.outlierDetection),
    };
  }

  private filter(filter: Raw, at: string): FilterConfig {
    const name = str(filter.name) ?? '';
    const unavailable = str(filter.unavailable);
    if (unavailable !== undefined && filter.module !== undefined) this.problem(at, 'give module or unavailable, not both');
    if (unavailable === undefined && filter.module === undefined) this.problem(at, 'missing required property "module" (the path of the .wasm)');
    const module = unavailable === undefined ? this.module(str(filter.module), `${at}.module`) : '';

    const capabilitiesRaw = raw(filter.capabilities);
    const capabilities: Partial<PluginCapabilities> = {};
    for (const key of ['sharedData', 'sharedQueues', 'foreignFunctions'] as const) {
      if (typeof capabilitiesRaw[key] === 'boolean') capabilities[key] = capabilitiesRaw[key];
    }
    const httpCalls = capabilitiesRaw.httpCalls;
    if (typeof httpCalls === 'boolean') capabilities.httpCalls = httpCalls;
    if (Array.isArray(httpCalls)) {
      httpCalls.forEach((cluster, i) => this.reference(`${at}.capabilities.httpCalls[${i}]`, cluster, 'cluster'));
      capabilities.httpCalls = httpCalls.filter((cluster): cluster is string => typeof cluster === 'string');
    }
    const quarantine = numbers<QuarantinePolicy>(filter.quarantine, ['failures', 'windowMs', 'backoffMs', 'maxBackoffMs']);
    // Only what the schema accepts (it reported the rest) reaches the host's own checks.
    const environment = Object.fromEntries(Object.entries(raw(filter.environment)).filter((e): e is [string, string] => ENV_NAME.test(e[0]) && typeof e[1] === 'string' && !e[1].includes('\0')));

    // The host's own constructor fills in the defaults (plugin-spec.ts is the one place for them).
    // It gets only values the schema accepts (checkShape reported the others), so when it still
    // refuses, it knows a rule the schema lacks: say so.
    let spec: PluginSpec;
    try {
      spec = pluginSpec({
        name: name || 'unnamed',
        failStrategy: FAIL_STRATEGIES.find((strategy) => strategy === filter.failStrategy),
        limits: numbers<PluginLimits>(filter.limits, ['callBudgetMs', 'memoryBytes', 'bodyBytes']),
        capabilities,
        quarantine,
        environment,
      });
    } catch (error) {
      this.problem(at, (error as Error).message);
      spec = pluginSpec({ name: 'unnamed' });
    }
    if (spec.quarantine.maxBackoffMs < spec.quarantine.backoffMs) {
      this.problem(`${at}.quarantine.maxBackoffMs`, `${spec.quarantine.maxBackoffMs} is below backoffMs (${spec.quarantine.backoffMs})`);
    }

    return {
      name,
      module,
      ...(unavailable === undefined ? {} : { unavailable }),
      // Envoy's and Istio's default: C++ SDK modules register their root under "" only.
      rootId: str(filter.rootId) ?? '',
      vmId: str(filter.vmId) ?? CONFIG_DEFAULTS.vmId,
      configuration: filter.config === undefined || filter.config === null ? '' : typeof filter.config === 'string' ? filter.config : JSON.stringify(filter.config),
      failStrategy: spec.failStrategy,
      limits: { ...spec.limits },
      capabilities: { ...spec.capabilities, httpCalls: Array.isArray(spec.capabilities.httpCalls) ? [...spec.capabilities.httpCalls] : spec.capabilities.httpCalls },
      quarantine: { ...spec.quarantine },
      environment: { ...spec.environment },
      ...(typeof filter.logLevel === 'string' && logLevelNumber(filter.logLevel) !== undefined ? { logLevel: logLevelNumber(filter.logLevel) } : {}),
    };
  }

  /** Resolves a module path against the configuration's folder and checks a file is there. */
  private module(path: string | undefined, at: string): string {
    if (path === undefined || path === '') return '';
    const absolute = resolve(this.baseDir, path);
    let stats;
    try {
      stats = statSync(absolute);
    } catch {
      this.problem(at, `${path} not found (resolved to ${absolute})`);
      return absolute;
    }
    if (!stats.isFile()) this.problem(at, `${path} is not a file (resolved to ${absolute})`);
    return absolute;
  }
}

function hostPort(value: string | undefined, minPort: number): HostPort {
  const parsed = value === undefined ? undefined : parseHostPort(value, minPort);
  return parsed === undefined || 'error' in parsed ? { host: '', port: 0 } : { host: parsed.host, port: parsed.port };
}

const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::';

/** The positive integer fields of `value` among `keys` (the rest are left to the defaults). */
function numbers<T>(value: unknown, keys: readonly (keyof T & string)[]): Partial<T> {
  const source = raw(value);
  const result: Record<string, number> = {};
  for (const key of keys) {
    const n = source[key];
    if (typeof n === 'number' && Number.isInteger(n) && n > 0) result[key] = n;
  }
  return result as Partial<T>;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** Whole-number fields of `given` over `defaults` (the schema already checked each value). */
function withDefaults<T extends Record<string, number>>(given: Raw, defaults: T): T {
  const out: Record<string, number> = {};
  for (const [k, d] of Object.entries(defaults)) out[k] = whole(given[k], d);
  return out as T;
}

/** host:port strings as endpoints (the schema has checked them; what does not parse is left out). */
function endpointList(value: unknown): Endpoint[] {
  return list(value).flatMap((endpoint): Endpoint[] => {
    const parsed = typeof endpoint === 'string' ? parseHostPort(endpoint, 1) : undefined;
    return parsed && !('error' in parsed) ? [{ host: parsed.host, port: parsed.port }] : [];
  });
}
