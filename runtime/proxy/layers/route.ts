// Routing, after the request-header filters ran (Envoy's clear-route-cache behaviour): the route a
// filter named (sluice.route) or the one the headers match now; no route is a 404, and direct
// responses and redirects are answered here. Sets the route's timeout on the stream's deadline.

import { HeaderMap } from '../../host/header-map.ts';
import { EMPTY } from '../../host/stream.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { plainReply } from './local-reply.ts';
import { respond } from './relay.ts';

export const route: Layer<Exchange> = (next) =>
  async function route(x) {
    const { state, stream } = x;
    const headers = x.headers!;
    const named = stream.state.property('sluice\u0000route');
    const found = named !== undefined ? state.router.named(named) : state.router.route(headers);
    if (!found) return respond(x, plainReply(404, `sluice: no route matches ${headers.get(':method')} ${headers.get(':path')} on listener "${state.config.name}"\n`));
    x.route = found.name;
    x.routeConfig = found;
    x.deadline?.route(found.timeoutMs, `timeoutMs of route "${found.name}"`);
    // Known from here on, for the response filters of direct responses and redirects too.
    stream.state.info.routeName = found.name;
    const action = found.action;
    if (action.kind === 'direct') {
      return respond(x, { status: action.status, headers: new HeaderMap([[':status', String(action.status)], ...Object.entries(action.headers)]), body: Buffer.from(action.body), details: 'direct_response', filter: '' });
    }
    if (action.kind === 'redirect') {
      return respond(x, { status: action.status, headers: new HeaderMap([[':status', String(action.status)], ['location', action.location]]), body: EMPTY, details: 'redirect', filter: '' });
    }
    x.action = action;
    return next(x);
  };
