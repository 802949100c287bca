// An ordered list of plugins that every stream of a listener runs through. Swapping the chain is
// how a new filter version takes effect: streams opened before keep the plugins they started with.

import type { HostEnvironment } from './environment.ts';
import { HttpStream } from './http-stream.ts';
import type { Plugin } from './plugin.ts';
import type { StreamInfo } from './stream.ts';

export class FilterChain {
  constructor(
    readonly plugins: readonly Plugin[],
    private readonly env: HostEnvironment,
  ) {}

  /** Opens a stream; its filter contexts are created at requestHeaders. */
  stream(info: StreamInfo = {}): HttpStream {
    return new HttpStream(this.plugins, info, this.env.now());
  }

  /**
   * The first unavailable plugin (no module to run) whose fail strategy refuses traffic, if any:
   * connections the filters cannot see (captured TCP) are closed rather than let through unfiltered.
   */
  refusingUnavailable(): Plugin | undefined {
    return this.plugins.find((p) => p.unavailable !== undefined && p.spec.failStrategy !== 'FAIL_OPEN');
  }
}
