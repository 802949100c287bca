// The JSON value tree (null, booleans, numbers, strings, arrays, objects) with typed accessors,
// and its serializer. json.ts parses text into it.

export enum JsonKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

/** Any JSON value. Check `kind` (or `isString` ...) and use the matching `as...` accessor. */
export class JsonValue {
  constructor(readonly kind: JsonKind) {}

  get isNull(): bool { return this.kind == JsonKind.Null; }
  get isBool(): bool { return this.kind == JsonKind.Bool; }
  get isNumber(): bool { return this.kind == JsonKind.Number; }
  get isString(): bool { return this.kind == JsonKind.String; }
  get isArray(): bool { return this.kind == JsonKind.Array; }
  get isObject(): bool { return this.kind == JsonKind.Object; }

  /** The boolean, or `fallback` when this is not a boolean. */
  asBool(fallback: bool = false): bool {
    return this.kind == JsonKind.Bool ? changetype<JsonBool>(this).value : fallback;
  }

  /** The number, or `fallback` (NaN by default) when this is not a number. */
  asNumber(fallback: f64 = NaN): f64 {
    return this.kind == JsonKind.Number ? changetype<JsonNumber>(this).value : fallback;
  }

  /** The string, or null when this is not a string. */
  asString(): string | null {
    return this.kind == JsonKind.String ? changetype<JsonString>(this).value : null;
  }

  /** The array, or null when this is not an array. */
  asArray(): JsonArray | null {
    return this.kind == JsonKind.Array ? changetype<JsonArray>(this) : null;
  }

  /** The object, or null when this is not an object. */
  asObject(): JsonObject | null {
    return this.kind == JsonKind.Object ? changetype<JsonObject>(this) : null;
  }

  /** "null", "boolean", "number", "string", "array" or "object" (for error messages). */
  get typeName(): string {
    switch (this.kind) {
      case JsonKind.Null: return "null";
      case JsonKind.Bool: return "boolean";
      case JsonKind.Number: return "number";
      case JsonKind.String: return "string";
      case JsonKind.Array: return "array";
    }
    return "object";
  }

  /** Compact JSON text of this value. */
  toJson(): string {
    const out = new Array<string>();
    writeJson(this, out);
    return out.join("");
  }
}

export class JsonNull extends JsonValue {
  constructor() { super(JsonKind.Null); }
}

export class JsonBool extends JsonValue {
  constructor(readonly value: bool) { super(JsonKind.Bool); }
}

export class JsonNumber extends JsonValue {
  constructor(readonly value: f64) { super(JsonKind.Number); }

  /** Whether the number is integral and exactly representable (|n| ≤ 2^53). */
  get isInteger(): bool {
    return Math.floor(this.value) == this.value && Math.abs(this.value) <= 9007199254740992.0;
  }
}

export class JsonString extends JsonValue {
  constructor(readonly value: string) { super(JsonKind.String); }
}

export class JsonArray extends JsonValue {
  readonly items: JsonValue[] = [];

  constructor() { super(JsonKind.Array); }

  get length(): i32 { return this.items.length; }

  at(index: i32): JsonValue { return this.items[index]; }

  push(value: JsonValue): JsonArray {
    this.items.push(value);
    return this;
  }
}

export class JsonObject extends JsonValue {
  /** Member names in document order. */
  readonly keys: string[] = [];
  private readonly members: Map<string, JsonValue> = new Map();

  constructor() { super(JsonKind.Object); }

  get length(): i32 { return this.keys.length; }

  has(key: string): bool { return this.members.has(key); }

  /** The member's value, or null when absent. */
  get(key: string): JsonValue | null {
    return this.members.has(key) ? this.members.get(key) : null;
  }

  /** Adds or replaces a member. Chainable. */
  set(key: string, value: JsonValue): JsonObject {
    if (!this.members.has(key)) this.keys.push(key);
    this.members.set(key, value);
    return this;
  }

  /** The member as a string, or null when absent or not a string. */
  getString(key: string): string | null {
    const value = this.get(key);
    return value !== null ? value.asString() : null;
  }

  getNumber(key: string, fallback: f64 = NaN): f64 {
    const value = this.get(key);
    return value !== null ? value.asNumber(fallback) : fallback;
  }

  getBool(key: string, fallback: bool = false): bool {
    const value = this.get(key);
    return value !== null ? value.asBool(fallback) : fallback;
  }

  getObject(key: string): JsonObject | null {
    const value = this.get(key);
    return value !== null ? value.asObject() : null;
  }

  getArray(key: string): JsonArray | null {
    const value = this.get(key);
    return value !== null ? value.asArray() : null;
  }
}

/** JSON text of a string, quotes and escapes included. */
export function quoteJson(text: string): string {
  const out = new Array<string>();
  writeString(text, out);
  return out.join("");
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const HEX = "0123456789abcdef";

/** `U+XXXX` of a UTF-16 unit, for escapes and messages. */
export function hex4(c: i32): string {
  let out = "U+";
  for (let shift = 12; shift >= 0; shift -= 4) out += HEX.charAt((c >> shift) & 0xf);
  return out;
}

/** Appends the JSON text of `value` to `out` (joined by the caller). */
export function writeJson(value: JsonValue, out: string[]): void {
  switch (value.kind) {
    case JsonKind.Null:
      out.push("null");
      break;
    case JsonKind.Bool:
      out.push(changetype<JsonBool>(value).value ? "true" : "false");
      break;
    case JsonKind.Number: {
      const n = changetype<JsonNumber>(value);
      if (!isFinite(n.value)) out.push("null"); // JSON has no NaN or Infinity
      else if (n.isInteger) out.push((<i64>n.value).toString());
      else out.push(n.value.toString());
      break;
    }
    case JsonKind.String:
      writeString(changetype<JsonString>(value).value, out);
      break;
    case JsonKind.Array: {
      const items = changetype<JsonArray>(value).items;
      out.push("[");
      for (let i = 0; i < items.length; i++) {
        if (i > 0) out.push(",");
        writeJson(items[i], out);
      }
      out.push("]");
      break;
    }
    default: {
      const object = changetype<JsonObject>(value);
      out.push("{");
      for (let i = 0; i < object.keys.length; i++) {
        if (i > 0) out.push(",");
        const key = object.keys[i];
        writeString(key, out);
        out.push(":");
        writeJson(object.get(key)!, out);
      }
      out.push("}");
    }
  }
}

function writeString(text: string, out: string[]): void {
  out.push("\"");
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c != QUOTE && c != BACKSLASH) continue;
    if (i > start) out.push(text.substring(start, i));
    if (c == QUOTE) out.push("\\\"");
    else if (c == BACKSLASH) out.push("\\\\");
    else if (c == 0x0a) out.push("\\n");
    else if (c == 0x0d) out.push("\\r");
    else if (c == 0x09) out.push("\\t");
    else out.push("\\u" + hex4(c).substring(2));
    start = i + 1;
  }
  if (start < text.length) out.push(text.substring(start));
  out.push("\"");
}
