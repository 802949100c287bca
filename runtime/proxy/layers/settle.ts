// The outermost layer: whatever the path leaves undone is settled here. A client gone is reset,
// a failure costs this request only (a 500, or a reset once headers went out), and the request is
// reported once (report.ts) however it ended.

import { log } from '../../log.ts';
import { resetResponse, UpstreamBodyFailed } from '../stream-reset.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';
import { plainReply, writeReply } from './local-reply.ts';
import { report } from './report.ts';

/** The outermost layer: settles what the path threw, and reports the request once it is over. */
export const settle: Layer<Exchange> = (next) =>
  async function settle(x) {
    const { req, res, stream } = x;
    try {
      await next(x);
    } catch (error) {
      // Past the deadline the stream was answered or reset; what failed after is a consequence.
      if (x.expired) return;
      if (x.clientGone || req.destroyed || (error as { code?: string })?.code === 'ECONNRESET' || (error as Error)?.message === 'aborted') {
        // The client is gone (or its request broke mid-body): nobody to answer.
        x.status = 0;
        return void resetResponse(res);
      }
      if (error instanceof UpstreamBodyFailed) {
        // The client has the headers and part of the body: only a reset tells it the rest is missing.
        stream.state.responseCodeDetails = 'upstream_reset_after_response_started';
        x.errorCode = 'SLUICE_ERR_UPSTREAM_RESET';
        log('warn', `${req.method} ${req.url}: ${error.message}; the response to the client was reset`);
        return void resetResponse(res);
      }
      // A bug here must cost one request, never the proxy.
      log('error', 'request failed', { error: String((error as Error)?.stack ?? error) });
      if (!res.headersSent) writeReply(res, plainReply(500, 'sluice: internal error\n'), x);
      else resetResponse(res);
    } finally {
      x.deadline!.stop();
      stream.end();
      if (x.expired) stream.state.responseCodeDetails = x.expired;
      report(x, performance.now() - x.started);
    }
  };

