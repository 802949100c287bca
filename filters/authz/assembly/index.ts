// The authz filter: allows or denies each request by the peer's identity (its SPIFFE ID and the
// namespace in it), path, method and headers, with Istio AuthorizationPolicy's rule shape. Deny
// rules win over allow rules; what no rule speaks for gets the default action (deny). A denied
// request is answered 403 with the reason; in dry-run it passes, and is logged and counted instead.

import {
  Counter,
  HeadersAction,
  Headers,
  HttpContext,
  LogLevel,
  RootContext,
  peerIdentity,
  log,
  registerRootContext,
} from "../../../sdk/assembly";
import { anyMatches, isNormalPath, namespaceOf, pathEnd } from "./match";
import { Policy, Rule, readPolicy } from "./policy";

const allowed = new Counter("authz_allowed_total");
const denied = new Counter("authz_denied_total");
const dryRunDenied = new Counter("authz_dry_run_denied_total");


const DENIED_HEADERS = new Headers().add("content-type", "text/plain; charset=utf-8");

class AuthzRoot extends RootContext {
  policy: Policy = new Policy();

  onConfigure(configuration: string): bool {
    const result = readPolicy(configuration);
    if (result.policy === null) {
      log.error("authz: invalid configuration: " + result.error!);
      return false;
    }
    const policy = result.policy!;
    this.policy = policy;
    log.info(
      "authz: " + policy.allowRules.length.toString() + " allow rule(s), " + policy.denyRules.length.toString() + " deny rule(s), default " +
        (policy.defaultAllow ? "ALLOW" : "DENY") + (policy.dryRun ? ", dry run: nothing is denied, only logged and counted" : "") +
        (policy.strictPaths ? "" : ", strictPaths off: paths are matched as sent"),
    );
    if (policy.defaultAllow && policy.allowRules.length > 0) {
      log.warn("authz: defaultAction is ALLOW, so the allow rules change nothing; only deny rules decide");
    }
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new AuthzStream(id, this);
  }
}

class AuthzStream extends HttpContext {
  private identityRead: bool = false;
  private identity: string = "";
  private namespaceRead: bool = false;
  private namespace: string = "";
  private methodRead: bool = false;
  private methodValue: string = "";

  constructor(id: u32, readonly authz: AuthzRoot) {
    super(id, authz);
  }

  /** The peer's SPIFFE ID, read once and only when a rule or a reason needs it; "" without mTLS. */
  principal(): string {
    if (!this.identityRead) {
      this.identityRead = true;
      const identity = peerIdentity();
      if (identity !== null) this.identity = identity;
    }
    return this.identity;
  }

  peerNamespace(): string {
    if (!this.namespaceRead) {
      this.namespaceRead = true;
      this.namespace = namespaceOf(this.principal());
    }
    return this.namespace;
  }

  /** `:method`, read once and only when a rule or a reason needs it. */
  method(): string {
    if (!this.methodRead) {
      this.methodRead = true;
      const method = this.request.headers.get(":method");
      if (method !== null) this.methodValue = method;
    }
    return this.methodValue;
  }

  /** Conditions are checked cheapest first: path, method, headers, then the peer identity (property reads). */
  matches(rule: Rule, path: string, end: i32): bool {
    const paths = rule.paths;
    if (paths !== null && !anyMatches(paths, path, end)) return false;
    const methods = rule.methods;
    if (methods !== null && !methods.includes(this.method())) return false;
    const when = rule.when;
    for (let i = 0, n = when.length; i < n; i++) {
      const condition = unchecked(when[i]);
      const value = this.request.headers.get(condition.header);
      if (value === null || !anyMatches(condition.values, value, value.length)) return false;
    }
    if (rule.hasFrom) {
      const principal = this.principal();
      // Without a peer identity only rules without `from` apply, whatever the patterns say.
      if (principal.length == 0) return false;
      const principals = rule.principals;
      if (principals !== null && !anyMatches(principals, principal, principal.length)) return false;
      const namespaces = rule.namespaces;
      if (namespaces !== null) {
        const namespace = this.peerNamespace();
        if (namespace.length == 0 || !anyMatches(namespaces, namespace, namespace.length)) return false;
      }
    }
    return true;
  }

  /** "spiffe://.../sa/x GET /admin": who asked for what, for reasons and log lines. */
  who(path: string, end: i32): string {
    const principal = this.principal();
    return (principal.length > 0 ? principal : "(no peer identity)") + " " + this.method() + " " + path.substring(0, end);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const policy = this.authz.policy;
    const pathHeader = this.request.headers.get(":path");
    const path = pathHeader !== null ? pathHeader : "";
    const end = pathEnd(path);

    let reason: string | null = null;
    // Fail closed on a path the upstream could read as another one: "/api/../admin" would
    // otherwise pass an allow rule for "/api/*" and slip past a deny rule for "/admin/*".
    if (policy.strictPaths && !isNormalPath(path, end)) {
      reason = "ambiguous path '" + path.substring(0, end) + "' (dot segments, '//', '\\' and percent-encoded '/', '\\' or unreserved characters are refused)";
    } else {
      const denyRules = policy.denyRules;
      for (let i = 0, n = denyRules.length; i < n; i++) {
        const rule = unchecked(denyRules[i]);
        if (this.matches(rule, path, end)) {
          reason = "rule '" + rule.name + "' denies " + this.who(path, end);
          break;
        }
      }
      if (reason === null && !policy.defaultAllow && !this.anyAllowRuleMatches(policy, path, end)) {
        reason = "no rule allows " + this.who(path, end);
      }
    }

    if (reason === null) {
      allowed.increment();
      return HeadersAction.Continue;
    }
    if (policy.dryRun) {
      // Dry run: the request passes on purpose; the log line and the counter are the outcome.
      dryRunDenied.increment();
      log.info("authz: dry run, would deny: " + reason!);
      return HeadersAction.Continue;
    }
    denied.increment();
    if (log.enabled(LogLevel.Debug)) log.debug("authz: denied: " + reason!);
    this.sendLocalResponse(403, "authz: denied: " + reason! + "\n", DENIED_HEADERS, "authz_denied");
    return HeadersAction.StopIteration;
  }

  private anyAllowRuleMatches(policy: Policy, path: string, end: i32): bool {
    const allowRules = policy.allowRules;
    for (let i = 0, n = allowRules.length; i < n; i++) {
      if (this.matches(unchecked(allowRules[i]), path, end)) return true;
    }
    return false;
  }
}

registerRootContext((id: u32): RootContext => new AuthzRoot(id), "authz");
