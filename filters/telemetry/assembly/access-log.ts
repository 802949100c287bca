// Extra access-log fields, gathered in onLog: each is handed to the host as the stream property
// `sluice.access_log.<name>` (where a host that includes filter fields in its access log reads
// it), and, when asked, all are written as one JSON line through the plugin log.

import { HttpContext, LogLevel, getPropertyString, log, quoteJson, setProperty } from "../../../sdk/assembly";
import { AccessLogConfig, AccessLogField, FieldSource } from "./config";

function fieldValue(stream: HttpContext, field: AccessLogField): string | null {
  if (field.source == FieldSource.Header) return stream.request.headers.get(field.header);
  if (field.source == FieldSource.ResponseHeader) return stream.response.headers.get(field.header);
  return getPropertyString(field.property);
}

export function writeAccessLogFields(stream: HttpContext, config: AccessLogConfig): void {
  const fields = config.fields;
  const line = config.logLine && log.enabled(LogLevel.Info);
  let json = "";
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i];
    const value = fieldValue(stream, field);
    if (value !== null) setProperty(field.target, value);
    if (!line) continue;
    if (i > 0) json += ",";
    json += field.quotedName + ":" + (value !== null ? quoteJson(value) : "null");
  }
  if (line) log.info("{\"access_log\":{" + json + "}}");
}
