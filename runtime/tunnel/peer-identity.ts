// What a tunnel end knows of the other from its certificate: the SPIFFE IDs among the URI SANs,
// and the TLS server name (SNI) a client sends to ask for the certificate of one identity.

import { createHash, type X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

/** The URI SANs of `cert` (node's `subjectAltName` text, e.g. `URI:spiffe://td/ns/a/sa/b, DNS:x`). */
export function uriSans(cert: X509Certificate | undefined): string[] {
  const text = cert?.subjectAltName ?? '';
  // node quotes a SAN holding a comma or a quote ("URI:\"...\""); such a name is no SPIFFE ID
  // (RFC 3986 forbids neither, SPIFFE's path segments do), so it is kept quoted and never matches.
  return text.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

/** The SPIFFE IDs among `cert`'s URI SANs. An X509-SVID has exactly one. */
export function spiffeIds(cert: X509Certificate | undefined): string[] {
  return uriSans(cert).filter((u) => u.startsWith('spiffe://'));
}

/**
 * The TLS server name a client sends to ask a node for the certificate of `identity`: a DNS name
 * made of a hash of the SPIFFE ID (which is not a host name itself), `<32 hex>.svid.sluice`.
 */
export function serverNameFor(identity: string): string {
  return `${createHash('sha256').update(identity).digest('hex').slice(0, 32)}.svid.sluice`;
}

export interface TunnelTarget {
  readonly address: string;
  readonly port: number;
}

/** `ip:port` or `[ipv6]:port`, as CONNECT's `:authority` carries it. */
export function authorityOf(target: TunnelTarget): string {
  return target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;
}

/** The target of a CONNECT `:authority`, or a reason it is not one (only IP addresses: the tunnel never resolves names). */
export function parseAuthority(authority: string | undefined): TunnelTarget | string {
  if (!authority) return 'CONNECT without :authority';
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(authority) ?? /^([^:]+):(\d{1,5})$/.exec(authority);
  if (!m) return `:authority "${authority}" is not ip:port`;
  const [, address, portText] = m;
  const port = Number(portText);
  if (!isIP(address!)) return `:authority "${authority}" does not name an IP address (the tunnel does not resolve names)`;
  if (port < 1 || port > 65535) return `:authority "${authority}" has port ${port}, outside 1-65535`;
  return { address: address!, port };
}
