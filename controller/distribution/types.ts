// What the controller distributes to a node: its proxy configuration and the modules it names
// (the contract with discovery, which implements NodeConfigSource).

export interface NodeConfig {
  /** Changes whenever anything in the config or the module set changes (e.g. a hash of both). */
  version: string;
  /** The node proxy's configuration as JSON text (runtime/config schema); filters' `module` = `<sha256hex>.wasm`. */
  config: string;
  /** sha256 hex -> module bytes, for every module the config names. */
  modules: ReadonlyMap<string, Uint8Array>;
  /** The WasmFilters in the config: their name in it, `namespace/name`, and the filter version (status reports per filter). */
  filters?: readonly FilterVersion[];
}

/** A WasmFilter as a node config holds it. */
export interface FilterVersion {
  /** The filter's name in the node config. */
  name: string;
  /** `namespace/name` of the WasmFilter. */
  key: string;
  /** Its version: module digest and configuration (node-config.ts filterVersion). */
  version: string;
}

export interface NodeConfigSource {
  /** Calls `onChange` with the node's current config now (once known) and at every change; returns an unsubscribe. */
  watch(nodeName: string, onChange: (config: NodeConfig) => void): () => void;
}
