// controller/distribution/types.ts (owned by the agent helper; the discovery helper implements NodeConfigSource)
export interface NodeConfig {
  /** Changes whenever anything in the config or the module set changes (e.g. a hash of both). */
  version: string;
  /** The node proxy's configuration as JSON text (runtime/config schema); filters' `module` = `<sha256hex>.wasm`. */
  config: string;
  /** sha256 hex -> module bytes, for every module the config names. */
  modules: ReadonlyMap<string, Uint8Array>;
}
export interface NodeConfigSource {
  /** Calls `onChange` with the node's current config now (once known) and at every change; returns an unsubscribe. */
  watch(nodeName: string, onChange: (config: NodeConfig) => void): () => void;
}
