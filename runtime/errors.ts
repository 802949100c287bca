// Sluice's error type: every error the runtime raises carries a stable `code` (SLUICE_ERR_*)
// that callers match on, and a message that says what is wrong and what to check.

export const ErrorCodes = {
  SLUICE_ERR_MODULE_INVALID: 'the bytes are not a WebAssembly module Sluice can run',
  SLUICE_ERR_MODULE_LINK: 'the module needs an import Sluice cannot provide',
  SLUICE_ERR_ABI_UNSUPPORTED: 'the module exports no proxy-wasm ABI version marker Sluice supports',
  SLUICE_ERR_ABI_MISSING_EXPORT: 'the module lacks an export every proxy-wasm module needs',
  SLUICE_ERR_PLUGIN_START: 'the plugin failed while starting (instantiate, _initialize, proxy_on_vm_start)',
  SLUICE_ERR_PLUGIN_CONFIGURE: 'the plugin rejected its configuration (proxy_on_configure returned false)',
  SLUICE_ERR_PLUGIN_CONFIG: 'the plugin definition is invalid',
  SLUICE_ERR_STREAM_STATE: 'a stream phase was driven out of order',
  SLUICE_ERR_HARNESS: 'the test harness was used in a way it does not support',
  SLUICE_ERR_CONFIG: 'the configuration is invalid',
  SLUICE_ERR_CAPTURE_UNAVAILABLE: 'traffic capture cannot run on this machine (no addon, not Linux, not root)',
  SLUICE_ERR_CAPTURE_REQUEST: 'the CNI plugin sent the node proxy a request it cannot act on',
  SLUICE_ERR_CAPTURE_NETNS: 'the pod network namespace cannot be entered or has no listener',
  SLUICE_ERR_CAPTURE_NFT: 'installing or removing the pod redirect rules (nft) failed',
  SLUICE_ERR_CAPTURE_RULES_MISMATCH: 'the pod redirect rules are missing or not as installed',
  SLUICE_ERR_CNI_INSTALL: 'sluice cni install/uninstall could not set up the node',
  SLUICE_ERR_AGENT: 'node mode (`sluice run --controller`) was given settings it cannot run with',
  SLUICE_ERR_TUNNEL_LISTEN: 'the node-to-node tunnel cannot listen on its address',
  SLUICE_ERR_TUNNEL_IDENTITY: 'no workload certificate (or trust bundle) to open a tunnel with',
  SLUICE_ERR_TUNNEL_CONNECT: 'no mTLS session to the peer node could be established',
  SLUICE_ERR_TUNNEL_REFUSED: 'the peer node refused or reset the tunneled connection',
  SLUICE_ERR_PROXY_LAYER: 'a layer of the request path is not a function of the next handler',
  SLUICE_ERR_UPSTREAM_CONNECT: 'no connection to the upstream endpoint could be made',
  SLUICE_ERR_UPSTREAM_TIMEOUT: 'the upstream did not answer in time',
  SLUICE_ERR_UPSTREAM_RESET: 'the upstream connection or stream was reset before the response',
  SLUICE_ERR_UPSTREAM_PROTOCOL: 'the upstream answered with something that is not valid HTTP',
  SLUICE_ERR_UPSTREAM_FAILED: 'the upstream request failed for another reason',
} as const;
export type ErrorCode = keyof typeof ErrorCodes;

export class SluiceError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code], options);
    this.name = 'SluiceError';
    this.code = code;
  }
}
