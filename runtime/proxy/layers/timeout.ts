// The exchange's stop signal: one AbortController that the route timeout (or a filter's
// sluice.timeout_ms), a client that went away, or an interrupted request body aborts, and every
// upstream try listens to.

import { StopSignal } from '../stop-signal.ts';
import { RouteTimeout } from '../upstream-errors.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';

export const timeout: Layer<Exchange> = (next) =>
  async function timeout(x) {
    const abort = (x.abort = new StopSignal());
    // The client may have gone while the request filters ran (a reset right after the headers).
    if (x.clientGone) throw new Error('aborted');
    x.cancel = () => abort.abort(new Error('the client went away'));
    // A filter may set this request's timeout (sluice.timeout_ms, decimal milliseconds; 0: none).
    const override = x.stream.state.property('sluice\u0000timeout_ms');
    const ms = override !== undefined && /^\d{1,10}$/.test(override) ? Number(override) : x.routeConfig!.timeoutMs;
    if (override !== undefined) x.deadline?.route(ms, 'sluice.timeout_ms, set by a filter');
    x.deadline?.onUpstream(() => abort.abort(new RouteTimeout(ms)));
    try {
      await next(x);
    } finally {
      x.deadline?.onUpstream(undefined);
    }
  };
