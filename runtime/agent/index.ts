// Node mode: the agent that feeds the node proxy from the controller, and the distribution
// protocol it shares with the controller's server (docs/proxy.md#node-mode).

export { NodeAgent, AGENT_DEFAULTS, type NodeAgentOptions } from './agent.ts';
export { ModuleCache, atomicWrite } from './module-cache.ts';
export { distributionProtocol, MAX_MESSAGE_BYTES } from './protocol.ts';
export type { AgentMessage, ControllerMessage, HelloMessage, AckMessage, NackMessage, ModuleMessage, SnapshotMessage, CertificateRequestMessage, CertificateResponseMessage, TrustBundleMessage, HealthMessage } from './protocol.ts';
