// One HTTP request (HTTP/1.1 or HTTP/2, gRPC included) through a listener: the composition of the
// request path's layers (layers/path.ts; each layer in its own module under layers/).

export type { ListenerState } from './layers/context.ts';
export { proxyRequest } from './layers/lifecycle.ts';
export { buildRequestPath } from './layers/path.ts';
