// The proxy-wasm host: plugins and their VMs, filter chains and streams, and the node-wide stores
// filters share. This is the surface the proxy and the SDK's test harness drive.

export { Plugin, type PluginStats, type PluginState } from './plugin.ts';
export { pluginSpec, type PluginOptions, type PluginSpec, type FailStrategy, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from './plugin-spec.ts';
export { FilterChain } from './filter-chain.ts';
export { HttpStream, type Outcome, type LocalReply } from './http-stream.ts';
export { HeaderMap, type HeaderInit } from './header-map.ts';
export { StreamState, type StreamInfo, type ConnectionInfo, type Address } from './stream.ts';
export { createEnvironment, type HostEnvironment, type HttpCallResponse, type LogEntry, type ForeignFunction, type NodeInfo } from './environment.ts';
export { MetricStore, type Metric, HISTOGRAM_BUCKETS } from './metrics.ts';
export { SharedData } from './shared-data.ts';
export { SharedQueues } from './shared-queues.ts';
export { Vm, type VmFailure } from './vm.ts';
