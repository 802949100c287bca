// Kubernetes Events (events.k8s.io/v1) about a WasmFilter, as `kubectl describe` and
// `kubectl events` show them.

import { randomBytes } from 'node:crypto';
import type { EventsV1Api } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

export interface Regarding {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
}

export const REPORTING_CONTROLLER = 'sluice.dev/controller';

export class EventRecorder {
  constructor(
    private readonly api: EventsV1Api,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly counted: (reason: string) => void = () => {},
  ) {}

  /** Emits an Event; a failure is logged, never thrown (events are best effort, as in client-go). */
  async emit(regarding: Regarding, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void> {
    const micro = new Date().toISOString().replace(/Z$/, '000Z');
    try {
      await this.api.createNamespacedEvent({
        namespace: regarding.namespace,
        body: {
          // client-go's naming: the object's name, a dot, a unique hex suffix (generateName would
          // end in the dot, which names may not).
          metadata: { name: `${regarding.name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`, namespace: regarding.namespace },
          eventTime: micro as unknown as Date,
          reportingController: REPORTING_CONTROLLER,
          reportingInstance: this.instance,
          action,
          reason,
          type,
          note: Buffer.byteLength(note) > 1024 ? `${Buffer.from(note).subarray(0, 1000).toString('utf8')}...` : note,
          regarding,
        },
      });
      this.counted(reason);
    } catch (error) {
      this.log.warn('could not emit an event', { reason, regarding: `${regarding.namespace}/${regarding.name}`, error: apiErrorText(error) });
    }
  }
}

/** "HTTP-Code: 422 ..." from client-node, with the API server's own message. */
export function apiErrorText(error: unknown): string {
  const e = error as Error & { body?: unknown };
  let detail = '';
  if (typeof e.body === 'string') {
    try {
      detail = (JSON.parse(e.body) as { message?: string }).message ?? e.body;
    } catch {
      detail = e.body;
    }
  } else if (e.body && typeof e.body === 'object') detail = (e.body as { message?: string }).message ?? '';
  return `${String(e.message).split('\n')[0]}${detail ? `: ${detail}` : ''}`;
}
