// The request path as layers: a layer is a function from the next handler to a handler, and a
// path is composed once (per listener), with a bad layer refused when it is built, not on the
// first request (undici's Dispatcher.compose, linkerd2-proxy's stack).

import { SluiceError } from '../../errors.ts';

/** Handles one request: what it learns and decides lives on the context. */
export type Handler<C> = (ctx: C) => Promise<void>;

/** Wraps the next handler with one step of the path. */
export type Layer<C> = (next: Handler<C>) => Handler<C>;

/** A layer with the name the path reports it by. */
export interface NamedLayer<C> {
  readonly name: string;
  readonly layer: Layer<C>;
}

/**
 * Composes `layers` (the first one outermost) around `last`. Throws SLUICE_ERR_PROXY_LAYER when
 * a layer is not a one-argument function or does not return a handler.
 */
export function compose<C>(layers: readonly NamedLayer<C>[], last: Handler<C>): Handler<C> {
  if (typeof last !== 'function') throw new SluiceError('SLUICE_ERR_PROXY_LAYER', 'the innermost handler of the request path is not a function');
  const seen = new Set<string>();
  let handler = last;
  for (let i = layers.length - 1; i >= 0; i--) {
    const { name, layer } = layers[i]!;
    if (!name || seen.has(name)) throw new SluiceError('SLUICE_ERR_PROXY_LAYER', `request path layer #${i + 1} ${name ? `"${name}" appears twice` : 'has no name'}: give each layer its own name`);
    seen.add(name);
    if (typeof layer !== 'function' || layer.length !== 1) throw new SluiceError('SLUICE_ERR_PROXY_LAYER', `request path layer "${name}" is not a function of the next handler: a layer is (next) => handler`);
    const wrapped = layer(handler);
    if (typeof wrapped !== 'function') throw new SluiceError('SLUICE_ERR_PROXY_LAYER', `request path layer "${name}" did not return a handler: a layer is (next) => (ctx) => Promise<void>`);
    handler = wrapped;
  }
  return handler;
}
