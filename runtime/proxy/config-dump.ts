// What /config_dump shows: the active snapshot with whatever can carry a secret left out (rules
// below, documented in docs/proxy.md), except at the places the operator listed in
// `admin.configDump.show`, which are shown as configured.

import type { Snapshot } from '../config/snapshot.ts';

export { DUMP_SECTIONS, showPathProblem } from '../config/dump-paths.ts';

export const REDACTED = '[redacted]';

const SECRET_NAME = /secret|passw(or)?d|token|api[-_]?key|private[-_]?key|credential|authorization|cookie/i;
/** A value that is an HTTP credential whatever its member is called (`Bearer eyJ…`). */
const AUTH_SCHEME = /^\s*(bearer|basic|digest|negotiate|token|apikey|aws4-hmac-sha256|hoba|mutual|vapid|scram-sha-\d+)\s+\S/i;
/** `scheme://userinfo@`: credentials in a URL (http, postgres, redis, amqp, ...), anywhere in a string. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@]+)@/gi;
const HAS_USERINFO = new RegExp(URL_USERINFO.source, 'i');
/** Members of an object that names a header (`name`/`header`) whose values are header values. */
const HEADER_VALUE_MEMBERS = new Set(['value', 'values']);
/** Members of a header matcher (an entry of a `headers` or `query` list) that hold the value matched. */
const MATCH_VALUE_MEMBERS = new Set(['value', 'values', 'exact', 'regex', 'prefix', 'suffix', 'contains']);

/** One step of a place in the dump, and the names it answers to in a show path (a key; a list entry's index and `name`). */
type Place = readonly (readonly string[])[];

export function redactedSnapshot(snapshot: Snapshot): Snapshot {
  return new Redactor(snapshot.admin.configDump?.show ?? []).snapshot(snapshot);
}

class Redactor {
  private readonly show: readonly (readonly string[])[];

  constructor(show: readonly string[]) {
    this.show = show.map((path) => path.split('.'));
  }

  snapshot(snapshot: Snapshot): Snapshot {
    const { filters, ...rest } = snapshot;
    const out = this.walk(rest, [], 'snapshot') as Omit<Snapshot, 'filters'>;
    return {
      ...out,
      filters: filters.map((f, i) => {
        const place: Place = [['filters'], [String(i), f.name]];
        const { configuration, ...fields } = f;
        return { ...(this.walk(fields, place, 'snapshot') as typeof fields), configuration: this.configuration(configuration, [...place, ['configuration']]) };
      }),
    };
  }

  /** True when the operator asked to see `place` (or a place that holds it) as configured. */
  private shown(place: Place): boolean {
    return this.show.some((path) => path.length <= place.length && path.every((step, i) => step === '*' || place[i]!.includes(step)));
  }

  private configuration(text: string, place: Place): string {
    if (text === '' || this.shown(place)) return text;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // Not JSON: no telling what it holds.
      return `${REDACTED} (${Buffer.byteLength(text)} bytes, not JSON)`;
    }
    return JSON.stringify(this.walk(value, place, 'filter'));
  }

  private walk(value: unknown, place: Place, where: 'snapshot' | 'filter', holds?: Set<string>): unknown {
    if (this.shown(place)) return value;
    if (typeof value === 'string') return this.string(value, where);
    if (value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) {
      const matchers = place.length > 0 && ['headers', 'query'].includes(place[place.length - 1]![0]!);
      return value.map((entry, i) => {
        const name = (entry as { name?: unknown } | null)?.name;
        return this.walk(entry, [...place, typeof name === 'string' ? [String(i), name] : [String(i)]], where, matchers ? MATCH_VALUE_MEMBERS : undefined);
      });
    }
    const object = value as Record<string, unknown>;
    const namesHeader = typeof object.name === 'string' || typeof object.header === 'string';
    // A map of headers (a route's directResponse headers; a `headers` mapping in a filter configuration): each text value is a header value.
    const headerMap = place.length >= 2 && place[place.length - 1]![0] === 'headers' && (where === 'filter' || place[place.length - 2]![0] === 'action');
    const out: Record<string, unknown> = {};
    for (const [key, member] of Object.entries(object)) {
      const here = [...place, [key]];
      if (this.shown(here)) out[key] = member;
      else if (SECRET_NAME.test(key) || (headerMap && typeof member === 'string') || holds?.has(key) || (where === 'filter' && namesHeader && HEADER_VALUE_MEMBERS.has(key))) out[key] = REDACTED;
      else out[key] = this.walk(member, here, where);
    }
    return out;
  }

  private string(text: string, where: 'snapshot' | 'filter'): string {
    if (where === 'filter' && AUTH_SCHEME.test(text)) return REDACTED;
    if (!HAS_USERINFO.test(text)) return text;
    // A string that is one URL keeps its form, with a note; credentials inside longer text are replaced in place.
    try {
      const url = new URL(text);
      if ((url.username || url.password) && url.href === text) {
        url.username = '';
        url.password = '';
        if (!url.username && !url.password) return `${url.toString()} (credentials ${REDACTED})`;
      }
    } catch {
      // not one URL: replaced below
    }
    return text.replace(URL_USERINFO, `$1${REDACTED}@`);
  }
}
