// The retry filter's configuration: rules (match + policy) read and checked in onConfigure, each
// policy turned into the JSON Sluice reads from `sluice.retry_policy`, built once.

import { ConfigReader, Counter, HeaderMatch, JsonArray, log, quoteJson, readHeaderMatches } from "../../../sdk/assembly";

/** The conditions Sluice's retry layer knows (runtime/proxy/retry.ts). */
const RETRY_ON = ["5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes", "retriable-4xx"];
/** Node's timer limit, the ceiling of every duration in Sluice's configuration. */
const MAX_MS: i64 = 2147483647;
const MAX_RETRIES: i64 = 100;

/** One rule's request conditions; an empty one matches every request. */
export class RuleMatch {
  /** Exact path (query ignored), or "" for none. */
  path: string = "";
  /** Path prefix, or "" for none. */
  prefix: string = "";
  methods: string[] = [];
  headers: HeaderMatch[] = [];

  get matchesEverything(): bool {
    return this.path.length == 0 && this.prefix.length == 0 && this.methods.length == 0 && this.headers.length == 0;
  }
}

/** A policy ready for a request: its JSON, and the counter of requests it was applied to. */
export class Policy {
  readonly applied: Counter;

  constructor(
    /** UTF-8 JSON, as proxy_set_property takes it. */
    readonly json: ArrayBuffer,
    /** The metric label: the rule's name (or index), or "default". */
    label: string,
  ) {
    this.applied = new Counter('retry_policies_applied_total{rule="' + label + '"}');
  }
}

export class Rule {
  constructor(
    readonly match: RuleMatch,
    readonly policy: Policy,
  ) {}
}

export class RetryConfig {
  rules: Rule[] = [];
  defaultPolicy: Policy | null = null;
  needsPath: bool = false;
}

/** Rule names become metric labels: keep them to plain characters. */
function isRuleName(name: string): bool {
  if (name.length == 0 || name.length > 64) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f || c == 0x2e;
    if (!ok) return false;
  }
  return true;
}

/** Whether `full` (a :path, query included) is `path` once its query is left out. */
export function samePath(full: string, path: string): bool {
  if (!full.startsWith(path)) return false;
  return full.length == path.length || full.charCodeAt(path.length) == 0x3f; /* '?' */
}

function isMethod(method: string): bool {
  if (method.length == 0) return false;
  for (let i = 0; i < method.length; i++) {
    const c = method.charCodeAt(i);
    if (!(c >= 0x41 && c <= 0x5a) && c != 0x2d && c != 0x5f) return false;
  }
  return true;
}

function readPath(match: ConfigReader, field: string): string {
  const path = match.string(field, "");
  if (!match.has(field)) return path;
  if (!path.startsWith("/")) match.fail(field, "must start with '/', got '" + path + "'");
  else if (path.includes("?") || path.includes("#")) match.fail(field, "is matched against the path without its query: leave out '?' and '#', got '" + path + "'");
  return path;
}

function readMatch(rule: ConfigReader, problems: string[]): RuleMatch {
  const m = new RuleMatch();
  const match = rule.object("match");
  m.path = readPath(match, "path");
  m.prefix = readPath(match, "prefix");
  if (m.path.length > 0 && m.prefix.length > 0) match.fail("path", "give path or prefix, not both");
  m.methods = match.stringArray("methods");
  if (match.has("methods") && m.methods.length == 0) match.fail("methods", "must list at least one method (leave it out to match every method)");
  for (let i = 0; i < m.methods.length; i++) {
    if (!isMethod(m.methods[i])) match.fail("methods[" + i.toString() + "]", "must be an upper-case method name like GET, got '" + m.methods[i] + "'");
  }
  m.headers = readHeaderMatches(match, "headers", problems);
  // Matching on the route is what one would reach for, but Sluice picks the route after the
  // request-header filters ran (a filter may still change it), so no filter can know it then.
  const routeFields = ["route", "routeName"];
  for (let i = 0; i < routeFields.length; i++) {
    if (!match.has(routeFields[i])) continue;
    match.value(routeFields[i]);
    match.fail(routeFields[i], "sluice.route_name is not known during request headers (Sluice picks the route after the request-header filters); match on path, prefix, methods or headers, or give the route its own retryPolicy");
  }
  match.rejectUnknownFields();
  return m;
}

/**
 * Reads a policy and returns its JSON as the host reads it: only the fields given, which Sluice
 * lays over the route's own retryPolicy (or its defaults when the route has none). Cross-field
 * checks apply when both fields are in this policy; otherwise the other one is the route's.
 */
function readPolicy(p: ConfigReader): ArrayBuffer {
  const fields = new Array<string>();

  const numRetries = p.integer("numRetries", -1, 0, MAX_RETRIES);
  if (p.has("numRetries") && numRetries >= 0) fields.push('"numRetries":' + numRetries.toString());

  const retryOn = p.stringArray("retryOn");
  for (let i = 0; i < retryOn.length; i++) {
    const on = retryOn[i];
    const at = "retryOn[" + i.toString() + "]";
    if (!RETRY_ON.includes(on)) p.fail(at, "unknown retry condition '" + on + "' (known: " + RETRY_ON.join(", ") + ")");
    else if (retryOn.indexOf(on) < i) p.fail(at, "'" + on + "' is listed twice");
  }
  if (p.has("retryOn")) {
    if (numRetries > 0 && retryOn.length == 0) p.fail("retryOn", "must name at least one condition when numRetries is above 0");
    const quoted = new Array<string>();
    for (let i = 0; i < retryOn.length; i++) quoted.push(quoteJson(retryOn[i]));
    fields.push('"retryOn":[' + quoted.join(",") + "]");
  }

  const codes = new Array<i32>();
  const list: JsonArray | null = p.array("retriableStatusCodes");
  if (list !== null) {
    for (let i = 0; i < list.length; i++) {
      const n = list.at(i).asNumber();
      if (!list.at(i).isNumber || Math.floor(n) != n || n < 100 || n > 599) {
        p.fail("retriableStatusCodes[" + i.toString() + "]", "must be an HTTP status code from 100 to 599, got " + list.at(i).toJson());
      } else {
        codes.push(<i32>n);
      }
    }
    fields.push('"retriableStatusCodes":[' + codes.join(",") + "]");
  }
  const byCode = retryOn.includes("retriable-status-codes");
  if (byCode && list !== null && list.length == 0) p.fail("retriableStatusCodes", "must list at least one status code when retryOn includes 'retriable-status-codes'");
  if (p.has("retryOn") && !byCode && list !== null && list.length > 0) p.fail("retriableStatusCodes", "has no effect unless retryOn includes 'retriable-status-codes'");

  const durations = ["perTryTimeoutMs", "baseIntervalMs", "maxIntervalMs"];
  const values = new Array<i64>(3);
  for (let i = 0; i < durations.length; i++) {
    values[i] = p.integer(durations[i], -1, 0, MAX_MS);
    if (p.has(durations[i]) && values[i] >= 0) fields.push('"' + durations[i] + '":' + values[i].toString());
  }
  if (values[1] >= 0 && values[2] >= 0 && values[2] < values[1]) {
    p.fail("maxIntervalMs", "must be at least baseIntervalMs (" + values[1].toString() + "), got " + values[2].toString());
  }
  p.rejectUnknownFields();
  return String.UTF8.encode("{" + fields.join(",") + "}");
}

/** The configuration, or null after logging every problem (each naming its field). */
export function readConfig(configuration: string): RetryConfig | null {
  const top = ConfigReader.parse(configuration);
  const problems = new Array<string>();
  const config = new RetryConfig();
  const rules: JsonArray | null = top.array("rules");
  let catchAll = -1;
  const names = new Array<string>();
  if (rules !== null) {
    for (let i = 0; i < rules.length; i++) {
      const at = "rules[" + i.toString() + "]";
      const object = rules.at(i).asObject();
      if (object === null) {
        problems.push("field '" + at + "': expected an object with match and policy, got " + rules.at(i).typeName);
        continue;
      }
      const rule = new ConfigReader(object, at);
      const name = rule.string("name", i.toString());
      if (rule.has("name")) {
        if (!isRuleName(name)) rule.fail("name", "must be 1 to 64 letters, digits, '-', '_' or '.' (it labels the metric), got '" + name + "'");
        else if (name == "default") rule.fail("name", "'default' labels the defaultPolicy's metric; pick another name");
      }
      if (names.includes(name)) rule.fail("name", "'" + name + "' names two rules");
      names.push(name);
      const match = readMatch(rule, problems);
      if (!rule.has("policy")) rule.fail("policy", "is required");
      const policy = readPolicy(rule.object("policy"));
      rule.rejectUnknownFields();
      if (catchAll >= 0) rule.fail("match", "can never match: rules[" + catchAll.toString() + "] before it matches every request");
      if (!rule.ok) {
        problems.push(rule.error!);
        continue;
      }
      if (match.matchesEverything && catchAll < 0) catchAll = i;
      if (match.path.length > 0 || match.prefix.length > 0) config.needsPath = true;
      config.rules.push(new Rule(match, new Policy(policy, name)));
    }
  }
  const d = top.object("defaultPolicy");
  if (top.has("defaultPolicy")) {
    const policy = readPolicy(d);
    if (catchAll >= 0) top.fail("defaultPolicy", "is never used: rules[" + catchAll.toString() + "] matches every request");
    config.defaultPolicy = new Policy(policy, "default");
  }
  top.rejectUnknownFields();
  if (top.ok && problems.length == 0 && config.rules.length == 0 && config.defaultPolicy === null) {
    top.fail("rules", "give at least one rule or a defaultPolicy: as configured the filter would set no retry policy");
  }
  if (!top.ok) problems.unshift(top.error!);
  if (problems.length > 0) {
    log.error("retry: invalid configuration: " + problems.join("; "));
    return null;
  }
  return config;
}
