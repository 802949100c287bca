// The router filter: picks the cluster (or the host's named route) for a request from an ordered
// list of rules — path, method and header matches, then a cluster, weighted clusters (sticky by a
// header or cookie, or a smooth weighted round-robin) or a route name — and hands the decision to
// Sluice through `sluice.cluster` / `sluice.route`. First match wins; no match leaves routing alone.

import { HeadersAction, HttpContext, RootContext, Counter, getPropertyString, log, registerRootContext, setProperty } from "../../../sdk/assembly";
import {
  ACTION_ROUTE,
  ACTION_WEIGHTED,
  HEADER_ABSENT,
  HEADER_EXACT,
  HEADER_PREFIX,
  HEADER_PRESENT,
  PATH_EXACT,
  PATH_PREFIX,
  PATH_REGEX,
  RouterConfig,
  Rule,
  STICKY_COOKIE,
  STICKY_HEADER,
  Target,
  parseConfig,
} from "./config";
import { pickByKey, pickRoundRobin } from "./pick";

const unmatched = new Counter("router_unmatched_total");

const CLUSTER_PROPERTY: string[] = ["sluice", "cluster"];
const ROUTE_PROPERTY: string[] = ["sluice", "route"];
/** The cluster Sluice used, for the decision header of a route decision. */
const CLUSTER_NAME_PROPERTY: string[] = ["xds", "cluster_name"];

class RouterRoot extends RootContext {
  config: RouterConfig = new RouterConfig();
  // The request headers the rules read, each fetched at most once per request: a value per slot,
  // valid while `loaded[slot] == generation`. Root-level because a VM runs one callback at a time.
  values: StaticArray<string | null> = new StaticArray<string | null>(0);
  loaded: StaticArray<u32> = new StaticArray<u32>(0);
  generation: u32 = 0;

  onConfigure(configuration: string): bool {
    const parsed = parseConfig(configuration);
    if (parsed.error !== null) {
      log.error("router: invalid configuration: " + parsed.error!);
      return false;
    }
    const config = parsed.config!;
    this.config = config;
    this.values = new StaticArray<string | null>(config.headerNames.length);
    this.loaded = new StaticArray<u32>(config.headerNames.length);
    this.generation = 0;
    log.info("router: " + config.rules.length.toString() + " rule" + (config.rules.length == 1 ? "" : "s") + (config.decisionHeader.length > 0 ? ", decision header '" + config.decisionHeader + "'" : ""));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new RouterStream(id, this);
  }
}

class RouterStream extends HttpContext {
  /** What this request was sent to; kept only when a decision header is configured. */
  decision: Target | null = null;

  constructor(id: u32, readonly router: RouterRoot) {
    super(id, router);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const router = this.router;
    if (++router.generation == 0) {
      // Wrapped around: forget every slot so that none passes for loaded.
      for (let i = 0; i < router.loaded.length; i++) unchecked((router.loaded[i] = 0));
      router.generation = 1;
    }
    const rules = router.config.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = unchecked(rules[i]);
      if (this.matches(rule)) {
        this.decide(rule);
        return HeadersAction.Continue;
      }
    }
    // No rule matched: the host's own routes decide.
    unmatched.increment();
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const decision = this.decision;
    if (decision === null) return HeadersAction.Continue;
    if (!decision.isRoute) {
      this.response.headers.set(this.router.config.decisionHeader, decision.name);
    } else {
      // A route decision names no cluster itself: report the one Sluice took, if it took one.
      const cluster = getPropertyString(CLUSTER_NAME_PROPERTY);
      if (cluster !== null && cluster.length > 0) this.response.headers.set(this.router.config.decisionHeader, cluster);
    }
    return HeadersAction.Continue;
  }

  private decide(rule: Rule): void {
    let target: Target;
    if (rule.action == ACTION_WEIGHTED) {
      let key: string | null = null;
      if (rule.sticky == STICKY_HEADER) key = this.header(rule.stickySlot);
      else if (rule.sticky == STICKY_COOKIE) {
        const cookies = this.header(rule.stickySlot);
        if (cookies !== null) key = cookieValue(cookies, rule.cookie);
      }
      // Without a key (absent or empty), the request is spread like an unsticky one.
      target = key !== null && key.length > 0 ? pickByKey(rule.clusters, rule.totalWeight, key).target : pickRoundRobin(rule.clusters, rule.totalWeight).target;
    } else {
      target = rule.target!;
    }
    setProperty(rule.action == ACTION_ROUTE ? ROUTE_PROPERTY : CLUSTER_PROPERTY, target.bytes);
    target.decisions.increment();
    if (this.router.config.decisionHeader.length > 0) this.decision = target;
  }

  private matches(rule: Rule): bool {
    if (rule.pathKind == PATH_EXACT || rule.pathKind == PATH_PREFIX) {
      const path = this.header(this.router.config.pathSlot);
      if (path === null) return false;
      let end = path.indexOf("?");
      if (end < 0) end = path.length;
      const want = rule.path;
      if (rule.pathKind == PATH_EXACT) {
        if (end != want.length || !path.startsWith(want)) return false;
      } else if (want.length > end || !path.startsWith(want)) {
        return false;
      }
    }
    if (rule.methods.length > 0) {
      const method = this.header(this.router.config.methodSlot);
      if (method === null || !rule.methods.includes(method)) return false;
    }
    const headers = rule.headers;
    for (let i = 0; i < headers.length; i++) {
      const m = unchecked(headers[i]);
      const value = this.header(m.slot);
      if (m.kind == HEADER_PRESENT) {
        if (value === null) return false;
      } else if (m.kind == HEADER_ABSENT) {
        if (value !== null) return false;
      } else if (value === null) {
        return false;
      } else if (m.kind == HEADER_EXACT) {
        if (value != m.value) return false;
      } else if (m.kind == HEADER_PREFIX) {
        if (!value.startsWith(m.value)) return false;
      }
    }
    // The regex last: it reads the whole path, the other conditions one header each.
    if (rule.pathKind == PATH_REGEX) {
      const path = this.header(this.router.config.pathSlot);
      if (path === null) return false;
      let end = path.indexOf("?");
      if (end < 0) end = path.length;
      if (!rule.regex!.matches(path, end)) return false;
    }
    return true;
  }

  /** A request header some rule reads, fetched from the host once per request. */
  private header(slot: i32): string | null {
    const router = this.router;
    if (unchecked(router.loaded[slot]) != router.generation) {
      unchecked((router.values[slot] = this.request.headers.get(unchecked(router.config.headerNames[slot]))));
      unchecked((router.loaded[slot] = router.generation));
    }
    return unchecked(router.values[slot]);
  }
}

/** The value of cookie `name` in a `cookie` header (`a=1; session=xyz`), or null. */
function cookieValue(header: string, name: string): string | null {
  const n = header.length;
  let i = 0;
  while (i < n) {
    while (i < n && (header.charCodeAt(i) == 0x20 || header.charCodeAt(i) == 0x09)) i++;
    let end = header.indexOf(";", i);
    if (end < 0) end = n;
    if (end - i > name.length && header.charCodeAt(i + name.length) == 0x3d /* = */ && sameAt(header, i, name)) {
      let last = end;
      while (last > i && (header.charCodeAt(last - 1) == 0x20 || header.charCodeAt(last - 1) == 0x09)) last--;
      return header.substring(i + name.length + 1, last);
    }
    i = end + 1;
  }
  return null;
}

function sameAt(text: string, at: i32, part: string): bool {
  for (let j = 0; j < part.length; j++) if (text.charCodeAt(at + j) != part.charCodeAt(j)) return false;
  return true;
}

registerRootContext((id: u32): RootContext => new RouterRoot(id), "router");
