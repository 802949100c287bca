// W3C Trace Context: the proxy's span for a request. An incoming `traceparent` keeps its trace id
// and becomes the parent; without one (or with a malformed one) a new trace starts. The upstream
// sees the proxy's span as its parent.

import { randomHex } from './random-ids.ts';

export interface Span {
  traceId: string;
  spanId: string;
  parentId?: string;
  flags: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function spanFor(traceparent: string | undefined): Span {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  // One draw per request: 16 bytes of trace id (used when a new trace starts), 8 of span id.
  const ids = randomHex(24);
  const spanId = ids.slice(32);
  // All-zero ids are invalid (W3C): treat them like no header.
  if (m && !/^0+$/.test(m[1]) && !/^0+$/.test(m[2])) return { traceId: m[1], spanId, parentId: m[2], flags: m[3] };
  return { traceId: ids.slice(0, 32), spanId, flags: '01' };
}

export function traceparentOf(span: Span): string {
  return `00-${span.traceId}-${span.spanId}-${span.flags}`;
}
