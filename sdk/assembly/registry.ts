// Which root contexts the filter offers (`registerRootContext`) and which contexts are alive. The
// root context for a plugin is chosen by the host property `plugin_root_id`; with one registered
// root, that one is used whatever the id.

import { Context, HttpContext, RootContext } from "./context";
import { panic } from "./errors";
import { orphanPendingCalls } from "./http-call";
import { log } from "./log";
import { getPropertyString } from "./properties";

/** Builds a root context for the id the host gives it. */
export type RootFactory = (contextId: u32) => RootContext;

class Registration {
  constructor(readonly name: string, readonly factory: RootFactory) {}
}

const registrations = new Array<Registration>();
const contexts = new Map<u32, Context>();

/**
 * Offers a root context to the host, under a root id (the `rootId` of the plugin that uses it).
 * Call it at the top level of the filter's assembly/index.ts:
 * `registerRootContext((id: u32): RootContext => new MyRoot(id), "my-filter");`
 */
export function registerRootContext(factory: RootFactory, rootId: string = ""): void {
  for (let i = 0; i < registrations.length; i++) {
    if (registrations[i].name == rootId) panic("registerRootContext: root id '" + rootId + "' is registered twice");
  }
  registrations.push(new Registration(rootId, factory));
}

function registeredNames(): string {
  const names = new Array<string>();
  for (let i = 0; i < registrations.length; i++) names.push("'" + registrations[i].name + "'");
  return names.join(", ");
}

/** Stands in when no registered root matches: it rejects the plugin with a message saying why. */
class UnmatchedRoot extends RootContext {
  constructor(id: u32, readonly reason: string) {
    super(id);
  }

  onVmStart(vmConfiguration: string): bool {
    log.critical(this.reason);
    return false;
  }

  onConfigure(configuration: string): bool {
    log.critical(this.reason);
    return false;
  }
}

function createRoot(contextId: u32): RootContext {
  const property = getPropertyString(["plugin_root_id"]);
  const rootId = property !== null ? property : "";
  let chosen: Registration | null = null;
  if (registrations.length == 1) {
    chosen = registrations[0];
  } else {
    for (let i = 0; i < registrations.length; i++) {
      if (registrations[i].name == rootId) chosen = registrations[i];
    }
  }
  if (chosen === null) {
    const reason = registrations.length == 0
      ? "no root context registered: call registerRootContext(...) at the top level of the filter's assembly/index.ts"
      : "no root context registered for plugin_root_id '" + rootId + "' (registered: " + registeredNames() + ")";
    const root = new UnmatchedRoot(contextId, reason);
    root.rootId = rootId;
    return root;
  }
  const root = chosen.factory(contextId);
  if (root.id != contextId) {
    panic("the root factory for '" + chosen.name + "' built a context with id " + root.id.toString() + " for id " + contextId.toString() + ": pass the id it is given to the RootContext constructor");
  }
  root.rootId = rootId;
  return root;
}

/** `proxy_on_context_create`: parent 0 makes a root context, otherwise an HTTP stream context. */
export function createContext(contextId: u32, parentId: u32): void {
  if (contexts.has(contextId)) panic("proxy_on_context_create: context " + contextId.toString() + " already exists");
  if (parentId == 0) {
    contexts.set(contextId, createRoot(contextId));
    return;
  }
  const root = rootContext(parentId, "proxy_on_context_create");
  const stream = root.createHttpContext(contextId);
  if (stream.id != contextId) {
    panic("createHttpContext(" + contextId.toString() + ") returned a context with id " + stream.id.toString() + ": pass the id it is given to the HttpContext constructor");
  }
  contexts.set(contextId, stream);
}

/** A live context, or a trap naming the callback: the host and the SDK disagree on what exists. */
export function context(contextId: u32, callback: string): Context {
  if (!contexts.has(contextId)) panic(callback + ": unknown context " + contextId.toString());
  return contexts.get(contextId);
}

export function hasContext(contextId: u32): bool {
  return contexts.has(contextId);
}

export function rootContext(contextId: u32, callback: string): RootContext {
  const found = context(contextId, callback);
  if (!(found instanceof RootContext)) panic(callback + ": context " + contextId.toString() + " is not a root context");
  return changetype<RootContext>(found);
}

export function httpContext(contextId: u32, callback: string): HttpContext {
  const found = context(contextId, callback);
  if (!(found instanceof HttpContext)) panic(callback + ": context " + contextId.toString() + " is not an HTTP stream context");
  return changetype<HttpContext>(found);
}

/** `proxy_on_delete`: forgets the context; answers to HTTP calls it still waited for will be dropped. */
export function deleteContext(contextId: u32): void {
  const found = context(contextId, "proxy_on_delete");
  found.onDelete();
  if (found.pendingHttpCalls > 0) orphanPendingCalls(contextId);
  contexts.delete(contextId);
}
