// The retry filter: picks a retry policy per request (ordered rules on path, method and headers,
// first match wins, else an optional default) and hands it to Sluice in `sluice.retry_policy`.
// Each policy's JSON is built once in onConfigure (config.ts); a request costs its matching plus
// one setProperty.

import { HeadersAction, HttpContext, RootContext, Status, allHeadersMatch, log, registerRootContext, setProperty } from "../../../sdk/assembly";
import { Policy, RetryConfig, readConfig, samePath } from "./config";

const POLICY_PROPERTY = ["sluice", "retry_policy"];

class RetryRoot extends RootContext {
  config: RetryConfig = new RetryConfig();

  onConfigure(configuration: string): bool {
    const config = readConfig(configuration);
    if (config === null) return false;
    this.config = config;
    log.info("retry: " + config.rules.length.toString() + " rule(s)" + (config.defaultPolicy !== null ? " and a default policy" : ", no default policy"));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new RetryStream(id, this);
  }
}

class RetryStream extends HttpContext {
  constructor(id: u32, readonly retry: RetryRoot) {
    super(id, retry);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const policy = this.choose();
    if (policy !== null && setProperty<ArrayBuffer>(POLICY_PROPERTY, policy.json) == Status.Ok) policy.applied.increment();
    return HeadersAction.Continue;
  }

  /** The first matching rule's policy, else the default one, else null (the route's policy stays). */
  private choose(): Policy | null {
    const config = this.retry.config;
    const headers = this.request.headers;
    // Each host read happens at most once, and only once a rule needs it: :path up front (rules
    // usually start with it), :method when a rule gets as far as its methods.
    const path = config.needsPath ? headers.get(":path") : null;
    let method: string | null = null;
    let methodRead = false;
    const rules = config.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = unchecked(rules[i]);
      const m = rule.match;
      if (m.path.length > 0 && (path === null || !samePath(path, m.path))) continue;
      if (m.prefix.length > 0 && (path === null || !path.startsWith(m.prefix))) continue;
      if (m.methods.length > 0) {
        if (!methodRead) {
          method = headers.get(":method");
          methodRead = true;
        }
        if (method === null || !m.methods.includes(method)) continue;
      }
      if (!allHeadersMatch(m.headers, headers)) continue;
      return rule.policy;
    }
    return config.defaultPolicy;
  }
}

registerRootContext((id: u32): RootContext => new RetryRoot(id), "retry");
