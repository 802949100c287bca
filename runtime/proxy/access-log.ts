// The access log: one JSON line per request with the fields the listener's config names, written
// to stdout, stderr or appended to a file.

import { createWriteStream, type WriteStream } from 'node:fs';
import type { AccessLogConfig, AccessLogField } from '../config/snapshot.ts';
import { log } from '../log.ts';

export type AccessLogEntry = Partial<Record<AccessLogField, string | number>>;

export class AccessLog {
  private readonly out: NodeJS.WritableStream;
  private readonly file?: WriteStream;

  constructor(readonly config: AccessLogConfig) {
    if (config.path === 'stdout') this.out = process.stdout;
    else if (config.path === 'stderr') this.out = process.stderr;
    else this.out = this.file = createWriteStream(config.path, { flags: 'a' });
    this.file?.on('error', (error) => log('error', `access log ${config.path}: ${error.message}`));
  }

  /** `filterFields`: fields filters added (`sluice.access_log.<name>`), after the listener's, which win a clash. */
  write(entry: AccessLogEntry, filterFields?: Iterable<[string, string]>): void {
    const line: Record<string, string | number | null> = {};
    for (const f of this.config.fields) line[f] = entry[f] ?? null;
    if (filterFields) for (const [name, value] of filterFields) if (!(name in line)) line[name] = value;
    this.out.write(JSON.stringify(line) + '\n');
  }

  close(): void {
    this.file?.end();
  }
}
