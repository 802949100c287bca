// Picks a listener's route for a request: path (exact, prefix, regex), method, headers and query
// parameters, first match wins, in the order of the config. Compiled once per snapshot.

import type { HeaderMap } from '../host/header-map.ts';
import type { RouteConfig, ValueMatch, WeightedCluster } from '../config/snapshot.ts';

export interface CompiledRoute {
  readonly config: RouteConfig;
  matches(method: string, path: string, query: URLSearchParams | undefined, headers: HeaderMap): boolean;
}

export class Router {
  private readonly routes: CompiledRoute[];
  private readonly byName: Map<string, CompiledRoute>;

  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map(compile);
    this.byName = new Map(this.routes.map((r) => [r.config.name, r]));
  }

  /** The first route matching the request, or undefined. */
  route(headers: HeaderMap): RouteConfig | undefined {
    const method = headers.get(':method') ?? 'GET';
    const full = headers.get(':path') ?? '/';
    const q = full.indexOf('?');
    const path = q < 0 ? full : full.slice(0, q);
    // Parsed only when some route matches on query parameters.
    let query: URLSearchParams | undefined;
    for (const r of this.routes) {
      if (r.config.match.query && !query) query = new URLSearchParams(q < 0 ? '' : full.slice(q + 1));
      if (r.matches(method, path, query, headers)) return r.config;
    }
    return undefined;
  }

  /** A route by name (a filter may pick one through the `sluice.route` property). */
  named(name: string): RouteConfig | undefined {
    return this.byName.get(name)?.config;
  }
}

function compile(config: RouteConfig): CompiledRoute {
  const m = config.match;
  const regex = m.regex !== undefined ? new RegExp(m.regex) : undefined;
  const methods = m.methods ? new Set(m.methods.map((x) => x.toUpperCase())) : undefined;
  const headers = m.headers?.map(valueMatcher);
  const query = m.query?.map(valueMatcher);
  const pathMatches = (path: string): boolean => {
    if (m.path !== undefined) return path === m.path;
    if (regex) return regex.test(path);
    return path.startsWith(m.prefix ?? '/');
  };
  return {
    config,
    matches(method, path, q, h) {
      if (!pathMatches(path)) return false;
      if (methods && !methods.has(method)) return false;
      if (headers && !headers.every((hm) => hm(h.getAll(hm.key).join(','), h.has(hm.key)))) return false;
      if (query && !query.every((qm) => qm(q!.get(qm.key) ?? '', q!.has(qm.key)))) return false;
      return true;
    },
  };
}

type Matcher = ((value: string, present: boolean) => boolean) & { key: string };

function valueMatcher(v: ValueMatch): Matcher {
  const regex = v.regex !== undefined ? new RegExp(v.regex) : undefined;
  const test = (value: string, present: boolean): boolean => {
    if (v.exact !== undefined) return present && value === v.exact;
    if (regex) return present && regex.test(value);
    return present === (v.present ?? true);
  };
  const matcher = ((value: string, present: boolean) => test(value, present) !== (v.invert ?? false)) as Matcher;
  matcher.key = v.name.toLowerCase();
  return matcher;
}

/** Picks one of weighted clusters; `random` in [0, 1). */
export function pickWeighted(clusters: readonly WeightedCluster[], random = Math.random()): string {
  const total = clusters.reduce((n, c) => n + c.weight, 0);
  let point = random * total;
  for (const c of clusters) {
    if (point < c.weight) return c.cluster;
    point -= c.weight;
  }
  return clusters[clusters.length - 1].cluster;
}
