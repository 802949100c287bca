// Resolves proxy-wasm property paths (`request.path`, `source.address`, `plugin_root_id`, ...) to
// their encoded values: strings raw, integers as 8-byte little-endian, booleans as one byte,
// timestamps and durations as int64 nanoseconds, header maps in the pairs format.
// docs/properties.md lists every path; keep the two in step.

import { encodePairs } from '../abi/memory.ts';
import type { HeaderMap } from './header-map.ts';
import type { StreamState } from './stream.ts';
import type { NodeInfo } from './environment.ts';

export interface PropertyScope {
  pluginName: string;
  rootId: string;
  vmId: string;
  node: NodeInfo;
  /** The clock, read only by the properties that need it (request.duration). */
  now: () => number;
  /** Set for stream contexts; root contexts see no request, response, source or connection. */
  stream?: StreamState;
  /** Values a root context set with proxy_set_property. */
  rootProperties: Map<string, Uint8Array>;
}

type Value = Uint8Array | string | undefined;

export function int64(n: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  const v = typeof n === 'number' ? Math.trunc(n) : 0;
  if (typeof n === 'number' && Number.isSafeInteger(v)) {
    // Two 32-bit halves: no BigInt per property read (timestamps and sizes are read per request).
    const high = Math.floor(v / 4294967296);
    view.setUint32(0, v - high * 4294967296, true);
    view.setInt32(4, high, true);
  } else view.setBigInt64(0, BigInt.asIntN(64, typeof n === 'number' ? BigInt(v) : n), true);
  return out;
}

export function bool(b: boolean): Uint8Array {
  return Uint8Array.of(b ? 1 : 0);
}

const nanos = (ms: number): Uint8Array => int64(Math.round(ms * 1e6));

/** Paths a filter may set on a stream that Sluice itself acts on (see docs/properties.md). */
export const SLUICE_WRITABLE = ['sluice.cluster', 'sluice.route', 'sluice.retry_policy', 'sluice.timeout_ms', 'sluice.upstream_host'];

/**
 * A path's two spellings, made once per path array: the ABI's host functions keep one array per
 * path a filter asks for, so a filter reading `request.path` on every request joins it once.
 */
const spellings = new WeakMap<readonly string[], { dotted: string; raw: string }>();

function spell(path: readonly string[]): { dotted: string; raw: string } {
  let s = spellings.get(path);
  if (!s) {
    s = { dotted: path.join('.'), raw: path.join('\u0000') };
    spellings.set(path, s);
  }
  return s;
}

export function resolveProperty(path: string[], scope: PropertyScope): Value {
  const { dotted: key, raw } = spell(path);
  const s = scope.stream;
  const set = s?.properties.get(raw) ?? scope.rootProperties.get(raw);
  if (set !== undefined) return set;
  switch (key) {
    case 'plugin_name':
      return scope.pluginName;
    case 'plugin_root_id':
      return scope.rootId;
    case 'plugin_vm_id':
      return scope.vmId;
    case 'node.id':
      return scope.node.id;
    case 'node.cluster':
      return scope.node.cluster;
  }
  if (path[0] === 'node' && path[1] === 'metadata' && path.length === 3) return scope.node.metadata[path[2]];
  if (!s) return undefined;
  return streamProperty(path, key, s, scope.now);
}

function streamProperty(path: string[], key: string, s: StreamState, now: () => number): Value {
  const req = s.requestHeaders;
  const res = s.responseHeaders;
  const conn = s.info.connection;
  switch (key) {
    case 'request.path':
      return req?.get(':path');
    case 'request.url_path': {
      const p = req?.get(':path');
      return p === undefined ? undefined : p.split('?')[0];
    }
    case 'request.query': {
      const p = req?.get(':path');
      if (p === undefined) return undefined;
      const q = p.indexOf('?');
      return q < 0 ? '' : p.slice(q + 1);
    }
    case 'request.host':
      return req?.get(':authority') ?? req?.get('host');
    case 'request.scheme':
      return req?.get(':scheme');
    case 'request.method':
      return req?.get(':method');
    case 'request.referer':
      return req?.get('referer');
    case 'request.useragent':
      return req?.get('user-agent');
    case 'request.id':
      return req?.get('x-request-id');
    case 'request.protocol':
      return s.info.protocol;
    case 'request.time':
      return nanos(s.startTime);
    case 'request.duration':
      return nanos((s.endTime ?? now()) - s.startTime);
    case 'request.size':
      return int64(s.requestBytes);
    case 'request.total_size':
      return int64(s.requestBytes + headerBytes(req));
    case 'request.headers':
      return req ? encodePairs(req) : undefined;
    case 'response.code': {
      const code = res?.get(':status');
      return code === undefined ? undefined : int64(Number(code));
    }
    case 'response.code_details':
      return s.responseCodeDetails || undefined;
    case 'response.grpc_status': {
      const g = s.responseTrailers?.get('grpc-status') ?? res?.get('grpc-status');
      return g === undefined ? undefined : int64(Number(g));
    }
    case 'response.size':
      return int64(s.responseBytes);
    case 'response.total_size':
      return int64(s.responseBytes + headerBytes(res));
    case 'response.flags':
      return int64(0);
    case 'response.headers':
      return res ? encodePairs(res) : undefined;
    case 'response.trailers':
      return s.responseTrailers ? encodePairs(s.responseTrailers) : undefined;
    case 'source.address':
      return s.info.source ? `${s.info.source.address}:${s.info.source.port}` : undefined;
    case 'source.port':
      return s.info.source ? int64(s.info.source.port) : undefined;
    case 'destination.address':
      return s.info.destination ? `${s.info.destination.address}:${s.info.destination.port}` : undefined;
    case 'destination.port':
      return s.info.destination ? int64(s.info.destination.port) : undefined;
    case 'upstream.address':
      return s.info.upstream ? `${s.info.upstream.address}:${s.info.upstream.port}` : undefined;
    case 'upstream.port':
      return s.info.upstream ? int64(s.info.upstream.port) : undefined;
    case 'connection.id':
      return conn ? int64(conn.id) : undefined;
    case 'connection.mtls':
      return conn ? bool(conn.mtls) : undefined;
    case 'connection.requested_server_name':
      return conn?.requestedServerName;
    case 'connection.tls_version':
      return conn?.tlsVersion;
    case 'connection.uri_san_peer_certificate':
    case 'sluice.peer_identity':
      return conn?.peerUriSans?.[0];
    case 'connection.uri_san_local_certificate':
      return conn?.localUriSans?.[0];
    case 'connection.dns_san_peer_certificate':
      return conn?.peerDnsSans?.[0];
    case 'connection.subject_peer_certificate':
      return conn?.peerSubject;
    case 'connection.subject_local_certificate':
      return conn?.localSubject;
    case 'xds.route_name':
    case 'sluice.route_name':
      return s.info.routeName;
    case 'xds.cluster_name':
    case 'sluice.cluster_name':
      return s.info.clusterName;
  }
  if (path.length === 3 && (path[0] === 'request' || path[0] === 'response') && path[1] === 'headers') {
    return (path[0] === 'request' ? req : res)?.get(path[2].toLowerCase());
  }
  return undefined;
}

function headerBytes(map: HeaderMap | undefined): number {
  if (!map) return 0;
  let n = 0;
  for (const [k, v] of map) n += k.length + v.length + 4;
  return n;
}
