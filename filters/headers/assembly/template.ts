// Header value templates: `text %VARIABLE% text`, Envoy's command syntax, parsed once in
// onConfigure into segments. A template with no variable — or only variables fixed for the VM's
// life (%HOSTNAME%, node and plugin properties) — is folded into one constant string.

import { getProperty, getPropertyI64, getPropertyString, HeaderMap, hasLineBreakOrNul, isHeaderName } from "../../../sdk/assembly";

export { hasLineBreakOrNul, isHeaderName };

// Variable kinds.
export const V_LITERAL: i32 = 0;
const V_STRING_PROPERTY: i32 = 1; // a string property as is (addresses, protocol, cluster, ...)
const V_WITHOUT_PORT: i32 = 2; // an `ip:port` property without `:port`
const V_INT_PROPERTY: i32 = 3; // an 8-byte integer property, in decimal
const V_BOOL_PROPERTY: i32 = 4; // a 1-byte boolean property: true / false
const V_TIME_PROPERTY: i32 = 5; // an int64 nanoseconds timestamp, as ISO 8601 UTC with milliseconds
const V_REQUEST_HEADER: i32 = 6;
const V_RESPONSE_HEADER: i32 = 7;

/** Which message a template is evaluated for: what it may read depends on it. */
export const PHASE_REQUEST: i32 = 0;
export const PHASE_RESPONSE: i32 = 1;

export class Segment {
  constructor(
    readonly kind: i32,
    /** V_LITERAL: the text; header kinds: the header name. */
    readonly text: string,
    /** Property kinds: the path. */
    readonly path: string[],
    /** Whether the value can hold CR, LF or NUL and must be checked (header values, free-form properties). */
    readonly untrusted: bool,
  ) {}
}

export class Template {
  /** The value, when it does not depend on the request. */
  constant: string | null = null;
  segments: Segment[] = [];
  /** Some segment's value must be checked for CR, LF and NUL. */
  untrusted: bool = false;
}

export class TemplateResult {
  constructor(
    readonly template: Template | null,
    readonly error: string | null,
  ) {}
}

/** The variables, for error messages. */
const KNOWN =
  "%DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_ADDRESS%, %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%, " +
  "%PROTOCOL%, %REQ(name)%, %RESP(name)%, %UPSTREAM_CLUSTER%, %UPSTREAM_HOST%, %RESPONSE_CODE%, %START_TIME%, %HOSTNAME%, %PROPERTY(path.with.dots)%, and %% for a literal %";

/** Parses a template; errors say where (`at 5: ...`). */
export function parseTemplate(text: string, phase: i32): TemplateResult {
  const template = new Template();
  let literal = "";
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c != 0x25 /* % */) {
      const next = text.indexOf("%", i);
      const end = next < 0 ? n : next;
      literal += text.substring(i, end);
      i = end;
      continue;
    }
    if (i + 1 < n && text.charCodeAt(i + 1) == 0x25) {
      literal += "%";
      i += 2;
      continue;
    }
    // %NAME% or %NAME(arg)%
    const start = i;
    i++;
    let nameEnd = i;
    while (nameEnd < n && isCommandChar(text.charCodeAt(nameEnd))) nameEnd++;
    const name = text.substring(i, nameEnd);
    let arg: string | null = null;
    i = nameEnd;
    if (i < n && text.charCodeAt(i) == 0x28 /* ( */) {
      const close = text.indexOf(")", i);
      if (close < 0) return fail(start, "'(' without ')' in %" + name + "(...)%");
      arg = text.substring(i + 1, close);
      i = close + 1;
    }
    if (i >= n || text.charCodeAt(i) != 0x25) {
      if (name.length == 0) return fail(start, "a lone '%': write %% for a literal percent sign");
      if (i < n && text.charCodeAt(i) == 0x3a /* : */) return fail(i, "length limits (%" + name + "(...):N%) are not supported");
      return fail(start, "'%" + text.substring(start + 1, i) + "' is not closed by '%' (write %% for a literal percent sign)");
    }
    i++;
    const segment = variable(name, arg, phase);
    if (segment.error !== null) return fail(start, segment.error!);
    const s = segment.segment!;
    if (s.kind == V_LITERAL) {
      literal += s.text;
      continue;
    }
    if (literal.length > 0) template.segments.push(new Segment(V_LITERAL, literal, [], false));
    literal = "";
    template.segments.push(s);
    if (s.untrusted) template.untrusted = true;
  }
  if (template.segments.length == 0) {
    template.constant = literal;
  } else if (literal.length > 0) {
    template.segments.push(new Segment(V_LITERAL, literal, [], false));
  }
  return new TemplateResult(template, null);
}

function fail(at: i32, message: string): TemplateResult {
  return new TemplateResult(null, "at " + at.toString() + ": " + message);
}

class VariableResult {
  constructor(
    readonly segment: Segment | null,
    readonly error: string | null,
  ) {}
}

function variable(name: string, arg: string | null, phase: i32): VariableResult {
  const takesArg = name == "REQ" || name == "RESP" || name == "PROPERTY";
  if (takesArg && arg === null) return new VariableResult(null, "%" + name + "(...)% needs an argument, e.g. " + (name == "PROPERTY" ? "%PROPERTY(request.host)%" : "%" + name + "(x-user)%"));
  if (!takesArg && arg !== null) {
    if (isKnownPlain(name)) return new VariableResult(null, "%" + name + "% takes no argument" + (name == "START_TIME" ? " (only the default format, ISO 8601 UTC with milliseconds, is supported)" : ""));
    return unknown(name + "(" + arg! + ")");
  }
  const responseOnly = name == "RESP" || name == "UPSTREAM_CLUSTER" || name == "UPSTREAM_HOST" || name == "RESPONSE_CODE";
  if (responseOnly && phase == PHASE_REQUEST) {
    return new VariableResult(null, "%" + name + (arg !== null ? "(" + arg! + ")" : "") + "% is only known on the response; use it under 'response'");
  }
  if (name == "DOWNSTREAM_REMOTE_ADDRESS") return property(V_STRING_PROPERTY, "source.address", false);
  if (name == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT") return property(V_WITHOUT_PORT, "source.address", false);
  if (name == "DOWNSTREAM_LOCAL_ADDRESS") return property(V_STRING_PROPERTY, "destination.address", false);
  if (name == "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT") return property(V_WITHOUT_PORT, "destination.address", false);
  if (name == "PROTOCOL") return property(V_STRING_PROPERTY, "request.protocol", false);
  if (name == "UPSTREAM_CLUSTER") return property(V_STRING_PROPERTY, "xds.cluster_name", false);
  if (name == "UPSTREAM_HOST") return property(V_STRING_PROPERTY, "upstream.address", false);
  if (name == "RESPONSE_CODE") return property(V_INT_PROPERTY, "response.code", false);
  if (name == "START_TIME") return property(V_TIME_PROPERTY, "request.time", false);
  if (name == "HOSTNAME") return fixed("node.id");
  if (name == "REQ" || name == "RESP") {
    const header = arg!.toLowerCase();
    if (!isHeaderName(header)) return new VariableResult(null, "%" + name + "(" + arg! + ")%: '" + arg! + "' is not a header name");
    return new VariableResult(new Segment(name == "REQ" ? V_REQUEST_HEADER : V_RESPONSE_HEADER, header, [], true), null);
  }
  if (name == "PROPERTY") return propertyVariable(arg!, phase);
  return unknown(name);
}

function unknown(text: string): VariableResult {
  return new VariableResult(null, "unknown variable %" + text + "% (known: " + KNOWN + ")");
}

function isKnownPlain(name: string): bool {
  return (
    name == "DOWNSTREAM_REMOTE_ADDRESS" || name == "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" || name == "DOWNSTREAM_LOCAL_ADDRESS" ||
    name == "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" || name == "PROTOCOL" || name == "UPSTREAM_CLUSTER" || name == "UPSTREAM_HOST" ||
    name == "RESPONSE_CODE" || name == "START_TIME" || name == "HOSTNAME"
  );
}

function property(kind: i32, dotted: string, untrusted: bool): VariableResult {
  return new VariableResult(new Segment(kind, "", dotted.split("."), untrusted), null);
}

/** A property fixed for the VM's life, read now and kept as text. */
function fixed(dotted: string): VariableResult {
  const value = getPropertyString(dotted.split("."));
  if (value !== null && hasLineBreakOrNul(value)) return new VariableResult(null, "the value of '" + dotted + "' contains CR, LF or NUL");
  return new VariableResult(new Segment(V_LITERAL, value !== null ? value : "", [], false), null);
}

/** Types of the properties docs/properties.md lists that are not plain strings. */
function propertyVariable(dotted: string, phase: i32): VariableResult {
  if (dotted.length == 0 || dotted.startsWith(".") || dotted.endsWith(".") || dotted.includes("..")) {
    return new VariableResult(null, "%PROPERTY(" + dotted + ")%: not a property path like 'request.host'");
  }
  // Header names and metadata keys may hold dots: everything after the prefix is one segment.
  let path: string[];
  if (dotted.startsWith("request.headers.") || dotted.startsWith("response.headers.") || dotted.startsWith("node.metadata.")) {
    const second = dotted.indexOf(".", dotted.indexOf(".") + 1);
    path = dotted.substring(0, second).split(".");
    path.push(dotted.substring(second + 1));
  } else {
    path = dotted.split(".");
  }
  if (dotted == "request.headers" || dotted == "response.headers" || dotted == "response.trailers") {
    return new VariableResult(null, "%PROPERTY(" + dotted + ")% is a whole header map; name one header: %REQ(name)% or %RESP(name)%");
  }
  if (path[0] == "response" && phase == PHASE_REQUEST) {
    return new VariableResult(null, "%PROPERTY(" + dotted + ")% is only known on the response; use it under 'response'");
  }
  if (path[0] == "node" || path[0] == "plugin_name" || path[0] == "plugin_root_id" || path[0] == "plugin_vm_id") return fixed(dotted);
  if (
    dotted == "request.size" || dotted == "request.total_size" || dotted == "request.duration" || dotted == "response.code" ||
    dotted == "response.grpc_status" || dotted == "response.size" || dotted == "response.total_size" || dotted == "response.flags" ||
    dotted == "source.port" || dotted == "destination.port" || dotted == "upstream.port" || dotted == "connection.id"
  ) {
    return new VariableResult(new Segment(V_INT_PROPERTY, "", path, false), null);
  }
  if (dotted == "connection.mtls") return new VariableResult(new Segment(V_BOOL_PROPERTY, "", path, false), null);
  if (dotted == "request.time") return new VariableResult(new Segment(V_TIME_PROPERTY, "", path, false), null);
  // Anything else is text: the listed string properties, and values other filters set.
  return new VariableResult(new Segment(V_STRING_PROPERTY, "", path, true), null);
}

/** The template's value for the current stream; "" when every part is missing. */
export function evaluate(template: Template, request: HeaderMap, response: HeaderMap): string {
  const constant = template.constant;
  if (constant !== null) return constant;
  const segments = template.segments;
  if (segments.length == 1) return valueOf(unchecked(segments[0]), request, response);
  let out = "";
  for (let i = 0; i < segments.length; i++) out += valueOf(unchecked(segments[i]), request, response);
  return out;
}

function valueOf(s: Segment, request: HeaderMap, response: HeaderMap): string {
  switch (s.kind) {
    case V_LITERAL:
      return s.text;
    case V_REQUEST_HEADER:
      return orEmpty(request.get(s.text));
    case V_RESPONSE_HEADER:
      return orEmpty(response.get(s.text));
    case V_STRING_PROPERTY:
      return orEmpty(getPropertyString(s.path));
    case V_WITHOUT_PORT: {
      const address = getPropertyString(s.path);
      if (address === null) return "";
      const colon = address.lastIndexOf(":");
      return colon < 0 ? address : address.substring(0, colon);
    }
    case V_INT_PROPERTY: {
      // Absent integers read as "" (not 0), like the strings.
      const missing = i64.MIN_VALUE;
      const n = getPropertyI64(s.path, missing);
      return n == missing ? "" : n.toString();
    }
    case V_BOOL_PROPERTY: {
      const bytes = getProperty(s.path);
      if (bytes === null || bytes.byteLength == 0) return "";
      return load<u8>(changetype<usize>(bytes)) != 0 ? "true" : "false";
    }
    case V_TIME_PROPERTY: {
      const missing = i64.MIN_VALUE;
      const nanos = getPropertyI64(s.path, missing);
      if (nanos == missing) return "";
      // To the nearest millisecond: the host's nanoseconds come from a float and may fall just short.
      return isoTime(nanos >= 0 ? (nanos + 500000) / 1000000 : (nanos - 500000) / 1000000);
    }
  }
  return "";
}

function orEmpty(value: string | null): string {
  return value !== null ? value : "";
}

/** Milliseconds since the epoch as `2026-01-01T00:00:00.000Z` (Howard Hinnant's civil_from_days). */
export function isoTime(milliseconds: i64): string {
  let days = milliseconds / 86400000;
  let ms = milliseconds % 86400000;
  if (ms < 0) {
    ms += 86400000;
    days -= 1;
  }
  const z = days + 719468;
  const era = (z >= 0 ? z : z - 146096) / 146097;
  const doe = z - era * 146097;
  const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const mp = (5 * doy + 2) / 153;
  const day = doy - (153 * mp + 2) / 5 + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return (
    pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" +
    pad(ms / 3600000, 2) + ":" + pad((ms / 60000) % 60, 2) + ":" + pad((ms / 1000) % 60, 2) + "." + pad(ms % 1000, 3) + "Z"
  );
}

function pad(n: i64, width: i32): string {
  let text = n.toString();
  while (text.length < width) text = "0" + text;
  return text;
}

function isCommandChar(c: i32): bool {
  return (c >= 0x41 && c <= 0x5a) || c == 0x5f || (c >= 0x30 && c <= 0x39);
}


