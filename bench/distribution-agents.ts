// A child process of the distribution bench: holds one gRPC stream per simulated node agent, each
// on its own connection, speaking the real protocol (runtime/agent/protocol.ts): hello with the
// node's bound token, modules remembered by digest, every snapshot parsed and ACKed at once. The
// parent gets one message per ACK (node, version, CLOCK_MONOTONIC ms, shared across processes).

import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { distributionProtocol, MAX_MESSAGE_BYTES, type AgentMessage, type ControllerMessage } from '../runtime/agent/protocol.ts';

export interface AgentsStart {
  address: string;
  agents: Array<{ node: string; token: string }>;
  /** Digests every agent says it has (a reconnect after a controller restart). */
  haveModules?: string[];
}

export type AgentsReport =
  /** `opened`: when this agent's stream was opened (its hello written). */
  | { type: 'ack'; node: string; version: string; at: number; opened: number; modules: number }
  | { type: 'ended'; node: string; code: number; details: string };

const now = (): number => Number(process.hrtime.bigint()) / 1e6;
const send = (m: AgentsReport | { type: 'closed' }) => process.send!(m);

const streams: Array<{ client: { close(): void }; stream: ClientDuplexStream<AgentMessage, ControllerMessage> }> = [];
let closing = false;

function open(address: string, node: string, token: string, haveModules: string[]): void {
  const { client: Client } = distributionProtocol();
  // A local subchannel pool: one TCP connection per agent, as separate nodes have.
  const client = new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.use_local_subchannel_pool': 1 });
  const stream = client.Stream(new Metadata()) as ClientDuplexStream<AgentMessage, ControllerMessage>;
  const have = new Set<string>();
  const opened = now();
  stream.on('data', (m: ControllerMessage) => {
    if (m.module) {
      have.add(m.module.sha256);
      return;
    }
    if (!m.snapshot) return;
    const { version, nonce, config } = m.snapshot;
    JSON.parse(config); // what an agent does first with a snapshot
    stream.write({ ack: { version, nonce } });
    send({ type: 'ack', node, version, at: now(), opened, modules: have.size });
  });
  stream.on('error', (e: ServiceError) => {
    if (!closing) send({ type: 'ended', node, code: e.code, details: e.details });
  });
  stream.write({ hello: { nodeName: node, token, haveModules, lastVersion: '' } });
  streams.push({ client, stream });
}

process.on('message', (m: AgentsStart | { type: 'close' }) => {
  if ('type' in m) {
    closing = true;
    for (const s of streams) {
      s.stream.cancel();
      s.client.close();
    }
    send({ type: 'closed' });
    setTimeout(() => process.exit(0), 100);
    return;
  }
  for (const a of m.agents) open(m.address, a.node, a.token, m.haveModules ?? []);
});
