// The headers filter: removes, sets and adds request and response headers, with values templated
// from request facts and properties (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x-user)%`, ...) in
// Envoy's syntax. Templates are parsed in onConfigure; the request path only evaluates them.

import { Counter, HeaderMap, HeadersAction, HttpContext, RootContext, log, registerRootContext } from "../../../sdk/assembly";
import { HeadersConfig, Operation, Operations, parseConfig } from "./config";
import { evaluate, hasLineBreakOrNul } from "./template";

/** Values computed at run time that could not be written (CR/LF/NUL, a :path without '/'). */
const refused = new Counter("headers_values_refused_total");

class HeadersRoot extends RootContext {
  config: HeadersConfig = new HeadersConfig();
  /** Computed values of one message's set and add entries (a VM runs one callback at a time). */
  values: StaticArray<string> = new StaticArray<string>(0);

  onConfigure(configuration: string): bool {
    const parsed = parseConfig(configuration);
    if (parsed.error !== null) {
      log.error("headers: invalid configuration: " + parsed.error!);
      return false;
    }
    const config = parsed.config!;
    this.config = config;
    const request = config.request.sets.length + config.request.adds.length;
    const response = config.response.sets.length + config.response.adds.length;
    this.values = new StaticArray<string>(request > response ? request : response);
    log.info("headers: request " + summary(config.request) + "; response " + summary(config.response));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new HeadersStream(id, this);
  }
}

function summary(ops: Operations): string {
  if (ops.empty) return "unchanged";
  return ops.removes.length.toString() + " removed, " + ops.sets.length.toString() + " set, " + ops.adds.length.toString() + " added";
}

class HeadersStream extends HttpContext {
  constructor(id: u32, readonly plugin: HeadersRoot) {
    super(id, plugin);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const ops = this.plugin.config.request;
    if (!ops.empty) this.apply(this.request.headers, ops);
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const ops = this.plugin.config.response;
    if (!ops.empty) this.apply(this.response.headers, ops);
    return HeadersAction.Continue;
  }

  /** Values first (from the message as it arrived here), then remove, set, add. */
  private apply(map: HeaderMap, ops: Operations): void {
    const values = this.plugin.values;
    const request = this.request.headers;
    const response = this.response.headers;
    const sets = ops.sets;
    const adds = ops.adds;
    for (let i = 0; i < sets.length; i++) unchecked((values[i] = evaluate(unchecked(sets[i]).template, request, response)));
    for (let i = 0; i < adds.length; i++) unchecked((values[sets.length + i] = evaluate(unchecked(adds[i]).template, request, response)));

    const removes = ops.removes;
    for (let i = 0; i < removes.length; i++) map.remove(unchecked(removes[i]));
    for (let i = 0; i < sets.length; i++) {
      const op = unchecked(sets[i]);
      const value = unchecked(values[i]);
      if (writable(op, value)) map.set(op.name, value);
    }
    for (let i = 0; i < adds.length; i++) {
      const op = unchecked(adds[i]);
      const value = unchecked(values[sets.length + i]);
      if (writable(op, value)) map.add(op.name, value);
    }
  }
}

/**
 * Whether a computed value may be written. Empty: no (Envoy's default; nothing to count). A value
 * from a header or a free-form property with CR, LF or NUL, or a :path not starting with '/': no,
 * counted and logged once per entry — the header is left as it was rather than written broken.
 */
function writable(op: Operation, value: string): bool {
  if (value.length == 0) return false;
  let problem: string | null = null;
  if (op.template.untrusted && hasLineBreakOrNul(value)) problem = "contains CR, LF or NUL";
  else if (op.name == ":path" && value.charCodeAt(0) != 0x2f /* / */) problem = "does not start with '/'";
  if (problem === null) return true;
  refused.increment();
  if (!op.warned) {
    op.warned = true;
    log.warn("headers: " + op.field + ": not writing '" + op.name + "': its value " + problem + " (counted in headers_values_refused_total; logged once)");
  }
  return false;
}

registerRootContext((id: u32): RootContext => new HeadersRoot(id), "headers");
