// One try on one endpoint: the request head and body to the endpoint's pool, a per-try timeout,
// the exchange's stop signal passed on, the outcome recorded for outlier detection, and then
// either another try (retry.ts decides) or the relay of the answer or failure. The try stays open
// (its timeout armed, the endpoint counted active) until the relay is done.

import { withLength } from '../body-length.ts';
import type { RouteConfig } from '../../config/snapshot.ts';
import type { Outcome } from '../../host/http-stream.ts';
import { StopSignal } from '../stop-signal.ts';
import { TryTimeout } from '../upstream-errors.ts';
import { discard, type UpstreamResponse } from '../upstream-pool.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { upstreamHeaders } from './headers.ts';
import { finish } from './local-reply.ts';
import { retryPolicy, wantsRetry } from './retry.ts';

export const upstreamTry: Layer<Exchange> = (next) =>
  async function upstreamTry(x) {
    const { stream, pump } = x;
    const headers = x.headers!;
    const action = x.action!;
    const abort = x.abort!;
    const current = x.current!;
    const attempt = x.attempt;
    const policy = retryPolicy(x);
    stream.state.info.upstream = { address: current.endpoint.host, port: current.endpoint.port };
    const sent = x.holdLength ? withLength(upstreamHeaders(headers, action.hostRewrite), x.bodyLength) : upstreamHeaders(headers, action.hostRewrite);
    // The upstream sees which try this is (Envoy's x-envoy-attempt-count).
    sent.push('x-sluice-attempt-count', String(attempt));
    const tryStop = new StopSignal();
    // The exchange may have been stopped during a retry's backoff (the route timeout).
    if (abort.aborted) tryStop.abort(abort.reason);
    const onAbort = () => tryStop.abort(abort.reason);
    abort.addEventListener('abort', onAbort);
    const perTry = policy.perTryTimeoutMs > 0 ? setTimeout(() => tryStop.abort(new TryTimeout(policy.perTryTimeoutMs)), policy.perTryTimeoutMs) : undefined;
    current.active++;
    try {
      const upstream = current.pool.request({
        method: headers.get(':method') ?? 'GET',
        path: rewritePath(headers.get(':path') ?? '/', x.routeConfig!, action.prefixRewrite),
        headers: sent,
        body: attempt === 1 ? pump?.stream : pump?.replay(),
        signal: tryStop,
      });
      upstream.catch(() => {});
      if (pump && attempt === 1) {
        // The body streams while the response is awaited: bidirectional streams (gRPC) need
        // both at once. A filter answering during the body, or a client that breaks off or
        // sends a malformed body, ends the try: the upstream never gets a partial request.
        pump.done.then(
          (replied) => replied && abort.abort(new BodyInterrupted(replied)),
          (error: unknown) => abort.abort(new BodyInterrupted(undefined, error)),
        );
      }
      let answer: UpstreamResponse | undefined;
      let failure: unknown;
      try {
        answer = await upstream;
      } catch (error) {
        failure = error;
      }
      const interrupted = abort.reason instanceof BodyInterrupted ? abort.reason : undefined;
      if (interrupted) {
        if (answer) await discard(answer.body);
        if (interrupted.reply) return void finish(interrupted.reply, x.res, x);
        throw interrupted.error;
      }
      if (!abort.aborted) {
        x.upstreamCluster!.record(current, answer?.statusCode, failure);
        if (wantsRetry(x, answer?.statusCode, failure)) {
          x.again = true;
          if (answer) {
            const retryAfter = answer.headers['retry-after'];
            x.retryAfter = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
            await discard(answer.body);
          }
          return;
        }
      }
      if (answer) x.answer = answer;
      else x.failure = abort.reason ?? failure;
      await next(x);
    } finally {
      current.active--;
      if (perTry) clearTimeout(perTry);
      abort.removeEventListener('abort', onAbort);
    }
  };

/** Why a try ended while its request body was still streaming: a filter's answer, or the body's error. */
class BodyInterrupted extends Error {
  constructor(
    readonly reply: Outcome | undefined,
    readonly error?: unknown,
  ) {
    super('the request body was interrupted');
  }
}

function rewritePath(path: string, route: RouteConfig, prefixRewrite: string | undefined): string {
  const prefix = route.match.prefix;
  if (prefixRewrite === undefined || prefix === undefined || !path.startsWith(prefix)) return path;
  return prefixRewrite + path.slice(prefix.length);
}
