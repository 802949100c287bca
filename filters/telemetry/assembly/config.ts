// The telemetry filter's configuration: parsed and validated once in onConfigure into the typed
// objects the request path reads. Every error names its field; see config.schema.json.

import { ConfigReader, JsonObject, JsonValue, quoteJson } from "../../../sdk/assembly";

/** Where a metric label's value comes from. */
export enum LabelSource {
  Method,
  ResponseCode,
  Route,
  Cluster,
  RequestProtocol,
  SourcePrincipal,
  DestinationService,
  Path,
  Header,
  Property,
}

/** The built-in labels, by the name used in the configuration and on the metric. */
const BUILTIN_NAMES: string[] = [
  "method", "response_code", "route", "cluster", "request_protocol", "source_principal", "destination_service", "path",
];
const BUILTIN_SOURCES: LabelSource[] = [
  LabelSource.Method, LabelSource.ResponseCode, LabelSource.Route, LabelSource.Cluster,
  LabelSource.RequestProtocol, LabelSource.SourcePrincipal, LabelSource.DestinationService, LabelSource.Path,
];

export class Label {
  constructor(
    readonly name: string,
    readonly source: LabelSource,
    /** Header labels: the request header read. */
    readonly header: string = "",
    /** Property labels: the property path, split at dots. */
    readonly property: string[] = [],
  ) {}
}

/** How labels travel in a metric's name (the ABI has no labels). */
export enum LabelEncoding {
  /** `telemetry_requests_total{method="GET",response_code="200"}`: Sluice's /stats/prometheus reads it. */
  Prometheus,
  /** `method=.=GET;.;response_code=.=200;.;telemetry_requests_total`: Istio's, for Envoy's stats_tags. */
  Istio,
}

export class MetricsConfig {
  enabled: bool = true;
  labelEncoding: LabelEncoding = LabelEncoding.Prometheus;
  prefix: string = "telemetry_";
  labels: Label[] = defaultLabels();
  maxSeries: i32 = 10000;
}

function defaultLabels(): Label[] {
  return [
    new Label("method", LabelSource.Method),
    new Label("response_code", LabelSource.ResponseCode),
    new Label("cluster", LabelSource.Cluster),
  ];
}

export class RequestIdConfig {
  header: string = "x-request-id";
  generate: bool = true;
  /** Copy the request id into this response header; "" for none. */
  responseHeader: string = "";
}

export class TraceparentConfig {
  inject: bool = true;
  /** Put the trace id (32 hex digits) in this response header; "" for none. */
  responseHeader: string = "";
}

export enum FieldSource {
  Header,
  ResponseHeader,
  Property,
}

export class AccessLogField {
  /** `"name"`, ready to go into the JSON log line. */
  readonly quotedName: string;
  /** Where the value is handed to the host: `sluice.access_log.<name>`. */
  readonly target: string[];

  constructor(
    readonly name: string,
    readonly source: FieldSource,
    /** Header or response header name. */
    readonly header: string,
    /** Property path, split at dots. */
    readonly property: string[],
  ) {
    this.quotedName = quoteJson(name);
    this.target = ["sluice", "access_log", name];
  }
}

export class AccessLogConfig {
  fields: AccessLogField[] = [];
  /** Also write the fields as one JSON line through the plugin log (info). */
  logLine: bool = true;
}

export class TelemetryConfig {
  metrics: MetricsConfig = new MetricsConfig();
  requestId: RequestIdConfig = new RequestIdConfig();
  traceparent: TraceparentConfig = new TraceparentConfig();
  accessLog: AccessLogConfig = new AccessLogConfig();
}

/** The outcome of parsing: a config, or every error joined with "; ". */
export class ParsedConfig {
  constructor(readonly config: TelemetryConfig | null, readonly error: string) {}
}

/** Errors of one configuration, in the ConfigReader format, including those of array items. */
class Problems {
  readonly list: string[] = [];

  field(path: string, message: string): void {
    this.list.push("field '" + path + "': " + message);
  }

  /** The errors an item's own reader collected. */
  take(reader: ConfigReader): void {
    const error = reader.error;
    if (error !== null) this.list.push(error);
  }
}

export function parseConfig(text: string): ParsedConfig {
  const reader = ConfigReader.parse(text);
  const problems = new Problems();
  const config = new TelemetryConfig();

  const metrics = reader.object("metrics");
  const m = config.metrics;
  m.enabled = metrics.bool("enabled", m.enabled);
  m.prefix = metrics.string("prefix", m.prefix);
  if (m.prefix.length > 0 && !isIdentifier(m.prefix)) {
    metrics.fail("prefix", "must be empty or letters, digits and '_', not starting with a digit (a Prometheus name prefix), got " + quoteJson(m.prefix));
  }
  m.maxSeries = <i32>metrics.integer("maxSeries", m.maxSeries, 1, 1000000);
  const encoding = metrics.string("labelEncoding", "prometheus");
  if (encoding == "istio") m.labelEncoding = LabelEncoding.Istio;
  else if (encoding != "prometheus") metrics.fail("labelEncoding", "must be \"prometheus\" or \"istio\", got " + quoteJson(encoding));
  const labels = metrics.array("labels");
  if (labels !== null) m.labels = parseLabels(labels.items, problems);
  metrics.rejectUnknownFields();

  const requestId = reader.object("requestId");
  const r = config.requestId;
  r.header = requestId.string("header", r.header);
  checkHeaderName(requestId, "header", r.header, false);
  r.generate = requestId.bool("generate", r.generate);
  r.responseHeader = requestId.string("responseHeader", r.responseHeader);
  if (r.responseHeader.length > 0) checkHeaderName(requestId, "responseHeader", r.responseHeader, false);
  requestId.rejectUnknownFields();

  const traceparent = reader.object("traceparent");
  const t = config.traceparent;
  t.inject = traceparent.bool("inject", t.inject);
  t.responseHeader = traceparent.string("responseHeader", t.responseHeader);
  if (t.responseHeader.length > 0) checkHeaderName(traceparent, "responseHeader", t.responseHeader, false);
  traceparent.rejectUnknownFields();

  const accessLog = reader.object("accessLog");
  const a = config.accessLog;
  a.logLine = accessLog.bool("logLine", a.logLine);
  const fields = accessLog.array("fields");
  if (fields !== null) a.fields = parseFields(fields.items, problems);
  accessLog.rejectUnknownFields();

  reader.rejectUnknownFields();
  const all = new Array<string>();
  const error = reader.error;
  if (error !== null) all.push(error);
  for (let i = 0; i < problems.list.length; i++) all.push(problems.list[i]);
  if (all.length > 0) return new ParsedConfig(null, all.join("; "));
  return new ParsedConfig(config, "");
}

function parseLabels(items: JsonValue[], problems: Problems): Label[] {
  const out = new Array<Label>();
  for (let i = 0; i < items.length; i++) {
    const path = "metrics.labels[" + i.toString() + "]";
    const item = items[i];
    const text = item.asString();
    let label: Label | null = null;
    if (text !== null) {
      const at = BUILTIN_NAMES.indexOf(text);
      if (at < 0) {
        problems.field(path, "unknown label " + quoteJson(text) + " (built-in: " + BUILTIN_NAMES.join(", ") + "; or an object {name, header} or {name, property})");
        continue;
      }
      label = new Label(text, BUILTIN_SOURCES[at]);
    } else {
      const object = item.asObject();
      if (object === null) {
        problems.field(path, "expected a label name or an object {name, header} / {name, property}, got " + item.typeName);
        continue;
      }
      const entry = new ConfigReader(object, path);
      const name = entry.requireString("name");
      const header = entry.string("header", "");
      const property = entry.string("property", "");
      entry.rejectUnknownFields();
      if (name.length > 0) checkLabelName(entry, name);
      const source = oneSource(problems, path, object.has("header"), object.has("property"), false);
      if (source == FieldSource.Header) {
        if (isString(object, "header")) checkHeaderName(entry, "header", header, true);
        label = new Label(name, LabelSource.Header, header);
      } else if (source == FieldSource.Property) {
        if (isString(object, "property")) checkProperty(entry, property);
        label = new Label(name, LabelSource.Property, "", property.split("."));
      }
      problems.take(entry);
      if (!entry.ok) continue;
    }
    if (label === null) continue;
    for (let j = 0; j < out.length; j++) {
      if (out[j].name == label.name) problems.field(path, "label " + quoteJson(label.name) + " is given twice");
    }
    out.push(label);
  }
  return out;
}

function parseFields(items: JsonValue[], problems: Problems): AccessLogField[] {
  const out = new Array<AccessLogField>();
  for (let i = 0; i < items.length; i++) {
    const path = "accessLog.fields[" + i.toString() + "]";
    const object = items[i].asObject();
    if (object === null) {
      problems.field(path, "expected an object {name, header | responseHeader | property}, got " + items[i].typeName);
      continue;
    }
    const entry = new ConfigReader(object, path);
    const name = entry.requireString("name");
    const header = entry.string("header", "");
    const responseHeader = entry.string("responseHeader", "");
    const property = entry.string("property", "");
    entry.rejectUnknownFields();
    if (name.length > 0 && (!isIdentifier(name) || name.length > 64)) {
      entry.fail("name", "must be 1 to 64 letters, digits and '_', not starting with a digit, got " + quoteJson(name));
    }
    const source = oneSource(problems, path, object.has("header"), object.has("property"), object.has("responseHeader"));
    let field: AccessLogField | null = null;
    if (source == FieldSource.Header) {
      if (isString(object, "header")) checkHeaderName(entry, "header", header, true);
      field = new AccessLogField(name, source, header, []);
    } else if (source == FieldSource.ResponseHeader) {
      if (isString(object, "responseHeader")) checkHeaderName(entry, "responseHeader", responseHeader, true);
      field = new AccessLogField(name, source, responseHeader, []);
    } else if (source == FieldSource.Property) {
      if (isString(object, "property")) checkProperty(entry, property);
      field = new AccessLogField(name, source, "", property.split("."));
    }
    problems.take(entry);
    if (!entry.ok || field === null) continue;
    for (let j = 0; j < out.length; j++) {
      if (out[j].name == name) problems.field(path, "field name " + quoteJson(name) + " is given twice");
    }
    out.push(field);
  }
  return out;
}

/** Exactly one of the value sources must be given; -1 (reported) when not. */
function oneSource(problems: Problems, path: string, header: bool, property: bool, responseHeader: bool): i32 {
  const count = (header ? 1 : 0) + (property ? 1 : 0) + (responseHeader ? 1 : 0);
  if (count != 1) {
    const allowed = path.startsWith("accessLog") ? "header, responseHeader or property" : "header or property";
    problems.field(path, "give exactly one of " + allowed);
    return -1;
  }
  if (header) return FieldSource.Header;
  if (responseHeader) return FieldSource.ResponseHeader;
  return FieldSource.Property;
}

function checkLabelName(entry: ConfigReader, name: string): void {
  if (!isIdentifier(name) || name.length > 64 || name.startsWith("__")) {
    entry.fail("name", "must be a Prometheus label name (1 to 64 letters, digits and '_', not starting with a digit or '__'), got " + quoteJson(name));
  } else if (BUILTIN_NAMES.includes(name)) {
    entry.fail("name", quoteJson(name) + " is a built-in label; list it as the string " + quoteJson(name) + " instead");
  } else if (name == "le") {
    entry.fail("name", "\"le\" is reserved for histogram buckets");
  }
}

/** Lower-case HTTP token; pseudo-headers (`:authority`) only where `pseudo` allows. */
function checkHeaderName(entry: ConfigReader, field: string, name: string, pseudo: bool): void {
  let ok = name.length > 0;
  for (let i = 0; ok && i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (i == 0 && c == 0x3a && pseudo && name.length > 1) continue;
    ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
  }
  if (!ok) entry.fail(field, "must be a lower-case header name like 'x-request-id'" + (pseudo ? " (or a pseudo-header like ':authority')" : "") + ", got " + quoteJson(name));
}

function checkProperty(entry: ConfigReader, property: string): void {
  const segments = property.split(".");
  for (let i = 0; i < segments.length; i++) {
    if (segments[i].length == 0) {
      entry.fail("property", "must be a dotted property path like 'node.metadata.REGION' (no empty segment), got " + quoteJson(property));
      return;
    }
  }
}

/** Whether `key` holds a string (a wrong type is already reported by the reader). */
function isString(object: JsonObject, key: string): bool {
  const value = object.get(key);
  return value !== null && value.isString;
}

/** Letters, digits and '_', not starting with a digit. */
function isIdentifier(text: string): bool {
  if (text.length == 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const letter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f;
    if (!letter && !(i > 0 && c >= 0x30 && c <= 0x39)) return false;
  }
  return true;
}
