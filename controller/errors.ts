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
