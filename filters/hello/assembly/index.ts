// The example filter: adds a configured header to every response, answers 403 to requests under
// a denied path prefix, and counts requests. Config: { "header", "value", "denyPath" }.

import {
  ConfigReader,
  Counter,
  HeadersAction,
  Headers,
  HttpContext,
  RootContext,
  hasLineBreakOrNul,
  isHeaderName,
  log,
  registerRootContext,
} from "../../../sdk/assembly";

/** Defined on first use, shared by every stream of this VM. */
const requests = new Counter("hello_requests_total");

class HelloConfig {
  header: string = "x-hello";
  value: string = "world";
  /** Requests whose :path starts with this are answered 403; "" denies nothing. */
  denyPath: string = "";
}



class HelloRoot extends RootContext {
  config: HelloConfig = new HelloConfig();

  onConfigure(configuration: string): bool {
    const reader = ConfigReader.parse(configuration);
    const config = new HelloConfig();
    config.header = reader.string("header", config.header);
    config.value = reader.string("value", config.value);
    config.denyPath = reader.string("denyPath", config.denyPath);
    reader.rejectUnknownFields();
    if (!isHeaderName(config.header) || config.header.startsWith(":")) reader.fail("header", "must be a lower-case header name like 'x-hello', got '" + config.header + "'");
    if (hasLineBreakOrNul(config.value)) reader.fail("value", "must not contain CR, LF or NUL");
    if (config.denyPath.length > 0 && !config.denyPath.startsWith("/")) reader.fail("denyPath", "must start with '/', got '" + config.denyPath + "'");
    if (!reader.ok) {
      log.error("hello: invalid configuration: " + reader.error!);
      return false;
    }
    this.config = config;
    log.info("hello: adding '" + config.header + ": " + config.value + "'" + (config.denyPath.length > 0 ? ", denying '" + config.denyPath + "'" : ""));
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new HelloStream(id, this);
  }
}

class HelloStream extends HttpContext {
  constructor(id: u32, readonly hello: HelloRoot) {
    super(id, hello);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    requests.increment();
    const denyPath = this.hello.config.denyPath;
    if (denyPath.length == 0) return HeadersAction.Continue;
    const path = this.request.headers.get(":path");
    if (path !== null && path.startsWith(denyPath)) {
      const body = "hello: access to '" + path + "' is denied (path starts with '" + denyPath + "')\n";
      this.sendLocalResponse(403, body, new Headers().add("content-type", "text/plain; charset=utf-8"), "hello_denied_path");
      return HeadersAction.StopIteration;
    }
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const config = this.hello.config;
    this.response.headers.set(config.header, config.value);
    return HeadersAction.Continue;
  }
}

registerRootContext((id: u32): RootContext => new HelloRoot(id), "hello");
