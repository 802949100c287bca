// A small, strict JSON (RFC 8259) parser into the value tree of json-value.ts. AssemblyScript has
// no exceptions: parseJson returns either a value or an error naming the line, column and what was
// expected.

import { hex4, JsonArray, JsonBool, JsonNull, JsonNumber, JsonObject, JsonString, JsonValue, quoteJson } from "./json-value";

/** What parseJson returns: `value` when `ok`, otherwise `error`. */
export class JsonParseResult {
  constructor(readonly value: JsonValue | null, readonly error: string | null) {}

  get ok(): bool { return this.error === null; }
}

/** Parses JSON text. Errors read like `line 1, column 12: expected ':' after member name "header"`. */
export function parseJson(text: string): JsonParseResult {
  const parser = new Parser(text);
  const value = parser.document();
  if (value === null || parser.error !== null) {
    const error = parser.error;
    return new JsonParseResult(null, error !== null ? error : "invalid JSON");
  }
  return new JsonParseResult(value, null);
}

// Deep enough for any configuration, shallow enough that a hostile document cannot exhaust the stack.
const MAX_DEPTH = 100;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

class Parser {
  pos: i32 = 0;
  depth: i32 = 0;
  error: string | null = null;

  constructor(readonly text: string) {}

  document(): JsonValue | null {
    // Tolerate a UTF-8 byte order mark decoded into the text.
    if (this.text.length > 0 && this.text.charCodeAt(0) == 0xfeff) this.pos = 1;
    this.skipSpace();
    if (this.pos >= this.text.length) return this.fail("expected a JSON value, found the end of the text");
    const value = this.value();
    if (value === null) return null;
    this.skipSpace();
    if (this.pos < this.text.length) return this.fail("unexpected " + this.describe() + " after the JSON value");
    return value;
  }

  private value(): JsonValue | null {
    if (this.pos >= this.text.length) return this.fail("expected a JSON value, found the end of the text");
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x7b) return this.object();
    if (c == 0x5b) return this.array();
    if (c == QUOTE) {
      const s = this.string();
      return s !== null ? new JsonString(s) : null;
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return new JsonBool(true);
    if (this.literal("false")) return new JsonBool(false);
    if (this.literal("null")) return new JsonNull();
    return this.fail("expected a JSON value, found " + this.describe());
  }

  private object(): JsonValue | null {
    if (++this.depth > MAX_DEPTH) return this.fail("nesting deeper than " + MAX_DEPTH.toString() + " levels");
    const object = new JsonObject();
    this.pos++; // {
    this.skipSpace();
    if (this.peek() == 0x7d) {
      this.pos++;
      this.depth--;
      return object;
    }
    while (true) {
      this.skipSpace();
      if (this.peek() != QUOTE) return this.fail("expected a member name in double quotes, found " + this.describe());
      const key = this.string();
      if (key === null) return null;
      if (object.has(key)) return this.fail("duplicate member " + quoteJson(key));
      this.skipSpace();
      if (this.peek() != 0x3a) return this.fail("expected ':' after member name " + quoteJson(key) + ", found " + this.describe());
      this.pos++;
      this.skipSpace();
      const value = this.value();
      if (value === null) return null;
      object.set(key, value);
      this.skipSpace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x7d) {
        this.pos++;
        break;
      }
      return this.fail("expected ',' or '}' after member " + quoteJson(key) + ", found " + this.describe());
    }
    this.depth--;
    return object;
  }

  private array(): JsonValue | null {
    if (++this.depth > MAX_DEPTH) return this.fail("nesting deeper than " + MAX_DEPTH.toString() + " levels");
    const array = new JsonArray();
    this.pos++; // [
    this.skipSpace();
    if (this.peek() == 0x5d) {
      this.pos++;
      this.depth--;
      return array;
    }
    while (true) {
      this.skipSpace();
      const value = this.value();
      if (value === null) return null;
      array.push(value);
      this.skipSpace();
      const c = this.peek();
      if (c == 0x2c) {
        this.pos++;
        continue;
      }
      if (c == 0x5d) {
        this.pos++;
        break;
      }
      return this.fail("expected ',' or ']' after array element " + (array.length - 1).toString() + ", found " + this.describe());
    }
    this.depth--;
    return array;
  }

  /** A string token; the position is at its opening quote. */
  private string(): string | null {
    const text = this.text;
    const start = ++this.pos;
    // Fast path: no escapes, one substring.
    let i = start;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c == QUOTE) {
        this.pos = i + 1;
        return text.substring(start, i);
      }
      if (c == BACKSLASH || c < 0x20) break;
      i++;
    }
    const units = new Array<i32>();
    for (let j = start; j < i; j++) units.push(text.charCodeAt(j));
    this.pos = i;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c == QUOTE) {
        this.pos++;
        return String.fromCharCodes(units);
      }
      if (c < 0x20) return this.failString("control character " + hex4(c) + " in a string (escape it)");
      if (c != BACKSLASH) {
        units.push(c);
        this.pos++;
        continue;
      }
      this.pos++;
      if (this.pos >= text.length) break;
      const e = text.charCodeAt(this.pos++);
      if (e == QUOTE) units.push(QUOTE);
      else if (e == BACKSLASH) units.push(BACKSLASH);
      else if (e == 0x2f) units.push(0x2f);
      else if (e == 0x62) units.push(0x08);
      else if (e == 0x66) units.push(0x0c);
      else if (e == 0x6e) units.push(0x0a);
      else if (e == 0x72) units.push(0x0d);
      else if (e == 0x74) units.push(0x09);
      else if (e == 0x75) {
        let code = 0;
        for (let k = 0; k < 4; k++) {
          const d = this.pos < text.length ? hexDigit(text.charCodeAt(this.pos)) : -1;
          if (d < 0) return this.failString("invalid \\u escape (expected 4 hex digits)");
          code = (code << 4) | d;
          this.pos++;
        }
        // Surrogate pairs arrive as two escapes; AssemblyScript strings are UTF-16, so each unit is kept as is.
        units.push(code);
      } else {
        this.pos--;
        return this.failString("invalid escape '\\" + String.fromCharCode(e) + "'");
      }
    }
    this.pos = text.length;
    return this.failString("unterminated string (missing closing '\"')");
  }

  private number(): JsonValue | null {
    const text = this.text;
    const start = this.pos;
    if (this.peek() == 0x2d) this.pos++;
    const first = this.peek();
    if (first == 0x30) {
      this.pos++;
    } else if (first >= 0x31 && first <= 0x39) {
      this.digits();
    } else {
      return this.fail("expected a digit in number, found " + this.describe());
    }
    if (this.peek() == 0x2e) {
      this.pos++;
      if (!isDigit(this.peek())) return this.fail("expected a digit after '.' in number, found " + this.describe());
      this.digits();
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.pos++;
      if (!isDigit(this.peek())) return this.fail("expected a digit in the exponent, found " + this.describe());
      this.digits();
    }
    if (isDigit(first) && first == 0x30 && isDigit(this.peek())) {
      return this.fail("leading zeros are not allowed in numbers");
    }
    return new JsonNumber(parseFloat(text.substring(start, this.pos)));
  }

  private digits(): void {
    while (isDigit(this.peek())) this.pos++;
  }

  private literal(word: string): bool {
    const text = this.text;
    if (this.pos + word.length > text.length) return false;
    for (let i = 0; i < word.length; i++) {
      if (text.charCodeAt(this.pos + i) != word.charCodeAt(i)) return false;
    }
    // "truex" is not "true".
    const next = this.pos + word.length < text.length ? text.charCodeAt(this.pos + word.length) : 0;
    if ((next >= 0x61 && next <= 0x7a) || (next >= 0x41 && next <= 0x5a) || isDigit(next)) return false;
    this.pos += word.length;
    return true;
  }

  private skipSpace(): void {
    const text = this.text;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  private peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  /** What is at the current position, for "found ..." in messages. */
  private describe(): string {
    if (this.pos >= this.text.length) return "the end of the text";
    const c = this.text.charCodeAt(this.pos);
    if (c < 0x20 || c == 0x7f) return "character " + hex4(c);
    return "'" + String.fromCharCode(c) + "'";
  }

  private fail(message: string): JsonValue | null {
    if (this.error === null) this.error = this.where() + ": " + message;
    return null;
  }

  private failString(message: string): string | null {
    this.fail(message);
    return null;
  }

  /** "line L, column C" of the current position (1-based, columns in UTF-16 units). */
  private where(): string {
    let line = 1;
    let column = 1;
    const end = min(this.pos, this.text.length);
    for (let i = 0; i < end; i++) {
      if (this.text.charCodeAt(i) == 0x0a) {
        line++;
        column = 1;
      } else {
        column++;
      }
    }
    return "line " + line.toString() + ", column " + column.toString();
  }
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

