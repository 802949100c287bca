// The tunnel's counters as Prometheus text, appended to /stats/prometheus in node mode:
// inbound (this node's TunnelServer) and outbound (its TunnelClient) sessions and streams, and
// what was refused or failed.

import type { TunnelClient } from './tunnel-client.ts';
import type { TunnelServer } from './tunnel-server.ts';

export function tunnelMetrics(server: TunnelServer | undefined, client: TunnelClient | undefined): string {
  const out: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', series: Array<[labels: string, value: number]>) => {
    if (series.length === 0) return;
    out.push(`# TYPE ${name} ${type}`);
    for (const [labels, value] of series) out.push(`${name}{${labels}} ${value}`);
  };
  const both = (inbound: number | undefined, outbound: number | undefined): Array<[string, number]> => [
    ...(inbound === undefined ? [] : [['direction="inbound"', inbound] as [string, number]]),
    ...(outbound === undefined ? [] : [['direction="outbound"', outbound] as [string, number]]),
  ];
  metric('sluice_tunnel_sessions_total', 'counter', both(server?.counters.sessions, client?.counters.sessions));
  metric('sluice_tunnel_sessions_active', 'gauge', both(server?.activeSessions, client?.sessionCount()));
  metric('sluice_tunnel_streams_total', 'counter', both(server?.counters.streams, client?.counters.streams));
  metric('sluice_tunnel_refused_total', 'counter', server ? [['stage="handshake"', server.counters.refusedHandshakes], ['stage="stream"', server.counters.refusedStreams]] : []);
  metric('sluice_tunnel_open_failures_total', 'counter', Object.entries(client?.counters.failures ?? {}).sort().map(([code, n]) => [`code="${code}"`, n]));
  return out.length ? `${out.join('\n')}\n` : '';
}
