// An asc transform (asconfig.json `transform`): a filter module exports only the proxy_on_*
// callbacks whose SDK method the filter overrides, so the host never calls a callback that would
// only run the SDK's do-nothing default. Envoy and Sluice treat a callback a module does not
// export as "continue" (cpp-host skips it), so the module runs the same in both, only cheaper.

/** proxy_on_* export → the SDK class (context.ts) and method a filter must override for it. */
export const CALLBACK_METHODS = Object.freeze({
  proxy_on_request_headers: ['HttpContext', 'onRequestHeaders'],
  proxy_on_request_body: ['HttpContext', 'onRequestBody'],
  proxy_on_request_trailers: ['HttpContext', 'onRequestTrailers'],
  proxy_on_response_headers: ['HttpContext', 'onResponseHeaders'],
  proxy_on_response_body: ['HttpContext', 'onResponseBody'],
  proxy_on_response_trailers: ['HttpContext', 'onResponseTrailers'],
  proxy_on_log: ['Context', 'onLog'],
  proxy_on_done: ['Context', 'onDone'],
  proxy_on_tick: ['RootContext', 'onTick'],
  proxy_on_queue_ready: ['RootContext', 'onQueueReady'],
  proxy_on_foreign_function: ['RootContext', 'onForeignFunction'],
});
// The other callbacks are always exported: the SDK itself needs them (proxy_on_context_create,
// proxy_on_delete, proxy_on_http_call_response for calls made with a callback), or they run only
// at start-up (proxy_on_vm_start, proxy_on_configure).

/** The SDK's own context classes, wherever asc placed the SDK (checkout path or ~lib/sluice/...). */
const SDK_CLASS = /(?:^|\/)sdk\/assembly\/context\/(Context|HttpContext|RootContext)$/;

export default class PruneCallbacks {
  afterCompile(module) {
    const classes = [...this.program.managedClasses.values()];
    const sdk = new Map();
    for (const c of classes) {
      const match = SDK_CLASS.exec(c.internalName);
      if (match) sdk.set(c, match[1]);
    }
    // A module built without the SDK (a raw ABI fixture) exports what it declares.
    if (sdk.size === 0) return;
    const overridden = new Set();
    for (const c of classes) {
      // The methods declared on the way from a compiled class up to the SDK class it extends.
      for (let k = c; k && !sdk.has(k); k = k.base) {
        const root = sdkBase(k, sdk);
        if (!root) break;
        for (const name of k.prototype.instanceMembers?.keys() ?? []) overridden.add(`${root}.${name}`);
      }
    }
    for (const [callback, [owner, method]] of Object.entries(CALLBACK_METHODS)) {
      if (!exports(module, this.binaryen, callback)) continue;
      // Context methods may be overridden in root or stream contexts.
      const owners = owner === 'Context' ? ['Context', 'HttpContext', 'RootContext'] : [owner];
      if (!owners.some((o) => overridden.has(`${o}.${method}`))) module.removeExport(callback);
    }
  }
}

/** The name of the nearest SDK class `c` extends, or undefined. */
function sdkBase(c, sdk) {
  for (let b = c.base; b; b = b.base) {
    const name = sdk.get(b);
    if (name) return name;
  }
  return undefined;
}

function exports(module, binaryen, name) {
  for (let i = 0, n = module.getNumExports(); i < n; i++) {
    if (binaryen.getExportInfo(module.getExportByIndex(i)).name === name) return true;
  }
  return false;
}
