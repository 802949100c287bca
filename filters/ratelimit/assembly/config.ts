// The ratelimit configuration, read and checked once in onConfigure: rules (which requests, keyed
// by what, which bucket), the default bucket, and whether responses carry x-ratelimit-* headers.
// Every error names its field; config.schema.json says the same in JSON Schema.

import { ConfigReader, JsonArray, isHeaderName } from "../../../sdk/assembly";
import { BucketSpec, Draw } from "./bucket";

export enum KeyKind {
  /** One bucket for every request the rule applies to. */
  None,
  Header,
  PeerIdentity,
  Path,
}

export class Rule {
  name: string = "";
  keyKind: KeyKind = KeyKind.None;
  header: string = "";
  /** `match.prefix`; "" matches every path. */
  prefix: string = "";
  /** keyMissing "shared": requests without the key share one bucket instead of skipping the rule. */
  sharedWhenMissing: bool = false;
  bucket: BucketSpec = new BucketSpec(1, 1, 1, 1, "");
  /** This request's draw from the rule's bucket (scratch: a VM runs one callback at a time). */
  readonly draw: Draw = new Draw();
}

export class Limits {
  rules: Rule[] = [];
  defaultRule: Rule | null = null;
  rateLimitHeaders: bool = true;
  /** Whether a rule needs `:path` (a prefix or a path key): read once per request then. */
  readsPath: bool = false;
}

export class LimitsResult {
  constructor(readonly limits: Limits | null, readonly error: string | null) {}
}

const MAX_TOKENS: i64 = 1_000_000_000;
const MAX_INTERVAL_MS: i64 = 86_400_000;
const MAX_KEYS: i64 = 1_000_000;
const DEFAULT_MAX_KEYS: i64 = 10_000;
const DEFAULT_RULE_NAME = "default";

function isRuleName(name: string): bool {
  if (name.length == 0 || name.length > 128) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const alnum = (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a);
    if (!alnum && (i == 0 || (c != 0x2e && c != 0x5f && c != 0x2d))) return false;
  }
  return true;
}


/** maxTokens, tokensPerFill, fillIntervalMs of a rule or of the default bucket. */
function readBucket(reader: ConfigReader, maxKeys: u32, keyPrefix: string): BucketSpec {
  if (!reader.has("maxTokens")) reader.fail("maxTokens", "is required (the bucket's size: requests allowed in a burst)");
  if (!reader.has("fillIntervalMs")) reader.fail("fillIntervalMs", "is required (how often tokensPerFill tokens are added)");
  const maxTokens = reader.integer("maxTokens", 1, 1, MAX_TOKENS);
  const tokensPerFill = reader.integer("tokensPerFill", 1, 1, MAX_TOKENS);
  const fillIntervalMs = reader.integer("fillIntervalMs", 1000, 1, MAX_INTERVAL_MS);
  return new BucketSpec(<u32>maxTokens, <u32>tokensPerFill, <u64>fillIntervalMs, maxKeys, keyPrefix);
}

function readRule(reader: ConfigReader, index: i32, pluginName: string, limits: Limits): Rule {
  const rule = new Rule();
  rule.name = reader.string("name", "rule-" + index.toString());
  if (!isRuleName(rule.name)) reader.fail("name", "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, got '" + rule.name + "'");
  else if (rule.name == DEFAULT_RULE_NAME) reader.fail("name", "'default' is the name of defaultBucket's bucket; choose another");

  if (reader.has("key")) {
    const key = reader.object("key");
    let kinds = 0;
    if (key.has("header")) {
      kinds++;
      rule.keyKind = KeyKind.Header;
      rule.header = key.string("header", "");
      if (!isHeaderName(rule.header)) key.fail("header", "must be a lower-case header name like 'x-user', got '" + rule.header + "'");
    } else {
      key.value("header");
    }
    if (key.has("peerIdentity")) {
      kinds++;
      rule.keyKind = KeyKind.PeerIdentity;
      if (!key.bool("peerIdentity", true)) key.fail("peerIdentity", "must be true (leave 'key' out for one bucket for every request)");
    } else {
      key.value("peerIdentity");
    }
    if (key.has("path")) {
      kinds++;
      rule.keyKind = KeyKind.Path;
      limits.readsPath = true;
      if (!key.bool("path", true)) key.fail("path", "must be true (leave 'key' out for one bucket for every request)");
    } else {
      key.value("path");
    }
    key.rejectUnknownFields();
    if (key.json !== null && kinds != 1) reader.fail("key", "must have exactly one of header, peerIdentity, path");
  } else {
    reader.value("key");
  }

  if (reader.has("match")) {
    const match = reader.object("match");
    rule.prefix = match.requireString("prefix");
    if (match.has("prefix") && !rule.prefix.startsWith("/")) match.fail("prefix", "must start with '/', got '" + rule.prefix + "'");
    match.rejectUnknownFields();
    limits.readsPath = true;
  } else {
    reader.value("match");
  }

  const keyed = rule.keyKind != KeyKind.None;
  const keyMissing = reader.string("keyMissing", "skip");
  if (keyMissing == "shared") rule.sharedWhenMissing = true;
  else if (keyMissing != "skip") reader.fail("keyMissing", "must be skip or shared, got '" + keyMissing + "'");
  if (reader.has("keyMissing") && !keyed) reader.fail("keyMissing", "applies only to a rule with a key");

  let maxKeys: i64 = 1;
  if (reader.has("maxKeys")) {
    maxKeys = reader.integer("maxKeys", DEFAULT_MAX_KEYS, 1, MAX_KEYS);
    if (!keyed) reader.fail("maxKeys", "applies only to a rule with a key (a rule without one has a single bucket)");
  } else {
    reader.value("maxKeys");
    if (keyed) maxKeys = DEFAULT_MAX_KEYS;
  }

  rule.bucket = readBucket(reader, <u32>maxKeys, "ratelimit:" + pluginName + ":" + rule.name + ":");
  reader.rejectUnknownFields();
  return rule;
}

/** Reads a configuration; `limits` is null and `error` names every problem when it is invalid. */
export function readLimits(configuration: string, pluginName: string): LimitsResult {
  const readers = new Array<ConfigReader>();
  const top = ConfigReader.parse(configuration);
  readers.push(top);
  const limits = new Limits();
  limits.rateLimitHeaders = top.bool("rateLimitHeaders", true);

  const names = new Array<string>();
  const rules: JsonArray | null = top.array("rules");
  if (rules !== null) {
    for (let i = 0; i < rules.length; i++) {
      const path = "rules[" + i.toString() + "]";
      const object = rules.at(i).asObject();
      if (object === null) {
        top.fail(path, "expected an object, got " + rules.at(i).typeName);
        continue;
      }
      const reader = new ConfigReader(object, path);
      readers.push(reader);
      const rule = readRule(reader, i, pluginName, limits);
      if (names.includes(rule.name)) reader.fail("name", "'" + rule.name + "' is already the name of another rule; names must be unique");
      names.push(rule.name);
      limits.rules.push(rule);
    }
  }

  if (top.has("defaultBucket")) {
    const reader = top.object("defaultBucket");
    if (reader.json !== null) {
      const rule = new Rule();
      rule.name = DEFAULT_RULE_NAME;
      rule.bucket = readBucket(reader, 1, "ratelimit:" + pluginName + ":" + DEFAULT_RULE_NAME + ":");
      reader.rejectUnknownFields();
      limits.defaultRule = rule;
    }
  } else {
    top.value("defaultBucket");
  }
  top.rejectUnknownFields();

  const messages = new Array<string>();
  for (let i = 0; i < readers.length; i++) {
    const error = readers[i].error;
    if (error !== null) messages.push(error);
  }
  return messages.length > 0 ? new LimitsResult(null, messages.join("; ")) : new LimitsResult(limits, null);
}
