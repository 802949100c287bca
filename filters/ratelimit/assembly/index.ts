// The ratelimit filter: token buckets keyed by a header, the peer's identity or the path, kept in
// shared data so that every VM draws from the same buckets. A request takes one token from the
// bucket of every rule that applies to it (or from the default bucket when none does); when one of
// them is empty it is answered 429 with Retry-After, and takes nothing. Responses carry
// x-ratelimit-limit / -remaining / -reset, as Envoy's local rate limit does.

import {
  Counter,
  HeadersAction,
  Headers,
  HttpContext,
  LogLevel,
  RootContext,
  Status,
  currentTimeMilliseconds,
  getPropertyString,
  peerIdentity,
  log,
  registerRootContext,
  sharedData,
  statusName,
} from "../../../sdk/assembly";
import { Draw, findBucket, hashKey, takeToken } from "./bucket";
import { KeyKind, Limits, Rule, readLimits } from "./config";

const allowedCounter = new Counter("ratelimit_allowed_total");
const limitedCounter = new Counter("ratelimit_limited_total");
const failOpenCounter = new Counter("ratelimit_fail_open_total");

const PLUGIN_NAME: string[] = ["plugin_name"];

/** Tries of a bucket's read-modify-write when other VMs keep writing it in between. */
const CAS_ATTEMPTS = 4;
/** The owner of a rule's only bucket when it has no key. */
const NO_KEY: u64 = 1;
/** The owner of the bucket requests without the key share (keyMissing: shared). */
const MISSING_KEY: u64 = hashKey("", 0);

class RateLimitRoot extends RootContext {
  limits: Limits = new Limits();
  /** The rules the current request draws from (scratch, reused). */
  readonly drawing: Rule[] = [];

  onConfigure(configuration: string): bool {
    const nameProperty = getPropertyString(PLUGIN_NAME);
    const pluginName = nameProperty !== null ? nameProperty : "";
    const result = readLimits(configuration, pluginName);
    if (result.limits === null) {
      log.error("ratelimit: invalid configuration: " + result.error!);
      return false;
    }
    // The buckets live in shared data: without it there is nothing to count with, so refuse now
    // rather than let every request through unlimited.
    const status = sharedData.set<string>("ratelimit:" + pluginName + ":format", "v1: 20-byte buckets (owner u64, lastFillMs u64, tokens u32)");
    if (status != Status.Ok) {
      log.error("ratelimit: invalid configuration: shared data refused a write (" + statusName(status) + "); the filter keeps its buckets there: grant it the sharedData capability");
      return false;
    }
    const limits = result.limits!;
    this.limits = limits;
    log.info(
      "ratelimit: " + limits.rules.length.toString() + " rule(s)" + (limits.defaultRule !== null ? " and a default bucket" : ", no default bucket") +
        (limits.rateLimitHeaders ? "" : ", no x-ratelimit-* headers"),
    );
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new RateLimitStream(id, this);
  }
}

class RateLimitStream extends HttpContext {
  private pathRead: bool = false;
  private path: string = "";
  /** What x-ratelimit-* report for this request, once a bucket was drawn from. */
  private reported: bool = false;
  private limit: u32 = 0;
  private remaining: u32 = 0;
  private reset: u64 = 0;

  constructor(id: u32, readonly rateLimit: RateLimitRoot) {
    super(id, rateLimit);
  }

  private requestPath(): string {
    if (!this.pathRead) {
      this.pathRead = true;
      const path = this.request.headers.get(":path");
      if (path !== null) this.path = path;
    }
    return this.path;
  }

  /** The hash of the request's key for `rule`, or 0 when the request has no such key. */
  private keyOf(rule: Rule): u64 {
    switch (rule.keyKind) {
      case KeyKind.None:
        return NO_KEY;
      case KeyKind.Header: {
        const value = this.request.headers.get(rule.header);
        return value !== null && value.length > 0 ? hashKey(value, value.length) : 0;
      }
      case KeyKind.PeerIdentity: {
        const identity = peerIdentity();
        return identity !== null && identity.length > 0 ? hashKey(identity, identity.length) : 0;
      }
      default: {
        // The path without its query: "/items?page=2" and "/items" share a bucket.
        const path = this.requestPath();
        const q = path.indexOf("?");
        return hashKey(path, q < 0 ? path.length : q);
      }
    }
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.rateLimit;
    const limits = root.limits;
    const drawing = root.drawing;
    drawing.length = 0;
    let now: u64 = 0;

    // First every bucket is read: if one is empty the request is refused and takes nothing.
    const rules = limits.rules;
    for (let i = 0, n = rules.length; i < n; i++) {
      const rule = unchecked(rules[i]);
      if (rule.prefix.length > 0 && !this.requestPath().startsWith(rule.prefix)) continue;
      let key = this.keyOf(rule);
      if (key == 0) {
        if (!rule.sharedWhenMissing) continue;
        key = MISSING_KEY;
      }
      if (now == 0) now = currentTimeMilliseconds();
      findBucket(rule.bucket, key, now, rule.draw);
      if (rule.draw.tokens == 0) return this.refuse(rule, now);
      drawing.push(rule);
    }
    const defaultRule = limits.defaultRule;
    if (drawing.length == 0 && defaultRule !== null) {
      if (now == 0) now = currentTimeMilliseconds();
      findBucket(defaultRule.bucket, NO_KEY, now, defaultRule.draw);
      if (defaultRule.draw.tokens == 0) return this.refuse(defaultRule, now);
      drawing.push(defaultRule);
    }
    if (drawing.length == 0) return HeadersAction.Continue;

    // Then a token is taken from each, with compare-and-swap: a bucket another VM wrote since it
    // was read is read again (it may have run empty meanwhile).
    let taken = 0;
    for (let i = 0, n = drawing.length; i < n; i++) {
      const rule = unchecked(drawing[i]);
      const draw = rule.draw;
      let status = takeToken(draw);
      for (let attempt = 1; status == Status.CasMismatch && attempt < CAS_ATTEMPTS; attempt++) {
        findBucket(rule.bucket, draw.keyHash, now, draw);
        // Tokens already taken from earlier rules for this request stay taken (a rare race).
        if (draw.tokens == 0) return this.refuse(rule, now);
        status = takeToken(draw);
      }
      if (status != Status.Ok) {
        // Fail open: a bucket that cannot be written must not stop traffic; counted and logged.
        failOpenCounter.increment();
        log.warn("ratelimit: rule '" + rule.name + "': could not update its bucket (" + statusName(status) + "); the request passes without taking a token");
        continue;
      }
      taken++;
      this.report(rule, draw.tokens - 1, draw, now);
    }
    if (taken > 0) allowedCounter.increment();
    return HeadersAction.Continue;
  }

  /** Keeps the headers of the rule closest to its limit (the fewest tokens left). */
  private report(rule: Rule, remaining: u32, draw: Draw, now: u64): void {
    if (this.reported && remaining >= this.remaining) return;
    this.reported = true;
    this.limit = rule.bucket.maxTokens;
    this.remaining = remaining;
    this.reset = draw.resetSeconds(rule.bucket, now);
  }

  private refuse(rule: Rule, now: u64): HeadersAction {
    limitedCounter.increment();
    this.reported = true;
    this.limit = rule.bucket.maxTokens;
    this.remaining = 0;
    this.reset = rule.draw.resetSeconds(rule.bucket, now);
    const seconds = this.reset.toString();
    if (log.enabled(LogLevel.Debug)) log.debug("ratelimit: rule '" + rule.name + "' is out of tokens; 429, retry after " + seconds + "s");
    const headers = new Headers().add("content-type", "text/plain; charset=utf-8").add("retry-after", seconds);
    if (this.rateLimit.limits.rateLimitHeaders) {
      headers.add("x-ratelimit-limit", this.limit.toString()).add("x-ratelimit-remaining", "0").add("x-ratelimit-reset", seconds);
    }
    const body = "ratelimit: too many requests (rule '" + rule.name + "'); retry after " + seconds + "s\n";
    this.sendLocalResponse(429, body, headers, "ratelimit_limited");
    return HeadersAction.StopIteration;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    if (this.reported && this.rateLimit.limits.rateLimitHeaders) {
      const headers = this.response.headers;
      headers.set("x-ratelimit-limit", this.limit.toString());
      headers.set("x-ratelimit-remaining", this.remaining.toString());
      headers.set("x-ratelimit-reset", this.reset.toString());
    }
    return HeadersAction.Continue;
  }
}

registerRootContext((id: u32): RootContext => new RateLimitRoot(id), "ratelimit");
