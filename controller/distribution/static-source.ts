// A NodeConfigSource holding a config per node, set by hand: tests, and a controller without
// discovery (nodes with no config get nothing until one is set).

import type { NodeConfig, NodeConfigSource } from './types.ts';

export class StaticNodeConfigSource implements NodeConfigSource {
  private readonly configs = new Map<string, NodeConfig>();
  private readonly watchers = new Map<string, Set<(config: NodeConfig) => void>>();

  /** Sets the config of `nodeName` and tells its watchers. */
  set(nodeName: string, config: NodeConfig): void {
    this.configs.set(nodeName, config);
    for (const w of this.watchers.get(nodeName) ?? []) w(config);
  }

  watch(nodeName: string, onChange: (config: NodeConfig) => void): () => void {
    let set = this.watchers.get(nodeName);
    if (!set) this.watchers.set(nodeName, (set = new Set()));
    set.add(onChange);
    const now = this.configs.get(nodeName);
    if (now) onChange(now);
    return () => {
      set.delete(onChange);
      if (set.size === 0) this.watchers.delete(nodeName);
    };
  }

  /** Watchers of `nodeName` (tests: is a stream subscribed). */
  watching(nodeName: string): number {
    return this.watchers.get(nodeName)?.size ?? 0;
  }
}
