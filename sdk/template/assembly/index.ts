// The {{name}} filter: sets a configurable response header and counts requests.
// Start here: change the callbacks, keep config.schema.json and the test in step.

import {
  ConfigReader,
  Counter,
  HeadersAction,
  HttpContext,
  RootContext,
  log,
  registerRootContext,
} from "{{sdk}}";

/** Defined on first use, shared by every stream of this VM. */
const requests = new Counter("{{metricPrefix}}_requests_total");

class {{className}}Config {
  value: string = "on";
}

class {{className}}Root extends RootContext {
  config: {{className}}Config = new {{className}}Config();

  onConfigure(configuration: string): bool {
    const reader = ConfigReader.parse(configuration);
    const config = new {{className}}Config();
    config.value = reader.string("value", config.value);
    reader.rejectUnknownFields();
    if (config.value.includes("\n") || config.value.includes("\r")) reader.fail("value", "must not contain CR or LF");
    if (!reader.ok) {
      log.error("{{name}}: invalid configuration: " + reader.error!);
      return false;
    }
    this.config = config;
    return true;
  }

  createHttpContext(id: u32): HttpContext {
    return new {{className}}Stream(id, this);
  }
}

class {{className}}Stream extends HttpContext {
  constructor(id: u32, readonly filter: {{className}}Root) {
    super(id, filter);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    requests.increment();
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    this.response.headers.set("x-{{name}}", this.filter.config.value);
    return HeadersAction.Continue;
  }
}

registerRootContext((id: u32): RootContext => new {{className}}Root(id), "{{name}}");
{{callbacks}}