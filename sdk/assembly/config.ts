// Reading a filter's JSON configuration into typed fields, with defaults, and errors that name
// the field: `field 'header': expected a string, got number`. Made for onConfigure.

import { parseJson } from "./json";
import { JsonArray, JsonObject, JsonValue } from "./json-value";

/** Collects the errors of one configuration (shared by nested readers). */
class ErrorList {
  readonly messages: string[] = [];
}

/**
 * Typed access to a JSON object's fields. Getters never fail: a missing field gives the fallback,
 * a wrong one records an error and gives the fallback. Check `ok` / `error` once at the end.
 *
 *   const c = ConfigReader.parse(configuration);
 *   const header = c.string("header", "x-hello");
 *   c.rejectUnknownFields();
 *   if (!c.ok) { log.error("hello: invalid configuration: " + c.error!); return false; }
 */
export class ConfigReader {
  private readonly read: string[] = [];

  constructor(
    /** The object read, or null for an absent one (every field then gives its fallback). */
    readonly json: JsonObject | null,
    /** Dotted path of this object inside the configuration ("" at the top). */
    readonly path: string = "",
    private readonly errors: ErrorList = new ErrorList(),
  ) {}

  /** Parses configuration text. Empty text is an empty object; anything but an object is an error. */
  static parse(text: string): ConfigReader {
    if (text.trim().length == 0) return new ConfigReader(new JsonObject());
    const result = parseJson(text);
    if (!result.ok) {
      const reader = new ConfigReader(null);
      reader.errors.messages.push("invalid JSON: " + result.error!);
      return reader;
    }
    const object = result.value!.asObject();
    const reader = new ConfigReader(object);
    if (object === null) reader.errors.messages.push("the configuration must be a JSON object, got " + result.value!.typeName);
    return reader;
  }

  /** True when no error was recorded (here or in nested readers). */
  get ok(): bool {
    return this.errors.messages.length == 0;
  }

  /** Every recorded error, joined with "; ", or null. */
  get error(): string | null {
    return this.errors.messages.length > 0 ? this.errors.messages.join("; ") : null;
  }

  /** Records an error about `field` (for checks the getters do not make: ranges, patterns...). */
  fail(field: string, message: string): void {
    this.errors.messages.push("field '" + this.fieldPath(field) + "': " + message);
  }

  has(field: string): bool {
    const object = this.json;
    return object !== null && object.has(field);
  }

  /** The raw value of a field, or null when absent. */
  value(field: string): JsonValue | null {
    this.markRead(field);
    const object = this.json;
    return object !== null ? object.get(field) : null;
  }

  string(field: string, fallback: string): string {
    const value = this.value(field);
    if (value === null) return fallback;
    const text = value.asString();
    if (text === null) {
      this.wrongType(field, "a string", value);
      return fallback;
    }
    return text;
  }

  /** A string that must be present. */
  requireString(field: string): string {
    if (!this.has(field)) {
      this.markRead(field);
      this.fail(field, "is required");
      return "";
    }
    return this.string(field, "");
  }

  number(field: string, fallback: f64): f64 {
    const value = this.value(field);
    if (value === null) return fallback;
    if (!value.isNumber) {
      this.wrongType(field, "a number", value);
      return fallback;
    }
    return value.asNumber();
  }

  /** An integer within [min, max]. */
  integer(field: string, fallback: i64, min: i64 = i64.MIN_VALUE, max: i64 = i64.MAX_VALUE): i64 {
    const value = this.value(field);
    if (value === null) return fallback;
    const n = value.asNumber();
    if (!value.isNumber || Math.floor(n) != n || Math.abs(n) > 9007199254740992.0) {
      this.wrongType(field, "an integer", value);
      return fallback;
    }
    const i = <i64>n;
    if (i < min || i > max) {
      this.fail(field, "must be between " + min.toString() + " and " + max.toString() + ", got " + i.toString());
      return fallback;
    }
    return i;
  }

  bool(field: string, fallback: bool): bool {
    const value = this.value(field);
    if (value === null) return fallback;
    if (!value.isBool) {
      this.wrongType(field, "true or false", value);
      return fallback;
    }
    return value.asBool();
  }

  /** An array of strings ([] when absent). */
  stringArray(field: string): string[] {
    const out = new Array<string>();
    const value = this.value(field);
    if (value === null) return out;
    const array = value.asArray();
    if (array === null) {
      this.wrongType(field, "an array of strings", value);
      return out;
    }
    for (let i = 0; i < array.length; i++) {
      const text = array.at(i).asString();
      if (text === null) {
        this.fail(field + "[" + i.toString() + "]", "expected a string, got " + array.at(i).typeName);
        continue;
      }
      out.push(text);
    }
    return out;
  }

  /** An array field, or null when absent (or not an array: recorded as an error). */
  array(field: string): JsonArray | null {
    const value = this.value(field);
    if (value === null) return null;
    const array = value.asArray();
    if (array === null) this.wrongType(field, "an array", value);
    return array;
  }

  /** A reader for a nested object; an absent one reads as empty. Errors go to this reader too. */
  object(field: string): ConfigReader {
    const value = this.value(field);
    let nested: JsonObject | null = null;
    if (value !== null) {
      nested = value.asObject();
      if (nested === null) this.wrongType(field, "an object", value);
    }
    return new ConfigReader(nested, this.fieldPath(field), this.errors);
  }

  /** Records an error for every field no getter asked for (a typo must not pass silently). */
  rejectUnknownFields(): void {
    const object = this.json;
    if (object === null) return;
    for (let i = 0; i < object.keys.length; i++) {
      const key = object.keys[i];
      if (!this.read.includes(key)) {
        this.errors.messages.push("unknown field '" + this.fieldPath(key) + "' (known: " + this.read.join(", ") + ")");
      }
    }
  }

  private markRead(field: string): void {
    if (!this.read.includes(field)) this.read.push(field);
  }

  private fieldPath(field: string): string {
    return this.path.length > 0 ? this.path + "." + field : field;
  }

  private wrongType(field: string, expected: string, got: JsonValue): void {
    this.fail(field, "expected " + expected + ", got " + got.typeName);
  }
}
