// Rapid-reset protection for HTTP/2 clients (CVE-2023-44487): a connection whose client keeps
// opening streams and resetting them at once makes the proxy start work (filters, an upstream
// request) it never gets to finish. Like Envoy's premature-reset check, a connection where more
// than half of the streams were reset by the client soon after they opened, once there are
// enough of them to tell, gets GOAWAY ENHANCE_YOUR_CALM and is closed.

import http2, { type Http2Session, type ServerHttp2Stream } from 'node:http2';

export const RAPID_RESET = {
  /** A stream the client resets before it is this old (ms) is reset prematurely. */
  minStreamLifetimeMs: 1000,
  /** The check applies once a connection has had this many premature resets. */
  minPrematureResets: 100,
} as const;

/** Streams the proxy reset itself: those do not count against the client. */
const resetByProxy = new WeakSet<object>();

export function markResetByProxy(stream: object): void {
  resetByProxy.add(stream);
}

/** Watches a server session's streams and closes the session when its client resets them in a loop; `log` is told when it does. */
export function guardRapidResets(session: Http2Session, peer: string, log: (msg: string) => void): void {
  let streams = 0;
  let premature = 0;
  session.on('stream', (stream: ServerHttp2Stream) => {
    streams++;
    const opened = performance.now();
    // `aborted`: the stream closed before its response ended (also when the proxy reset it, or
    // the whole connection went away; neither is the client's reset of this stream). A reset
    // that came with the HEADERS may have closed the stream before this listener ran: 'close'
    // still follows, 'aborted' may not.
    stream.once('close', () => {
      if (!stream.aborted || session.destroyed || resetByProxy.has(stream) || performance.now() - opened >= RAPID_RESET.minStreamLifetimeMs) return;
      premature++;
      if (premature < RAPID_RESET.minPrematureResets || premature * 2 <= streams) return;
      log(`HTTP/2 client ${peer} reset ${premature} of its ${streams} streams within ${RAPID_RESET.minStreamLifetimeMs} ms of opening them (rapid reset); closing the connection with GOAWAY ENHANCE_YOUR_CALM`);
      // The session's 'error' that follows is ignored by its owner (downstream.ts).
      session.destroy(new Error('rapid reset'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    });
  });
}
