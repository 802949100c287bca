// The string matching authz needs, allocation-free on the request path: Istio-style patterns
// (exact, "prefix*", "*suffix", "*"), the normal-form check for request paths, and the namespace
// segment of a SPIFFE ID.

/** Whether `text` occurs in `value` at `offset` (UTF-16 units compared as memory). */
// @ts-ignore: decorator
@inline
export function regionEquals(value: string, offset: i32, text: string): bool {
  return memory.compare(changetype<usize>(value) + (<usize>offset << 1), changetype<usize>(text), <usize>text.length << 1) == 0;
}

export enum PatternKind {
  Exact,
  Prefix,
  Suffix,
  /** "*": any value that is present (for principals: any peer identity, never the empty one). */
  Any,
}

/** One configured value to match, as Istio writes them: "a", "a*", "*a" or "*". */
export class Pattern {
  constructor(readonly kind: PatternKind, readonly text: string, readonly source: string) {}

  /** The pattern of `source`, or null when a '*' is anywhere but first or last. */
  static parse(source: string): Pattern | null {
    if (source == "*") return new Pattern(PatternKind.Any, "", source);
    const star = source.indexOf("*");
    if (star < 0) return new Pattern(PatternKind.Exact, source, source);
    if (source.indexOf("*", star + 1) >= 0) return null;
    if (star == 0) return new Pattern(PatternKind.Suffix, source.substring(1), source);
    if (star == source.length - 1) return new Pattern(PatternKind.Prefix, source.substring(0, star), source);
    return null;
  }

  /** Whether the first `end` units of `value` match. */
  matches(value: string, end: i32): bool {
    const text = this.text;
    const n = text.length;
    switch (this.kind) {
      case PatternKind.Exact:
        return end == n && regionEquals(value, 0, text);
      case PatternKind.Prefix:
        return end >= n && regionEquals(value, 0, text);
      case PatternKind.Suffix:
        return end >= n && regionEquals(value, end - n, text);
      default:
        return true;
    }
  }
}

/** Whether any of `patterns` matches the first `end` units of `value`. */
export function anyMatches(patterns: Pattern[], value: string, end: i32): bool {
  for (let i = 0, n = patterns.length; i < n; i++) {
    if (unchecked(patterns[i]).matches(value, end)) return true;
  }
  return false;
}

/** Where the path part of a `:path` ends (at '?' or the end): the query is never matched. */
export function pathEnd(path: string): i32 {
  const q = path.indexOf("?");
  return q < 0 ? path.length : q;
}

function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** RFC 3986 unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~"), '/' and '\'. */
function decodesToPathSignificant(c: i32): bool {
  const lower = c | 0x20;
  return (lower >= 0x61 && lower <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e || c == 0x5f || c == 0x7e || c == 0x2f || c == 0x5c;
}

/**
 * Whether the path part (the first `end` units) of a `:path` is in normal form, so that the
 * upstream cannot read it as another path than the one the rules were matched against: it starts
 * with '/' (or is "*"), and has no empty segment inside it ("//"), no "." or ".." segment, no '\',
 * no '#', no malformed '%' escape, and no '%' escape of '/', '\' or a character that needs none
 * (servers decode "%61dmin" to "admin" and resolve "/api/../admin" to "/admin").
 */
export function isNormalPath(path: string, end: i32): bool {
  if (end == 1 && path.charCodeAt(0) == 0x2a) return true; // "OPTIONS *"
  if (end == 0 || path.charCodeAt(0) != 0x2f) return false;
  let segmentStart = 1;
  for (let i = 1; i <= end; i++) {
    const c = i < end ? path.charCodeAt(i) : 0x2f;
    if (c == 0x2f) {
      const length = i - segmentStart;
      // An empty segment is fine only as the last one ("/api/"), i.e. a trailing slash.
      if (length == 0 && i < end) return false;
      if (length == 1 && path.charCodeAt(segmentStart) == 0x2e) return false;
      if (length == 2 && path.charCodeAt(segmentStart) == 0x2e && path.charCodeAt(segmentStart + 1) == 0x2e) return false;
      segmentStart = i + 1;
    } else if (c == 0x5c || c == 0x23) {
      return false;
    } else if (c == 0x25) {
      const high = i + 1 < end ? hexValue(path.charCodeAt(i + 1)) : -1;
      const low = i + 2 < end ? hexValue(path.charCodeAt(i + 2)) : -1;
      if (high < 0 || low < 0) return false;
      if (decodesToPathSignificant((high << 4) | low)) return false;
      i += 2;
    }
  }
  return true;
}

/**
 * The namespace of a SPIFFE ID (`spiffe://<trust-domain>/ns/<namespace>/sa/<account>`), or ""
 * when the identity has no /ns/ segment right after the trust domain.
 */
export function namespaceOf(principal: string): string {
  if (!principal.startsWith("spiffe://")) return "";
  const slash = principal.indexOf("/", 9);
  if (slash < 0 || slash + 4 > principal.length || !regionEquals(principal, slash, "/ns/")) return "";
  const start = slash + 4;
  let end = principal.indexOf("/", start);
  if (end < 0) end = principal.length;
  return principal.substring(start, end);
}
