// The HTTP request path, in request order: each layer is its own module (docs/proxy.md, "Code
// map"). Composed once per listener; compose() refuses a malformed layer when it is built.

import { cluster } from './cluster.ts';
import { compose, type Handler, type NamedLayer } from './compose.ts';
import type { Exchange } from './context.ts';
import { settle } from './settle.ts';
import { relay } from './relay.ts';
import { requestBody } from './request-body.ts';
import { requestHeaderFilters } from './request-headers.ts';
import { retry } from './retry.ts';
import { route } from './route.ts';
import { timeout } from './timeout.ts';
import { upstreamTry } from './upstream-try.ts';

export const REQUEST_PATH: readonly NamedLayer<Exchange>[] = [
  { name: 'settle', layer: settle },
  { name: 'request-headers', layer: requestHeaderFilters },
  { name: 'route', layer: route },
  { name: 'cluster', layer: cluster },
  { name: 'timeout', layer: timeout },
  { name: 'request-body', layer: requestBody },
  { name: 'retry', layer: retry },
  { name: 'upstream-try', layer: upstreamTry },
];

/** The request path: the layers above around the relay of the response. */
export function buildRequestPath(): Handler<Exchange> {
  return compose(REQUEST_PATH, relay);
}
