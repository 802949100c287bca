// The distribution protocol (sluice-distribution.proto), loaded at run time with proto-loader, and
// the TypeScript shapes of its messages. Shared by the agent and the controller's server.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface HelloMessage {
  nodeName: string;
  token: string;
  haveModules: string[];
  lastVersion: string;
}
export interface AckMessage {
  version: string;
  nonce: string;
}
export interface NackMessage extends AckMessage {
  reason: string;
}
export interface CertificateRequestMessage {
  requestId: string;
  csr: string;
}
export interface HealthMessage {
  version: string;
  /** proto-loader gives uint64 as a decimal string (longs: String); numbers are accepted when sending. */
  filters: Array<{ name: string; failures: string | number }>;
}
export interface AgentMessage {
  hello?: HelloMessage;
  ack?: AckMessage;
  nack?: NackMessage;
  csr?: CertificateRequestMessage;
  health?: HealthMessage;
  kind?: 'hello' | 'ack' | 'nack' | 'csr' | 'health';
}
export interface ModuleMessage {
  sha256: string;
  bytes: Uint8Array;
}
export interface SnapshotMessage {
  version: string;
  nonce: string;
  config: string;
}
export interface TrustBundleMessage {
  roots: string;
}
export interface CertificateResponseMessage {
  requestId: string;
  /** Leaf first, PEM; '' when refused. */
  certChain: string;
  trustBundle: string;
  /** Why the CSR was refused; '' when signed. */
  refused: string;
}
export interface ControllerMessage {
  module?: ModuleMessage;
  snapshot?: SnapshotMessage;
  trustBundle?: TrustBundleMessage;
  certificate?: CertificateResponseMessage;
  kind?: 'module' | 'snapshot' | 'trustBundle' | 'certificate';
}

/** The agent's receive limit: a whole module travels in one message. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** The .proto sits next to this file in the source tree; compiled code (dist/runtime/agent/) reads the source tree's copy. */
function protoPath(): string {
  const here = fileURLToPath(new URL('./sluice-distribution.proto', import.meta.url));
  if (existsSync(here)) return here;
  return fileURLToPath(new URL('../../../runtime/agent/sluice-distribution.proto', import.meta.url));
}

let loaded: { client: ServiceClientConstructor; service: ServiceDefinition } | undefined;

export function distributionProtocol(): { client: ServiceClientConstructor; service: ServiceDefinition } {
  if (!loaded) {
    // keepCase false: fields in camelCase; oneofs: the set member's name in `kind`; bytes as Buffer.
    const definition = loadSync(protoPath(), { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
    const pkg = (loadPackageDefinition(definition).sluice as GrpcObject).v1 as GrpcObject;
    const client = pkg.Distribution as ServiceClientConstructor;
    loaded = { client, service: client.service };
  }
  return loaded;
}
