// Who may open a distribution stream: the projected ServiceAccount token of the node agent's
// ServiceAccount, with audience `sluice`, bound to a Pod scheduled on the node it claims. Checked
// with a TokenReview (the API server verifies signature, expiry and that the bound Pod still exists).

import { status as GrpcStatus } from '@grpc/grpc-js';
import type { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';

export const AGENT_AUDIENCE = 'sluice';

export class AgentAuthError extends Error {
  constructor(readonly grpcCode: GrpcStatus, message: string) {
    super(message);
    this.name = 'AgentAuthError';
  }
}

export interface AgentIdentity {
  nodeName: string;
  podNamespace: string;
  podName: string;
}

export interface AgentAuthOptions {
  auth: AuthenticationV1Api;
  core: CoreV1Api;
  /** `namespace/name` of the node agent's ServiceAccount. */
  serviceAccount: string;
}

const first = (extra: Record<string, string[]> | undefined, key: string): string | undefined => extra?.[key]?.[0];

export async function authenticateAgent(o: AgentAuthOptions, token: string, nodeName: string): Promise<AgentIdentity> {
  if (!token) throw new AgentAuthError(GrpcStatus.UNAUTHENTICATED, 'no token in hello: mount a projected ServiceAccount token with audience "sluice" and pass it with --token-file');
  if (!nodeName) throw new AgentAuthError(GrpcStatus.INVALID_ARGUMENT, 'no node_name in hello: pass --node-name or set NODE_NAME');
  const review = await o.auth.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [AGENT_AUDIENCE] } } });
  const s = review.status;
  if (!s?.authenticated) {
    throw new AgentAuthError(GrpcStatus.UNAUTHENTICATED, `token refused by the API server${s?.error ? ` (${s.error})` : ''}: it must be a valid, unexpired ServiceAccount token with audience "${AGENT_AUDIENCE}"`);
  }
  if (!(s.audiences ?? []).includes(AGENT_AUDIENCE)) throw new AgentAuthError(GrpcStatus.UNAUTHENTICATED, `token is not for audience "${AGENT_AUDIENCE}"`);
  const [ns, name] = o.serviceAccount.split('/');
  const want = `system:serviceaccount:${ns}:${name}`;
  if (s.user?.username !== want) {
    throw new AgentAuthError(GrpcStatus.PERMISSION_DENIED, `token of ${s.user?.username ?? 'an unknown user'} is not the node agent's ServiceAccount ${o.serviceAccount}`);
  }
  const extra = s.user.extra as Record<string, string[]> | undefined;
  const podName = first(extra, 'authentication.kubernetes.io/pod-name');
  const podUid = first(extra, 'authentication.kubernetes.io/pod-uid');
  if (!podName) throw new AgentAuthError(GrpcStatus.PERMISSION_DENIED, 'token is not bound to a Pod: use a projected ServiceAccount token (serviceAccountToken volume), not a long-lived one');
  let tokenNode = first(extra, 'authentication.kubernetes.io/node-name');
  if (!tokenNode) {
    // Before 1.32 (or with ServiceAccountTokenPodNodeInfo off) the token does not say the node: read the Pod.
    const pod = await o.core.readNamespacedPod({ namespace: ns!, name: podName });
    if (podUid && pod.metadata?.uid !== podUid) throw new AgentAuthError(GrpcStatus.PERMISSION_DENIED, `the Pod ${ns}/${podName} the token is bound to no longer exists`);
    tokenNode = pod.spec?.nodeName;
  }
  if (tokenNode !== nodeName) {
    throw new AgentAuthError(GrpcStatus.PERMISSION_DENIED, `token is bound to Pod ${ns}/${podName} on node ${tokenNode ?? '(not scheduled)'}, not on node ${nodeName}`);
  }
  return { nodeName, podNamespace: ns!, podName };
}
