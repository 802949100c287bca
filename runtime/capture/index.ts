// Traffic capture: the node proxy's side of the CNI plugin (docs/capture.md).

export { captureUnavailable, loadAddon, type CaptureAddon } from './addon.ts';
export { CaptureServer, type CaptureTunnelOptions } from './cni-server.ts';
export { sniffedProtocol, SNIFF_MS } from './capture-http.ts';
export { INBOUND_PORT, OUTBOUND_PORT, PROXY_MARK, renderRules, renderTable, type Exclusions, type Family } from './nft-rules.ts';
export { listenerName, type Direction } from './pod-listeners.ts';
