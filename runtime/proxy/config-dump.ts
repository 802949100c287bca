// What /config_dump shows: the active snapshot with secrets left out. Filter configurations are
// walked as JSON and the values of members whose names say they are secret (password, token,
// apiKey, ...) are replaced; a configuration that is not JSON is not shown at all, since there is
// no telling what it holds. Credentials in URLs (user:password@) are removed.

import type { Snapshot } from '../config/snapshot.ts';

export const REDACTED = '[redacted]';

const SECRET_NAME = /secret|passw(or)?d|token|api[-_]?key|private[-_]?key|credential|authorization|cookie/i;

export function redactedSnapshot(snapshot: Snapshot): Snapshot {
  return {
    ...snapshot,
    filters: snapshot.filters.map((f) => ({ ...f, configuration: redactConfiguration(f.configuration) })),
    ...(snapshot.tracing ? { tracing: { otlp: { ...snapshot.tracing.otlp, endpoint: withoutCredentials(snapshot.tracing.otlp.endpoint) } } } : {}),
  };
}

function redactConfiguration(text: string): string {
  if (text === '') return text;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `${REDACTED} (${Buffer.byteLength(text)} bytes, not JSON)`;
  }
  return JSON.stringify(redactValue(value));
}

function redactValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactValue);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  // A secret-named member is hidden whole, unless it is an object: then its own members are judged.
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME.test(k) && (typeof v !== 'object' || v === null || Array.isArray(v)) ? REDACTED : redactValue(v);
  return out;
}

function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return `${u.toString()} (credentials ${REDACTED})`;
  } catch {
    return url;
  }
}
