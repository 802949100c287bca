// Which root contexts the filter offers (`registerRootContext`) and which contexts are alive. The
// root context for a plugin is chosen by the host property `plugin_root_id`; with one registered
// root, that one is used whatever the id (the empty id of Envoy's and Sluice's default included),
// as the Rust and Go SDKs do.

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

// The live contexts by id: an open-addressing table (linear probing, Fibonacci hashing, deletion
// by backward shift, so no tombstones), at most half full. Every callback looks its context up and
// a host calls the same stream several times in a row, so the last stream and the last root
// context found are also kept aside: most lookups are one comparison.
let tableBits: u32 = 6;
let tableMask: u32 = (1 << 6) - 1;
let tableIds = new StaticArray<u32>(1 << 6);
let tableContexts = new StaticArray<Context | null>(1 << 6);
let tableCount: u32 = 0;
let lastStreamId: u32 = 0;
let lastStream: HttpContext | null = null;
let lastRootId: u32 = 0;
let lastRoot: RootContext | null = null;

// @ts-ignore: decorator
@inline
function slotOf(id: u32): u32 {
  return (id * 0x9E3779B1) >>> (32 - tableBits);
}

/** The slot holding `id`, or -1. */
function findSlot(id: u32): i32 {
  const mask = tableMask;
  let slot = slotOf(id);
  while (true) {
    const found = unchecked(tableContexts[slot]);
    if (found === null) return -1;
    if (unchecked(tableIds[slot]) == id) return <i32>slot;
    slot = (slot + 1) & mask;
  }
}

/** Remembers a context found or added, as the last stream or the last root. */
function remember(id: u32, context: Context): void {
  if (context instanceof HttpContext) {
    lastStreamId = id;
    lastStream = changetype<HttpContext>(context);
  } else if (context instanceof RootContext) {
    lastRootId = id;
    lastRoot = changetype<RootContext>(context);
  }
}

function lookupInTable(id: u32): Context | null {
  const slot = findSlot(id);
  if (slot < 0) return null;
  const found = changetype<Context>(unchecked(tableContexts[slot]));
  remember(id, found);
  return found;
}

// @ts-ignore: decorator
@inline
function lookup(id: u32): Context | null {
  if (id == lastStreamId) {
    const stream = lastStream;
    if (stream !== null) return stream;
  }
  if (id == lastRootId) {
    const root = lastRoot;
    if (root !== null) return root;
  }
  return lookupInTable(id);
}

/** Adds a context (callers remember it); false when one with that id already exists. */
function insert(id: u32, context: Context): bool {
  if ((tableCount + 1) * 2 > tableMask + 1) grow();
  const mask = tableMask;
  let slot = slotOf(id);
  while (true) {
    const found = unchecked(tableContexts[slot]);
    if (found === null) break;
    if (unchecked(tableIds[slot]) == id) return false;
    slot = (slot + 1) & mask;
  }
  unchecked(tableIds[slot] = id);
  unchecked(tableContexts[slot] = context);
  tableCount++;
  return true;
}

function grow(): void {
  const oldIds = tableIds;
  const oldContexts = tableContexts;
  tableBits++;
  tableMask = (<u32>1 << tableBits) - 1;
  tableIds = new StaticArray<u32>(<i32>(tableMask + 1));
  tableContexts = new StaticArray<Context | null>(<i32>(tableMask + 1));
  for (let i = 0; i < oldContexts.length; i++) {
    const context = unchecked(oldContexts[i]);
    if (context === null) continue;
    const id = unchecked(oldIds[i]);
    let slot = slotOf(id);
    while (unchecked(tableContexts[slot]) !== null) slot = (slot + 1) & tableMask;
    unchecked(tableIds[slot] = id);
    unchecked(tableContexts[slot] = context);
  }
}

function remove(id: u32): void {
  if (id == lastStreamId) lastStream = null;
  if (id == lastRootId) lastRoot = null;
  let hole = findSlot(id);
  if (hole < 0) return;
  const mask = tableMask;
  tableCount--;
  // Backward shift: move later entries of the run into the hole when their home slot allows it.
  let slot = (<u32>hole + 1) & mask;
  while (true) {
    const context = unchecked(tableContexts[slot]);
    if (context === null) break;
    const home = slotOf(unchecked(tableIds[slot]));
    // The entry may move to the hole unless its home lies cyclically in (hole, slot].
    if (((slot - home) & mask) >= ((slot - <u32>hole) & mask)) {
      unchecked(tableIds[hole] = unchecked(tableIds[slot]));
      unchecked(tableContexts[hole] = context);
      hole = <i32>slot;
    }
    slot = (slot + 1) & mask;
  }
  unchecked(tableContexts[hole] = null);
}

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
      : "no root context registered for plugin_root_id '" + rootId + "' (registered: " + registeredNames() + "): set the plugin's rootId to one of them";
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
  if (parentId == 0) {
    if (lookup(contextId) !== null) alreadyExists(contextId);
    const root = createRoot(contextId);
    insert(contextId, root);
    lastRootId = contextId;
    lastRoot = root;
    return;
  }
  const root = rootContext(parentId, "proxy_on_context_create");
  const stream = root.createHttpContext(contextId);
  if (stream.id != contextId) wrongStreamId(contextId, stream.id);
  if (!insert(contextId, stream)) alreadyExists(contextId);
  lastStreamId = contextId;
  lastStream = stream;
}

// The failures below are kept out of line: the lookups above are inlined into every callback.

function alreadyExists(contextId: u32): void {
  panic("proxy_on_context_create: context " + contextId.toString() + " already exists");
}

function wrongStreamId(contextId: u32, id: u32): void {
  panic("createHttpContext(" + contextId.toString() + ") returned a context with id " + id.toString() + ": pass the id it is given to the HttpContext constructor");
}

function unknownContext(contextId: u32, callback: string): void {
  panic(callback + ": unknown context " + contextId.toString());
}

function wrongKind(contextId: u32, callback: string, kind: string): void {
  panic(callback + ": context " + contextId.toString() + " is not " + kind);
}

/** A live context, or a trap naming the callback: the host and the SDK disagree on what exists. */
// @ts-ignore: decorator
@inline
export function context(contextId: u32, callback: string): Context {
  const found = lookup(contextId);
  if (found === null) unknownContext(contextId, callback);
  return changetype<Context>(found);
}

export function hasContext(contextId: u32): bool {
  return lookup(contextId) !== null;
}

// @ts-ignore: decorator
@inline
export function rootContext(contextId: u32, callback: string): RootContext {
  if (contextId == lastRootId) {
    const root = lastRoot;
    if (root !== null) return root;
  }
  return rootContextInTable(contextId, callback);
}

function rootContextInTable(contextId: u32, callback: string): RootContext {
  const found = lookupInTable(contextId);
  if (found === null) unknownContext(contextId, callback);
  if (!(found instanceof RootContext)) wrongKind(contextId, callback, "a root context");
  return changetype<RootContext>(found);
}

// @ts-ignore: decorator
@inline
export function httpContext(contextId: u32, callback: string): HttpContext {
  if (contextId == lastStreamId) {
    const stream = lastStream;
    if (stream !== null) return stream;
  }
  return httpContextInTable(contextId, callback);
}

function httpContextInTable(contextId: u32, callback: string): HttpContext {
  const found = lookupInTable(contextId);
  if (found === null) unknownContext(contextId, callback);
  if (!(found instanceof HttpContext)) wrongKind(contextId, callback, "an HTTP stream context");
  return changetype<HttpContext>(found);
}

/** `proxy_on_delete`: forgets the context; answers to HTTP calls it still waited for will be dropped. */
export function deleteContext(contextId: u32): void {
  const found = context(contextId, "proxy_on_delete");
  found.onDelete();
  if (found.pendingHttpCalls > 0) orphanPendingCalls(contextId);
  remove(contextId);
}
