// Request header conditions as filter configurations write them ({ name, exact | prefix | suffix |
// contains | present, invert }): read from a ConfigReader with errors that name the field, and
// tested against a request's headers. Also the checks for header names and values in configs.

import { ConfigReader } from "./config";
import { HeaderMap } from "./header-map";
import { JsonArray } from "./json-value";

const PRESENT: i32 = 0;
const EXACT: i32 = 1;
const PREFIX: i32 = 2;
const SUFFIX: i32 = 3;
const CONTAINS: i32 = 4;

/** One header condition; a request matches when `matches(its first value)` is true. */
export class HeaderMatch {
  constructor(
    readonly name: string,
    readonly kind: i32,
    /** The string compared (unused for presence). */
    readonly value: string,
    /** For a presence test: true = the header must be there, false = it must not. */
    readonly present: bool,
    readonly invert: bool,
  ) {}

  matches(actual: string | null): bool {
    let hit: bool;
    if (this.kind == PRESENT) hit = (actual !== null) == this.present;
    else if (actual === null) hit = false;
    else if (this.kind == EXACT) hit = actual == this.value;
    else if (this.kind == PREFIX) hit = actual.startsWith(this.value);
    else if (this.kind == SUFFIX) hit = actual.endsWith(this.value);
    else hit = actual.includes(this.value);
    return hit != this.invert;
  }
}

/** True when every condition holds for the request headers (one host call per condition). */
export function allHeadersMatch(conditions: HeaderMatch[], headers: HeaderMap): bool {
  for (let i = 0; i < conditions.length; i++) {
    const c = unchecked(conditions[i]);
    if (!c.matches(headers.get(c.name))) return false;
  }
  return true;
}

/**
 * A header name as filters write them in configurations: a lower-case HTTP token (RFC 9110), or a
 * pseudo-header such as `:authority`. (The host refuses anything else with BAD_ARGUMENT.)
 */
export function isHeaderName(name: string): bool {
  const start = name.startsWith(":") ? 1 : 0;
  if (name.length <= start) return false;
  for (let i = start; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || (c < 0x80 && "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)));
    if (!ok) return false;
  }
  return true;
}

/** True when a header value could not be sent: it holds CR, LF or NUL. */
export function hasLineBreakOrNul(value: string): bool {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c == 0x0d || c == 0x0a || c == 0) return true;
  }
  return false;
}

/**
 * Reads `field` of `reader` as a list of header conditions. Problems with the items are added to
 * `problems` (the reader records those with the list itself).
 */
export function readHeaderMatches(reader: ConfigReader, field: string, problems: string[]): HeaderMatch[] {
  const out = new Array<HeaderMatch>();
  const list: JsonArray | null = reader.array(field);
  if (list === null) return out;
  const base = (reader.path.length > 0 ? reader.path + "." : "") + field;
  for (let i = 0; i < list.length; i++) {
    const at = base + "[" + i.toString() + "]";
    const object = list.at(i).asObject();
    if (object === null) {
      problems.push("field '" + at + "': expected an object like { \"name\": \"x-canary\", \"exact\": \"1\" }, got " + list.at(i).typeName);
      continue;
    }
    const item = new ConfigReader(object, at);
    const match = readHeaderMatch(item);
    item.rejectUnknownFields();
    if (!item.ok) problems.push(item.error!);
    else out.push(match);
  }
  return out;
}

function readHeaderMatch(item: ConfigReader): HeaderMatch {
  const name = item.requireString("name");
  if (item.ok && !isHeaderName(name)) item.fail("name", "must be a lower-case header name like 'x-canary' (or a pseudo-header like ':authority'), got '" + name + "'");
  const operators = ["exact", "prefix", "suffix", "contains", "present"];
  let given = 0;
  for (let k = 0; k < operators.length; k++) if (item.has(operators[k])) given++;
  if (given > 1) item.fail("name", "header '" + name + "' gives more than one of exact, prefix, suffix, contains, present; give one");
  const invert = item.bool("invert", false);
  let kind = PRESENT;
  let value = "";
  let present = item.bool("present", true);
  const texts = ["exact", "prefix", "suffix", "contains"];
  const kinds = [EXACT, PREFIX, SUFFIX, CONTAINS];
  for (let k = 0; k < texts.length; k++) {
    if (!item.has(texts[k])) continue;
    kind = kinds[k];
    value = item.string(texts[k], "");
    if (hasLineBreakOrNul(value)) item.fail(texts[k], "must not contain CR, LF or NUL");
    if (kind != EXACT && value.length == 0) item.fail(texts[k], "must not be empty (an empty " + texts[k] + " matches any value: use present)");
  }
  // Mark the operators read even when another one was taken, so none is reported as unknown.
  for (let k = 0; k < texts.length; k++) item.value(texts[k]);
  return new HeaderMatch(name, kind, value, present, invert);
}
