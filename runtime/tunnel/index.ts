// The node-to-node tunnel (docs/capture.md#the-node-to-node-tunnel): HTTP/2 CONNECT over mTLS 1.3
// on 15008, carrying pods' connections between nodes with their workloads' identities.

export { TunnelServer, TUNNEL_PORT, TUNNEL_LIMITS, TUNNEL_ERROR_HEADER, type TunnelLimits, type TunnelRequest, type TunnelServerOptions, type TunnelCounters } from './tunnel-server.ts';
export { TunnelClient, type TunnelClientOptions, type TunnelDestination, type TunnelClientCounters } from './tunnel-client.ts';
export { tunnelMetrics } from './tunnel-metrics.ts';
export { authorityOf, parseAuthority, serverNameFor, spiffeIds, uriSans, type TunnelTarget } from './peer-identity.ts';
export { streamSocket, tunnelSocket, type StreamSocketFacts } from './stream-socket.ts';
