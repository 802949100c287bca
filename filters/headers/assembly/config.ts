// The headers filter's configuration: per message (request, response) the headers to remove, set
// and add, read and validated once in onConfigure — names checked, templates parsed into segments.
// Every error names its field (`request.add[0].value`).

import { ConfigReader } from "../../../sdk/assembly";
import { hasLineBreakOrNul, isHeaderName, parseTemplate, PHASE_REQUEST, PHASE_RESPONSE, Template } from "./template";

/** Headers the proxy itself frames the message with: a filter must not write or remove them. */
const MANAGED: string[] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "http2-settings"];

export class Operation {
  /** Warned once already about a value it could not write. */
  warned: bool = false;

  constructor(
    readonly name: string,
    readonly template: Template,
    /** Where it came from, for log lines: `request.set[0]`. */
    readonly field: string,
  ) {}
}

/** What to do to one message: remove, then set (replace), then add (append), values computed first. */
export class Operations {
  removes: string[] = [];
  sets: Operation[] = [];
  adds: Operation[] = [];

  get empty(): bool {
    return this.removes.length == 0 && this.sets.length == 0 && this.adds.length == 0;
  }
}

export class HeadersConfig {
  request: Operations = new Operations();
  response: Operations = new Operations();
}

export class ParseResult {
  constructor(
    readonly config: HeadersConfig | null,
    readonly error: string | null,
  ) {}
}

/** Errors of readers that do not share one list (array items get their own reader). */
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
  const config = new HeadersConfig();
  config.request = parseOperations(reader.object("request"), PHASE_REQUEST, problems);
  config.response = parseOperations(reader.object("response"), PHASE_RESPONSE, problems);
  reader.rejectUnknownFields();
  if (reader.ok && problems.messages.length == 0 && config.request.empty && config.response.empty) {
    reader.fail("request", "nothing to do: give 'request' and/or 'response' with 'add', 'set' or 'remove'");
  }
  problems.take(reader);
  if (problems.messages.length > 0) return new ParseResult(null, problems.messages.join("; "));
  return new ParseResult(config, null);
}

function parseOperations(reader: ConfigReader, phase: i32, problems: Problems): Operations {
  const ops = new Operations();

  const removes = reader.array("remove");
  if (removes !== null) {
    for (let i = 0; i < removes.length; i++) {
      const field = "remove[" + i.toString() + "]";
      const name = removes.at(i).asString();
      if (name === null) {
        reader.fail(field, "expected a header name, got " + removes.at(i).typeName);
        continue;
      }
      if (!checkName(reader, field, name, phase)) continue;
      if (name.startsWith(":")) {
        reader.fail(field, "pseudo-headers (" + name + ") cannot be removed" + (phase == PHASE_REQUEST && (name == ":path" || name == ":authority") ? "; set it instead" : ""));
        continue;
      }
      if (ops.removes.includes(name)) reader.fail(field, "'" + name + "' is listed twice");
      ops.removes.push(name);
    }
  }
  ops.sets = parseList(reader, "set", phase, problems);
  ops.adds = parseList(reader, "add", phase, problems);

  for (let i = 0; i < ops.sets.length; i++) {
    const name = ops.sets[i].name;
    for (let j = 0; j < i; j++) if (ops.sets[j].name == name) reader.fail("set[" + i.toString() + "].name", "'" + name + "' is set twice; the second would win");
    for (let j = 0; j < ops.adds.length; j++) {
      if (ops.adds[j].name == name) reader.fail("add[" + j.toString() + "].name", "'" + name + "' is also in 'set': set replaces, add appends; give one value list under one of them");
    }
  }
  for (let i = 0; i < ops.removes.length; i++) {
    const name = ops.removes[i];
    for (let j = 0; j < ops.sets.length; j++) if (ops.sets[j].name == name) reader.fail("remove[" + i.toString() + "]", "'" + name + "' is also in 'set', which replaces it anyway");
    for (let j = 0; j < ops.adds.length; j++) if (ops.adds[j].name == name) reader.fail("remove[" + i.toString() + "]", "'" + name + "' is also in 'add': to replace a header, use 'set'");
  }
  reader.rejectUnknownFields();
  return ops;
}

function parseList(parent: ConfigReader, list: string, phase: i32, problems: Problems): Operation[] {
  const out = new Array<Operation>();
  const items = parent.array(list);
  if (items === null) return out;
  for (let i = 0; i < items.length; i++) {
    const item = list + "[" + i.toString() + "]";
    const object = items.at(i).asObject();
    if (object === null) {
      parent.fail(item, "expected an object { name, value }, got " + items.at(i).typeName);
      continue;
    }
    const reader = new ConfigReader(object, parent.path + "." + item);
    const name = reader.requireString("name");
    const value = reader.requireString("value");
    reader.rejectUnknownFields();
    if (!reader.ok) {
      problems.take(reader);
      continue;
    }
    let ok = checkName(reader, "name", name, phase);
    if (ok && name.startsWith(":") && list == "add") {
      reader.fail("name", "pseudo-headers have one value: use 'set' for " + name);
      ok = false;
    }
    const parsed = parseTemplate(value, phase);
    if (parsed.error !== null) {
      reader.fail("value", parsed.error!);
      ok = false;
    } else {
      const constant = parsed.template!.constant;
      if (constant !== null) {
        if (constant.length == 0) {
          reader.fail("value", "is empty: an empty value is never written (leave the entry out, or remove the header)");
          ok = false;
        } else if (hasLineBreakOrNul(constant)) {
          reader.fail("value", "must not contain CR, LF or NUL");
          ok = false;
        } else if (name == ":path" && !constant.startsWith("/")) {
          reader.fail("value", "a :path must start with '/', got '" + constant + "'");
          ok = false;
        }
      }
    }
    problems.take(reader);
    if (ok) out.push(new Operation(name, parsed.template!, fieldOf(parent.path, item)));
  }
  return out;
}

function fieldOf(path: string, item: string): string {
  return path.length > 0 ? path + "." + item : item;
}

/** A lower-case token, not one the proxy manages; of the pseudo-headers only the request's :path and :authority. */
function checkName(reader: ConfigReader, field: string, name: string, phase: i32): bool {
  if (!isHeaderName(name)) {
    const lower = name.toLowerCase();
    reader.fail(field, lower != name && isHeaderName(lower)
      ? "header names are written in lower case: '" + lower + "', not '" + name + "'"
      : "'" + name + "' is not a header name (a lower-case HTTP token like 'x-request-start')");
    return false;
  }
  if (name.startsWith(":")) {
    if (phase == PHASE_RESPONSE) {
      reader.fail(field, "response pseudo-headers (" + name + ") cannot be changed");
      return false;
    }
    if (name != ":path" && name != ":authority") {
      reader.fail(field, "of the pseudo-headers only :path and :authority may be set, not " + name);
      return false;
    }
    return true; // removal and add are refused by the caller, with a message for each
  }
  if (MANAGED.includes(name)) {
    reader.fail(field, "'" + name + "' frames the message and is managed by the proxy" + (name == "host" ? "; set ':authority' to change the host" : ""));
    return false;
  }
  return true;
}
