// The authz configuration, read and checked once in onConfigure into a typed, immutable Policy:
// deny rules, allow rules, the default action, dry-run and path strictness. Every error names its
// field (`field 'rules[1].from.principals[0]': ...`); config.schema.json says the same in JSON Schema.

import { ConfigReader, JsonArray, hasLineBreakOrNul, isHeaderName } from "../../../sdk/assembly";
import { Pattern, PatternKind } from "./match";

/** `when` entry: the header's first value must match one of the patterns. */
export class HeaderCondition {
  constructor(readonly header: string, readonly values: Pattern[]) {}
}

export class Rule {
  name: string = "";
  deny: bool = false;
  /** Whether the rule has a `from`: only then is the peer identity read, and "" never matches. */
  hasFrom: bool = false;
  principals: Pattern[] | null = null;
  namespaces: Pattern[] | null = null;
  paths: Pattern[] | null = null;
  methods: string[] | null = null;
  when: HeaderCondition[] = [];
}

export class Policy {
  denyRules: Rule[] = [];
  allowRules: Rule[] = [];
  /** defaultAction ALLOW: requests no rule speaks for pass. */
  defaultAllow: bool = false;
  dryRun: bool = false;
  strictPaths: bool = true;
}

export class PolicyResult {
  constructor(readonly policy: Policy | null, readonly error: string | null) {}
}

const NAME_LIMIT = 128;

/** Letters, digits, '.', '_' and '-', starting with a letter or digit (as names in sluice.yaml). */
function isRuleName(name: string): bool {
  if (name.length == 0 || name.length > NAME_LIMIT) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const alnum = (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a);
    if (!alnum && (i == 0 || (c != 0x2e && c != 0x5f && c != 0x2d))) return false;
  }
  return true;
}

/** Upper-case letters, digits, '-' and '_': HTTP methods are case-sensitive, and "get" never matches GET. */
function isMethod(method: string): bool {
  if (method.length == 0) return false;
  for (let i = 0; i < method.length; i++) {
    const c = method.charCodeAt(i);
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f)) return false;
  }
  return true;
}



const PRINCIPALS = 0;
const NAMESPACES = 1;
const PATHS = 2;
const VALUES = 3;

/** Checks one pattern of a kind of list; returns the problem or null. */
function patternProblem(list: i32, pattern: Pattern): string | null {
  const source = pattern.source;
  if (list == PRINCIPALS) {
    if (pattern.kind == PatternKind.Any || pattern.kind == PatternKind.Suffix || source.startsWith("spiffe://")) return null;
    return "must be a SPIFFE ID like 'spiffe://cluster.local/ns/shop/sa/web' (Istio's 'cluster.local/ns/...' form needs the 'spiffe://' prefix here), got '" + source + "'";
  }
  if (list == NAMESPACES) {
    return source.includes("/") ? "must be a namespace name, without '/', got '" + source + "'" : null;
  }
  if (list == PATHS) {
    if (pattern.kind == PatternKind.Any || pattern.kind == PatternKind.Suffix || source.startsWith("/")) return null;
    return "must start with '/' (or be '*' or '*suffix'), got '" + source + "'";
  }
  return hasLineBreakOrNul(source) ? "must not contain CR, LF or NUL" : null;
}

/**
 * A list of patterns: null when the field is absent (it then matches anything); an error when it
 * is present but empty, since an empty list that matched nothing would quietly disable its rule.
 */
function patternList(reader: ConfigReader, field: string, list: i32): Pattern[] | null {
  const value = reader.value(field);
  if (value === null) return null;
  const sources = reader.stringArray(field);
  const array = value.asArray();
  if (array !== null && array.length == 0) reader.fail(field, "must not be empty (leave it out to match any value)");
  const patterns = new Array<Pattern>();
  for (let i = 0; i < sources.length; i++) {
    const item = field + "[" + i.toString() + "]";
    const pattern = Pattern.parse(sources[i]);
    if (pattern === null) {
      reader.fail(item, "'*' may only be the first or the last character, or the whole value, got '" + sources[i] + "'");
      continue;
    }
    if (sources[i].length == 0) {
      reader.fail(item, "must not be empty");
      continue;
    }
    const problem = patternProblem(list, pattern);
    if (problem !== null) {
      reader.fail(item, problem);
      continue;
    }
    patterns.push(pattern);
  }
  return patterns;
}

/** Collects the readers of one configuration: nested array items get readers of their own. */
class Readers {
  readonly all: ConfigReader[] = [];

  add(reader: ConfigReader): ConfigReader {
    this.all.push(reader);
    return reader;
  }

  /** The object at `array[index]` as a reader for `path`, or null (with an error) when it is not an object. */
  item(parent: ConfigReader, field: string, array: JsonArray, index: i32): ConfigReader | null {
    const path = field + "[" + index.toString() + "]";
    const object = array.at(index).asObject();
    if (object === null) {
      parent.fail(path, "expected an object, got " + array.at(index).typeName);
      return null;
    }
    return this.add(new ConfigReader(object, parent.path.length > 0 ? parent.path + "." + path : path));
  }

  error(): string | null {
    const messages = new Array<string>();
    for (let i = 0; i < this.all.length; i++) {
      const error = this.all[i].error;
      if (error !== null) messages.push(error);
    }
    return messages.length > 0 ? messages.join("; ") : null;
  }
}

function readRule(readers: Readers, reader: ConfigReader, index: i32): Rule {
  const rule = new Rule();
  rule.name = reader.string("name", "rule-" + index.toString());
  if (!isRuleName(rule.name)) reader.fail("name", "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, got '" + rule.name + "'");

  const action = reader.string("action", "ALLOW");
  if (action == "DENY") rule.deny = true;
  else if (action != "ALLOW") reader.fail("action", "must be ALLOW or DENY, got '" + action + "'");

  if (reader.has("from")) {
    const from = reader.object("from");
    rule.hasFrom = true;
    rule.principals = patternList(from, "principals", PRINCIPALS);
    rule.namespaces = patternList(from, "namespaces", NAMESPACES);
    from.rejectUnknownFields();
    if (from.json !== null && !from.has("principals") && !from.has("namespaces")) {
      reader.fail("from", "must have principals or namespaces (leave 'from' out to match any peer, with or without an identity)");
    }
  } else {
    reader.value("from");
  }

  if (reader.has("to")) {
    const to = reader.object("to");
    rule.paths = patternList(to, "paths", PATHS);
    if (to.has("methods")) {
      const value = to.value("methods")!;
      const methods = to.stringArray("methods");
      const array = value.asArray();
      if (array !== null && array.length == 0) to.fail("methods", "must not be empty (leave it out to match any method)");
      for (let i = 0; i < methods.length; i++) {
        if (!isMethod(methods[i])) to.fail("methods[" + i.toString() + "]", "must be an upper-case HTTP method like 'GET', got '" + methods[i] + "'");
      }
      rule.methods = methods;
    } else {
      to.value("methods");
    }
    to.rejectUnknownFields();
    if (to.json !== null && !to.has("paths") && !to.has("methods")) {
      reader.fail("to", "must have paths or methods (leave 'to' out to match any request)");
    }
  } else {
    reader.value("to");
  }

  const when = reader.array("when");
  if (when !== null) {
    if (when.length == 0) reader.fail("when", "must not be empty (leave it out for no header conditions)");
    for (let i = 0; i < when.length; i++) {
      const item = readers.item(reader, "when", when, i);
      if (item === null) continue;
      const header = item.requireString("header");
      if (item.has("header") && !isHeaderName(header)) item.fail("header", "must be a lower-case header name like 'x-user' (or a pseudo-header like ':authority'), got '" + header + "'");
      const values = patternList(item, "values", VALUES);
      if (values === null) item.fail("values", "is required (use [\"*\"] to require only that the header is present)");
      item.rejectUnknownFields();
      rule.when.push(new HeaderCondition(header, values !== null ? values : []));
    }
  }
  reader.rejectUnknownFields();
  return rule;
}

/** Reads a configuration; `policy` is null and `error` names every problem when it is invalid. */
export function readPolicy(configuration: string): PolicyResult {
  const readers = new Readers();
  const top = readers.add(ConfigReader.parse(configuration));
  const policy = new Policy();

  const defaultAction = top.string("defaultAction", "DENY");
  if (defaultAction == "ALLOW") policy.defaultAllow = true;
  else if (defaultAction != "DENY") top.fail("defaultAction", "must be ALLOW or DENY, got '" + defaultAction + "'");
  policy.dryRun = top.bool("dryRun", false);
  policy.strictPaths = top.bool("strictPaths", true);

  const names = new Array<string>();
  const rules = top.array("rules");
  if (rules !== null) {
    for (let i = 0; i < rules.length; i++) {
      const reader = readers.item(top, "rules", rules, i);
      if (reader === null) continue;
      const rule = readRule(readers, reader, i);
      if (names.includes(rule.name)) reader.fail("name", "'" + rule.name + "' is already the name of another rule; names must be unique");
      names.push(rule.name);
      if (rule.deny) policy.denyRules.push(rule);
      else policy.allowRules.push(rule);
    }
  }
  top.rejectUnknownFields();

  const error = readers.error();
  return error !== null ? new PolicyResult(null, error) : new PolicyResult(policy, null);
}
