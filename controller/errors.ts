// The controller's error type: every error it raises carries a stable `code` (SLUICE_ERR_*) that
// callers and status conditions match on, and a message that says what is wrong and what to do.

export const ControllerErrorCodes = {
  // Module sources (controller/source/): fetching, verifying and caching filter modules.
  SLUICE_ERR_SOURCE_NOT_FOUND: 'the module could not be found at its source',
  SLUICE_ERR_SOURCE_AUTH: 'the registry refused the credentials (or asked for some and got none)',
  SLUICE_ERR_SOURCE_DIGEST: 'the fetched module does not have the sha256 the WasmFilter names',
  SLUICE_ERR_SOURCE_FETCH: 'the module could not be fetched (network, registry or server error)',
  SLUICE_ERR_SOURCE_FORMAT: 'the artifact is not a Wasm module in a layout Sluice accepts',
  SLUICE_ERR_SOURCE_URL: 'the source URL is not one Sluice can fetch from',
  SLUICE_ERR_SOURCE_CACHE: 'the module cache folder cannot be written',
  SLUICE_ERR_SOURCE_PUSH: 'the registry refused the pushed artifact',
  // The reconciler (controller/reconcile/).
  SLUICE_ERR_FILTER_INVALID: 'the WasmFilter is invalid',
  SLUICE_ERR_FILTER_VALIDATION: 'the module failed validation in Sluice\'s host',
  SLUICE_ERR_FILTER_NOT_WASM: 'the module is not a WebAssembly binary',
  SLUICE_ERR_FILTER_NOT_PROXY_WASM: 'the module is WebAssembly but not a proxy-wasm filter',
  SLUICE_ERR_FILTER_START: 'the filter failed to start (proxy_on_vm_start) in Sluice\'s host',
  SLUICE_ERR_FILTER_CONFIG_REFUSED: 'the filter refused its pluginConfig (proxy_on_configure returned false)',
  SLUICE_ERR_FILTER_CONFIGMAP: 'the ConfigMap named by spec.configMap, or its key, does not exist',
  SLUICE_ERR_FILTER_PULL_SECRET: 'the imagePullSecret does not exist or holds no credentials for the registry',
  // The controller process (controller/controller.ts, `sluice controller`).
  SLUICE_ERR_KUBECONFIG: 'no usable Kubernetes client configuration',
  SLUICE_ERR_CONTROLLER_FLAGS: 'a flag of `sluice controller` is invalid',
  // The workload CA (controller/ca/).
  SLUICE_ERR_CA_SECRET: 'the CA Secret (sluice-ca, or the one --ca-secret names) is missing, incomplete or not a usable CA',
} as const;
export type ControllerErrorCode = keyof typeof ControllerErrorCodes;

export class ControllerError extends Error {
  readonly code: ControllerErrorCode;
  constructor(code: ControllerErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ControllerErrorCodes[code], options);
    this.name = 'ControllerError';
    this.code = code;
  }
}
