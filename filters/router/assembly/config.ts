// The router's configuration: read and validated once in onConfigure into rules the request path
// only walks — header names interned into slots, regexes compiled, cluster names pre-encoded,
// one counter per target. Every error names its field (`rules[1].weightedClusters[0].weight`).

import { ConfigReader, Counter, JsonObject, JsonValue } from "../../../sdk/assembly";
import { Regex } from "./regex";

export const PATH_ANY: i32 = 0;
export const PATH_EXACT: i32 = 1;
export const PATH_PREFIX: i32 = 2;
export const PATH_REGEX: i32 = 3;

export const HEADER_PRESENT: i32 = 0;
export const HEADER_ABSENT: i32 = 1;
export const HEADER_EXACT: i32 = 2;
export const HEADER_PREFIX: i32 = 3;

export const ACTION_CLUSTER: i32 = 0;
export const ACTION_WEIGHTED: i32 = 1;
export const ACTION_ROUTE: i32 = 2;

export const STICKY_NONE: i32 = 0;
export const STICKY_HEADER: i32 = 1;
export const STICKY_COOKIE: i32 = 2;

/** Weighted-cluster weights, as the proxy's own routes take them. */
const MAX_WEIGHT: i64 = 1000000;

/** Where a decision sends the request: a cluster or a named route of the host. */
export class Target {
  /** UTF-8 of the name: the value of `sluice.cluster` / `sluice.route`, encoded once. */
  readonly bytes: ArrayBuffer;
  readonly decisions: Counter;

  constructor(
    readonly name: string,
    readonly isRoute: bool,
  ) {
    this.bytes = String.UTF8.encode(name);
    // A name that carries Prometheus labels (docs/proxy.md): one series per cluster or route.
    // Names are validated (no quote or backslash), so they need no escaping.
    this.decisions = new Counter("router_decisions_total{" + (isRoute ? "route" : "cluster") + "=\"" + name + "\"}");
  }
}

export class HeaderMatch {
  constructor(
    /** Index into RouterConfig.headerNames (each name read at most once per request). */
    readonly slot: i32,
    readonly kind: i32,
    readonly value: string,
  ) {}
}

export class WeightedCluster {
  /** Smooth weighted round-robin state (nginx's): advanced on every unsticky pick. */
  current: i64 = 0;

  constructor(
    readonly target: Target,
    readonly weight: i64,
  ) {}
}

export class Rule {
  pathKind: i32 = PATH_ANY;
  /** `path` or `prefix`. */
  path: string = "";
  regex: Regex | null = null;
  /** Upper-case; empty means any method. */
  methods: string[] = [];
  headers: HeaderMatch[] = [];

  action: i32 = ACTION_CLUSTER;
  /** ACTION_CLUSTER and ACTION_ROUTE. */
  target: Target | null = null;
  /** ACTION_WEIGHTED. */
  clusters: WeightedCluster[] = [];
  totalWeight: i64 = 0;
  sticky: i32 = STICKY_NONE;
  /** The header slot the sticky key comes from (`cookie` for a cookie). */
  stickySlot: i32 = -1;
  cookie: string = "";
}

export class RouterConfig {
  rules: Rule[] = [];
  /** Every request header some rule reads, once each. */
  headerNames: string[] = [];
  /** Slot of `:path` / `:method` in headerNames, -1 when no rule needs it. */
  pathSlot: i32 = -1;
  methodSlot: i32 = -1;
  /** Response header naming the decision; "" for none. */
  decisionHeader: string = "";
}

/** The parsed configuration, or every problem found, joined with "; ". */
export class ParseResult {
  constructor(
    readonly config: RouterConfig | null,
    readonly error: string | null,
  ) {}
}

/** Collects errors from readers that do not share one list (array items get their own reader). */
class Problems {
  readonly messages: string[] = [];

  take(reader: ConfigReader): void {
    const error = reader.error;
    if (error !== null && !this.messages.includes(error)) this.messages.push(error);
  }
}

export function parseConfig(text: string): ParseResult {
  const problems = new Problems();
  const reader = ConfigReader.parse(text);
  const config = new RouterConfig();
  const targets = new Map<string, Target>();

  config.decisionHeader = reader.string("decisionHeader", "");
  if (reader.has("decisionHeader") && !isHeaderName(config.decisionHeader, false)) {
    reader.fail("decisionHeader", "must be a lower-case header name like 'x-sluice-cluster', got '" + config.decisionHeader + "'");
  }

  if (!reader.has("rules") && reader.json !== null) reader.fail("rules", "is required: a list of { match, cluster | weightedClusters | route }");
  const rules = reader.array("rules");
  if (rules !== null) {
    if (rules.length == 0) reader.fail("rules", "must list at least one rule");
    for (let i = 0; i < rules.length; i++) {
      const field = "rules[" + i.toString() + "]";
      const object = objectOf(reader, field, rules.at(i));
      if (object === null) continue;
      const rule = parseRule(new ConfigReader(object, field), config, targets, problems);
      config.rules.push(rule);
    }
  }
  reader.rejectUnknownFields();
  problems.take(reader);
  if (problems.messages.length > 0) return new ParseResult(null, problems.messages.join("; "));
  return new ParseResult(config, null);
}

function parseRule(reader: ConfigReader, config: RouterConfig, targets: Map<string, Target>, problems: Problems): Rule {
  const rule = new Rule();
  if (reader.has("match")) parseMatch(reader.object("match"), rule, config, problems);

  const hasCluster = reader.has("cluster");
  const hasWeighted = reader.has("weightedClusters");
  const hasRoute = reader.has("route");
  const actions = (hasCluster ? 1 : 0) + (hasWeighted ? 1 : 0) + (hasRoute ? 1 : 0);
  if (actions != 1) {
    touch(reader, "cluster", "weightedClusters", "route");
    reader.fail(actions == 0 ? "cluster" : "weightedClusters", "a rule needs exactly one of 'cluster', 'weightedClusters' or 'route'" + (actions > 1 ? ", got " + actions.toString() : ""));
  }
  if (hasCluster) {
    rule.action = ACTION_CLUSTER;
    const name = reader.string("cluster", "");
    if (checkName(reader, "cluster", name)) rule.target = targetFor(targets, name, false);
  } else if (hasRoute) {
    rule.action = ACTION_ROUTE;
    const name = reader.string("route", "");
    if (checkName(reader, "route", name)) rule.target = targetFor(targets, name, true);
  } else if (hasWeighted) {
    rule.action = ACTION_WEIGHTED;
    parseWeighted(reader, rule, targets, problems);
  }
  if (reader.has("stickyBy")) {
    if (!hasWeighted) reader.fail("stickyBy", "only applies to 'weightedClusters'");
    parseSticky(reader.object("stickyBy"), rule, config);
  }
  reader.rejectUnknownFields();
  problems.take(reader);
  return rule;
}

function parseMatch(reader: ConfigReader, rule: Rule, config: RouterConfig, problems: Problems): void {
  const kinds = (reader.has("path") ? 1 : 0) + (reader.has("prefix") ? 1 : 0) + (reader.has("regex") ? 1 : 0);
  if (kinds > 1) {
    touch(reader, "path", "prefix", "regex");
    reader.fail("path", "give at most one of 'path', 'prefix' and 'regex'");
  }
  if (reader.has("path")) {
    rule.pathKind = PATH_EXACT;
    rule.path = reader.string("path", "");
    checkPath(reader, "path", rule.path);
  } else if (reader.has("prefix")) {
    rule.pathKind = PATH_PREFIX;
    rule.path = reader.string("prefix", "");
    checkPath(reader, "prefix", rule.path);
  } else if (reader.has("regex")) {
    rule.pathKind = PATH_REGEX;
    const pattern = reader.string("regex", "");
    const compiled = Regex.compile(pattern);
    if (compiled.error !== null) reader.fail("regex", "not a supported regular expression: " + compiled.error!);
    rule.regex = compiled.regex;
  }
  if (rule.pathKind != PATH_ANY && config.pathSlot < 0) config.pathSlot = slotOf(config, ":path");

  if (reader.has("methods")) {
    const methods = reader.stringArray("methods");
    if (methods.length == 0 && reader.ok) reader.fail("methods", "must list at least one method (leave it out for any method)");
    for (let i = 0; i < methods.length; i++) {
      const method = methods[i].toUpperCase();
      if (!isToken(method)) reader.fail("methods[" + i.toString() + "]", "not an HTTP method: '" + methods[i] + "'");
      rule.methods.push(method);
    }
    if (config.methodSlot < 0) config.methodSlot = slotOf(config, ":method");
  }

  const headers = reader.array("headers");
  if (headers !== null) {
    if (headers.length == 0) reader.fail("headers", "must list at least one header match (leave it out to match any headers)");
    for (let i = 0; i < headers.length; i++) {
      const field = reader.path + ".headers[" + i.toString() + "]";
      const object = objectOf(reader, "headers[" + i.toString() + "]", headers.at(i));
      if (object === null) continue;
      const r = new ConfigReader(object, field);
      const match = parseHeaderMatch(r, config);
      if (match !== null) rule.headers.push(match);
      problems.take(r);
    }
  }
  reader.rejectUnknownFields();
}

function parseHeaderMatch(reader: ConfigReader, config: RouterConfig): HeaderMatch | null {
  const name = reader.requireString("name");
  if (reader.has("name") && !isHeaderName(name, true)) {
    reader.fail("name", "must be a lower-case header name like 'x-canary' (pseudo-headers such as ':authority' too), got '" + name + "'");
  }
  const kinds = (reader.has("exact") ? 1 : 0) + (reader.has("prefix") ? 1 : 0) + (reader.has("present") ? 1 : 0);
  if (kinds > 1) {
    touch(reader, "exact", "prefix", "present");
    reader.fail("exact", "give at most one of 'exact', 'prefix' and 'present'");
  }
  let kind = HEADER_PRESENT;
  let value = "";
  if (reader.has("exact")) {
    kind = HEADER_EXACT;
    value = reader.string("exact", "");
  } else if (reader.has("prefix")) {
    kind = HEADER_PREFIX;
    value = reader.string("prefix", "");
    if (value.length == 0 && reader.ok) reader.fail("prefix", "must not be empty (use present: true)");
  } else if (reader.has("present")) {
    kind = reader.bool("present", true) ? HEADER_PRESENT : HEADER_ABSENT;
  }
  reader.rejectUnknownFields();
  if (!reader.ok) return null;
  return new HeaderMatch(slotOf(config, name), kind, value);
}

function parseWeighted(reader: ConfigReader, rule: Rule, targets: Map<string, Target>, problems: Problems): void {
  const list = reader.array("weightedClusters");
  if (list === null) return;
  if (list.length == 0) {
    reader.fail("weightedClusters", "must list at least one { cluster, weight }");
    return;
  }
  const seen = new Array<string>();
  for (let i = 0; i < list.length; i++) {
    const item = "weightedClusters[" + i.toString() + "]";
    const object = objectOf(reader, item, list.at(i));
    if (object === null) continue;
    const r = new ConfigReader(object, reader.path + "." + item);
    const name = r.requireString("cluster");
    const weight = r.integer("weight", -1, 0, MAX_WEIGHT);
    if (!r.has("weight")) r.fail("weight", "is required (an integer from 0 to " + MAX_WEIGHT.toString() + ")");
    r.rejectUnknownFields();
    if (r.has("cluster") && checkName(r, "cluster", name)) {
      if (seen.includes(name)) r.fail("cluster", "'" + name + "' is listed twice");
      seen.push(name);
    }
    problems.take(r);
    if (!r.ok) continue;
    rule.clusters.push(new WeightedCluster(targetFor(targets, name, false), weight));
    rule.totalWeight += weight;
  }
  if (reader.ok && rule.clusters.length == list.length && rule.totalWeight == 0) {
    reader.fail("weightedClusters", "the weights add up to 0: give at least one cluster a weight above 0");
  }
}

function parseSticky(reader: ConfigReader, rule: Rule, config: RouterConfig): void {
  const hasHeader = reader.has("header");
  const hasCookie = reader.has("cookie");
  if (hasHeader == hasCookie) {
    touch(reader, "header", "cookie", "header");
    reader.fail("header", "give exactly one of 'header' and 'cookie'");
  } else if (hasHeader) {
    const name = reader.string("header", "");
    if (!isHeaderName(name, true)) reader.fail("header", "must be a lower-case header name like 'x-user', got '" + name + "'");
    rule.sticky = STICKY_HEADER;
    rule.stickySlot = slotOf(config, name);
  } else {
    const name = reader.string("cookie", "");
    if (!isToken(name)) reader.fail("cookie", "must be a cookie name (an HTTP token like 'session'), got '" + name + "'");
    rule.sticky = STICKY_COOKIE;
    rule.cookie = name;
    rule.stickySlot = slotOf(config, "cookie");
  }
  reader.rejectUnknownFields();
}

function targetFor(targets: Map<string, Target>, name: string, isRoute: bool): Target {
  const key = (isRoute ? "route:" : "cluster:") + name;
  if (targets.has(key)) return targets.get(key);
  const target = new Target(name, isRoute);
  targets.set(key, target);
  return target;
}

function slotOf(config: RouterConfig, name: string): i32 {
  const i = config.headerNames.indexOf(name);
  if (i >= 0) return i;
  config.headerNames.push(name);
  return config.headerNames.length - 1;
}

/** The item as an object, or null after recording an error on `field`. */
function objectOf(reader: ConfigReader, field: string, value: JsonValue): JsonObject | null {
  const object = value.asObject();
  if (object === null) reader.fail(field, "expected an object, got " + value.typeName);
  return object;
}

/** A name as the proxy's config takes it: up to 128 letters, digits, '.', '_', '-', starting with a letter or digit. */
function checkName(reader: ConfigReader, field: string, name: string): bool {
  let ok = name.length > 0 && name.length <= 128;
  for (let i = 0; ok && i < name.length; i++) {
    const c = name.charCodeAt(i);
    const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    ok = alnum || (i > 0 && (c == 0x2e || c == 0x5f || c == 0x2d));
  }
  if (!ok) reader.fail(field, "'" + name + "' is not a valid name (up to 128 letters, digits, '.', '_' and '-', starting with a letter or digit)");
  return ok;
}

function checkPath(reader: ConfigReader, field: string, path: string): void {
  if (!path.startsWith("/")) reader.fail(field, "must start with '/', got '" + path + "'");
  else if (path.includes("?")) reader.fail(field, "matches the path without its query: leave out '?', got '" + path + "'");
}

/** An HTTP token (RFC 9110): method names, cookie names. */
export function isToken(text: string): bool {
  if (text.length == 0) return false;
  for (let i = 0; i < text.length; i++) if (!isTokenChar(text.charCodeAt(i))) return false;
  return true;
}

function isTokenChar(c: i32): bool {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true;
  return c < 0x80 && "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
}

/** A lower-case token; with `pseudo`, also `:name`. */
function isHeaderName(name: string, pseudo: bool): bool {
  const body = pseudo && name.startsWith(":") ? name.substring(1) : name;
  return isToken(body) && body.toLowerCase() == body;
}

/** Marks fields as read, so that a conflict is reported once rather than also as "unknown field". */
function touch(reader: ConfigReader, a: string, b: string, c: string): void {
  reader.value(a);
  reader.value(b);
  reader.value(c);
}
