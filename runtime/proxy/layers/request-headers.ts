// The request head into the filters: the client's headers as one HeaderMap (with forwarding and
// trace context added), whether a body follows, and the request-header filters run on it.

import type { Http2ServerRequest } from 'node:http2';
import { spanFor, traceparentOf } from '../trace-context.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { requestHeaders } from './headers.ts';
import { finish } from './local-reply.ts';

export const requestHeaderFilters: Layer<Exchange> = (next) =>
  async function requestHeaderFilters(x) {
    const { req, stream, state } = x;
    const headers = (x.headers = requestHeaders(req, x.connection.tls));
    x.grpc = headers.get('content-type')?.startsWith('application/grpc') ?? false;
    x.span = spanFor(headers.get('traceparent'));
    headers.set('traceparent', traceparentOf(x.span));
    const h2 = (req as Http2ServerRequest).stream;
    x.hasBody = h2
      ? !h2.endAfterHeaders
      : req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    const done = stream.requestHeaders(headers, !x.hasBody);
    if (done instanceof Promise) {
      // A filter holds the request headers: until it lets go, the deadline is the timeout of the
      // route the request matches as it is now.
      const likely = state.router.route(headers);
      if (likely) x.deadline?.route(likely.timeoutMs, `timeoutMs of route "${likely.name}"`);
    }
    if (finish(await done, x.res, x)) return;
    return next(x);
  };
