// The upstream cluster and first endpoint: the cluster a filter picked (sluice.cluster) or the
// route's weighted pick, the endpoint a filter pinned (sluice.upstream_host) or load balancing's,
// and the cluster's circuit breakers; each refusal is a 503 naming what to check.

import { pickWeighted } from '../router.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { plainReply } from './local-reply.ts';
import { respond } from './relay.ts';

export const cluster: Layer<Exchange> = (next) =>
  async function cluster(x) {
    const { state, stream } = x;
    // A filter may pick the cluster (sluice.cluster), overriding the route's.
    const name = stream.state.property('sluice\u0000cluster') ?? pickWeighted(x.action!.clusters);
    x.cluster = name;
    const upstream = state.clusters.get(name);
    if (!upstream) return respond(x, plainReply(503, `sluice: no cluster named "${name}"\n`));
    const hashOn = upstream.config.hashOn;
    x.hashKey = hashOn ? x.headers!.get(hashOn.header) : undefined;
    // A filter may pin the endpoint (sluice.upstream_host); otherwise load balancing picks it.
    const pinned = stream.state.property('sluice\u0000upstream_host');
    x.pinned = pinned !== undefined;
    const host = pinned !== undefined ? upstream.hosts.find((h) => h.address === pinned) : upstream.pick(undefined, x.hashKey);
    if (!host && pinned !== undefined) return respond(x, plainReply(503, `sluice: a filter pinned the upstream host "${pinned}" (sluice.upstream_host), which is not an endpoint of cluster "${name}"\n`));
    if (!host) return respond(x, plainReply(503, `sluice: cluster "${name}" has no endpoints\n`));
    stream.state.info.clusterName = name;
    const open = upstream.circuitOpen();
    if (open) return respond(x, plainReply(503, `sluice: cluster "${name}" circuit breaker open: ${open}\n`));
    x.upstreamCluster = upstream;
    x.host = host;
    // In flight from here until the response is relayed (the maxRequests breaker and the retry budget count these).
    upstream.retryBudget.active++;
    try {
      await next(x);
    } finally {
      upstream.retryBudget.active--;
    }
  };
