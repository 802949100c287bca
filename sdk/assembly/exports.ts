// The callbacks the host calls (`proxy_on_*`), exported from every filter module. Pass this file
// to asc as an entry next to the filter's assembly/index.ts; the filter itself exports nothing.
// Each callback finds the context by id and calls the author's override.

import "./abort";
import { proxy_set_effective_context } from "./abi";
import { Body } from "./body";
import { HttpContext } from "./context";
import { warnHostCall } from "./errors";
import { readHttpCallResponse, takePendingCall } from "./http-call";
import { log } from "./log";
import { allocateForHost } from "./memory";
import { context, createContext, deleteContext, hasContext, httpContext, rootContext } from "./registry";
import { BodyAction, BufferType, HeadersAction, Status, TrailersAction } from "./types";

const VM_CONFIGURATION = new Body(BufferType.VmConfiguration);
const PLUGIN_CONFIGURATION = new Body(BufferType.PluginConfiguration);
const FOREIGN_ARGUMENTS = new Body(BufferType.ForeignFunctionArguments);

/** Marks the module as built for proxy-wasm ABI 0.2.1. Never called. */
export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return allocateForHost(size);
}

export function proxy_on_context_create(contextId: u32, parentContextId: u32): void {
  createContext(contextId, parentContextId);
}

export function proxy_on_vm_start(rootContextId: u32, vmConfigurationSize: u32): bool {
  const root = rootContext(rootContextId, "proxy_on_vm_start");
  const configuration = vmConfigurationSize > 0 ? VM_CONFIGURATION.text() : "";
  return root.onVmStart(configuration);
}

export function proxy_on_configure(rootContextId: u32, pluginConfigurationSize: u32): bool {
  const root = rootContext(rootContextId, "proxy_on_configure");
  const configuration = pluginConfigurationSize > 0 ? PLUGIN_CONFIGURATION.text() : "";
  return root.onConfigure(configuration);
}

export function proxy_on_tick(rootContextId: u32): void {
  rootContext(rootContextId, "proxy_on_tick").onTick();
}

export function proxy_on_queue_ready(rootContextId: u32, queueId: u32): void {
  rootContext(rootContextId, "proxy_on_queue_ready").onQueueReady(queueId);
}

export function proxy_on_foreign_function(rootContextId: u32, functionId: u32, argumentsSize: u32): void {
  const root = rootContext(rootContextId, "proxy_on_foreign_function");
  root.onForeignFunction(functionId, argumentsSize > 0 ? FOREIGN_ARGUMENTS.get() : new ArrayBuffer(0));
}

// Booleans arrive as u32 and are compared with 0: a host may pass any non-zero value for true.

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: u32): HeadersAction {
  return httpContext(contextId, "proxy_on_request_headers").onRequestHeaders(numHeaders, endOfStream != 0);
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: u32): BodyAction {
  return httpContext(contextId, "proxy_on_request_body").onRequestBody(bodySize, endOfStream != 0);
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): TrailersAction {
  return httpContext(contextId, "proxy_on_request_trailers").onRequestTrailers(numTrailers);
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: u32): HeadersAction {
  return httpContext(contextId, "proxy_on_response_headers").onResponseHeaders(numHeaders, endOfStream != 0);
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: u32): BodyAction {
  return httpContext(contextId, "proxy_on_response_body").onResponseBody(bodySize, endOfStream != 0);
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): TrailersAction {
  return httpContext(contextId, "proxy_on_response_trailers").onResponseTrailers(numTrailers);
}

export function proxy_on_log(contextId: u32): void {
  context(contextId, "proxy_on_log").onLog();
}

export function proxy_on_done(contextId: u32): bool {
  return context(contextId, "proxy_on_done").onDone();
}

export function proxy_on_delete(contextId: u32): void {
  deleteContext(contextId);
}

export function proxy_on_http_call_response(rootContextId: u32, token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  const root = rootContext(rootContextId, "proxy_on_http_call_response");
  const call = takePendingCall(token);
  if (call === null) {
    // Not made through the SDK's httpCall (or already answered): the root context decides.
    root.onHttpCallResponse(token, readHttpCallResponse(token, numHeaders, bodySize, numTrailers));
    return;
  }
  if (call.orphaned || !hasContext(call.originId)) {
    log.debug("HTTP call " + token.toString() + " answered after its context " + call.originId.toString() + " was deleted; dropped");
    return;
  }
  const origin = context(call.originId, "proxy_on_http_call_response");
  origin.pendingHttpCalls--;
  const response = readHttpCallResponse(token, numHeaders, bodySize, numTrailers);
  if (origin instanceof HttpContext) {
    // Make the stream that made the call effective, so continueRequest() & co. act on it.
    const status = <Status>proxy_set_effective_context(origin.id);
    if (status != Status.Ok) {
      warnHostCall("proxy_set_effective_context", status, "context " + origin.id.toString() + "; HTTP call answer dropped");
      return;
    }
  }
  const callback = call.callback;
  if (callback !== null) callback(origin, response);
  else root.onHttpCallResponse(token, response);
}
