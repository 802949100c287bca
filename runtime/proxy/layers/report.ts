// What a finished request leaves behind: its metrics, its access log line (with the fields
// filters added), its span, and the `sluice:proxy:request-end` event.

import type { HttpStream } from '../../host/http-stream.ts';
import type { Exchange } from './context.ts';
import { requestEnd } from './diagnostics.ts';

/** Reports the finished exchange, `ms` after it arrived. */
export function report(x: Exchange, ms: number): void {
  const { state, stream, req } = x;
  x.telemetry.request(state.config.name, x.grpc ? 'grpc' : req.httpVersion, x, ms, state.peers?.(x));
  state.accessLog?.write(accessLogEntry(x, ms), filterFields(stream));
  if (state.spans && x.span) state.spans.add(finishedSpan(x, ms));
  if (requestEnd.hasSubscribers) requestEnd.publish({ listener: state.config.name, request: req, status: x.status, route: x.route, cluster: x.cluster, errorCode: x.errorCode, durationMs: ms });
}

function finishedSpan(x: Exchange, ms: number) {
  const { state, stream, req } = x;
  const info = stream.state.info;
  const attributes: Record<string, string | number> = {
    'http.request.method': req.method ?? '',
    'url.path': (req.url ?? '').split('?')[0]!,
    'http.response.status_code': x.status,
    'network.protocol.version': req.httpVersion,
    'sluice.listener': state.config.name,
    'client.address': info.source?.address ?? '',
  };
  if (x.route) attributes['sluice.route'] = x.route;
  if (x.cluster) attributes['sluice.upstream_cluster'] = x.cluster;
  if (info.upstream) attributes['server.address'] = `${info.upstream.address}:${info.upstream.port}`;
  if (stream.state.responseCodeDetails) attributes['sluice.response_code_details'] = stream.state.responseCodeDetails;
  return { span: x.span!, name: `${req.method} ${x.route || 'no_route'}`, startMs: stream.state.startTime, durationMs: ms, attributes, error: x.status === 0 || x.status >= 500 };
}

/** Properties filters set under `sluice.access_log.<name>` (docs/properties.md), as access-log fields. */
const FILTER_FIELD = 'sluice\u0000access_log\u0000';
function* filterFields(stream: HttpStream): Generator<[string, string]> {
  for (const [key, value] of stream.state.properties) {
    if (key.startsWith(FILTER_FIELD)) yield [key.slice(FILTER_FIELD.length), Buffer.from(value).toString('utf8')];
  }
}

function accessLogEntry(x: Exchange, ms: number) {
  const { stream, req } = x;
  const peer = x.connection.source;
  const h = stream.state.requestHeaders;
  const upstream = stream.state.info.upstream;
  return {
    time: new Date(stream.state.startTime).toISOString(),
    method: req.method,
    path: req.url,
    authority: h?.get(':authority'),
    protocol: stream.state.info.protocol,
    status: x.status,
    response_code_details: stream.state.responseCodeDetails || undefined,
    duration_ms: Math.round(ms * 1000) / 1000,
    request_bytes: x.requestBytes,
    response_bytes: x.responseBytes,
    route: x.route || undefined,
    upstream_cluster: x.cluster || undefined,
    upstream_host: upstream ? `${upstream.address}:${upstream.port}` : undefined,
    request_id: h?.get('x-request-id'),
    trace_id: x.span?.traceId,
    span_id: x.span?.spanId,
    user_agent: req.headers['user-agent'],
    downstream_remote_address: `${peer.address}:${peer.port}`,
    x_forwarded_for: h?.get('x-forwarded-for'),
  };
}
