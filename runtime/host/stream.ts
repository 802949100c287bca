// The state of one HTTP stream as filters see it: header and trailer maps, the body data being
// handed over, request/connection facts for properties, and values filters set as properties.

import { HeaderMap } from './header-map.ts';
import type { AbiBuffer } from '../abi/host-functions.ts';

export interface ConnectionInfo {
  id: number;
  mtls: boolean;
  requestedServerName?: string;
  tlsVersion?: string;
  /** SPIFFE or other URI SANs of the peer's certificate. */
  peerUriSans?: string[];
  peerDnsSans?: string[];
  peerSubject?: string;
  localUriSans?: string[];
  localSubject?: string;
}

export interface Address {
  address: string;
  port: number;
}

/** What the proxy knows of a stream when it opens it. */
export interface StreamInfo {
  source?: Address;
  destination?: Address;
  connection?: ConnectionInfo;
  /** `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`. */
  protocol?: string;
  /** Milliseconds since the epoch at which the request began. */
  startTime?: number;
  routeName?: string;
  clusterName?: string;
  upstream?: Address;
}

/** The body data a filter's body callback sees and may rewrite. */
export class BodyBuffer implements AbiBuffer {
  data: Uint8Array = EMPTY;
  endOfStream = false;
  /** Only during body callbacks; outside them the body is not available to filters. */
  active = false;

  bytes(): Uint8Array {
    return this.data;
  }

  splice(start: number, length: number, data: Uint8Array): boolean {
    this.data = spliceBytes(this.data, start, length, data);
    return true;
  }
}

export const EMPTY = new Uint8Array(0);

/** Replaces [start, start+length) of `bytes` with `data`, clamped: start ≥ size appends, (0, 0) prepends. */
export function spliceBytes(bytes: Uint8Array, start: number, length: number, data: Uint8Array): Uint8Array {
  const from = Math.min(start, bytes.byteLength);
  const to = Math.min(bytes.byteLength, from + length);
  const out = new Uint8Array(from + data.byteLength + (bytes.byteLength - to));
  out.set(bytes.subarray(0, from), 0);
  out.set(data, from);
  out.set(bytes.subarray(to), from + data.byteLength);
  return out;
}

export class StreamState {
  requestHeaders?: HeaderMap;
  requestTrailers?: HeaderMap;
  responseHeaders?: HeaderMap;
  responseTrailers?: HeaderMap;
  readonly requestBody = new BodyBuffer();
  readonly responseBody = new BodyBuffer();
  /** Request and response body bytes seen so far. */
  requestBytes = 0;
  responseBytes = 0;
  responseCodeDetails = '';
  /** Values set with proxy_set_property, by their NUL-joined path; the proxy reads `sluice.*` ones. */
  readonly properties = new Map<string, Uint8Array>();
  readonly startTime: number;
  endTime?: number;

  constructor(readonly info: StreamInfo, now: number) {
    this.startTime = info.startTime ?? now;
  }

  /** A property set by a filter, as text (e.g. `sluice.cluster`), or undefined. */
  property(path: string): string | undefined {
    const value = this.properties.get(path);
    return value === undefined ? undefined : Buffer.from(value).toString('utf8');
  }
}
