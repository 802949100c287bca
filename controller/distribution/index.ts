// Distribution of node configs and modules to the node agents over gRPC (docs/platform.md#distribution).

export { DistributionServer, type DistributionServerOptions, type NodeRecord, type WorkloadSigner } from './server.ts';
export { authenticateAgent, AgentAuthError, AGENT_AUDIENCE, type AgentIdentity, type AgentAuthOptions } from './agent-auth.ts';
export { StaticNodeConfigSource } from './static-source.ts';
export type { NodeConfig, NodeConfigSource } from './types.ts';
