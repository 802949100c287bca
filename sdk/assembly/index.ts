// The Sluice AssemblyScript SDK for proxy-wasm filters: everything a filter imports. Extend
// RootContext / HttpContext, call registerRootContext once, and build with scripts/build-filters.js.

export { BodyAction, BufferType, HeadersAction, LogLevel, MapType, MetricType, Status, StreamType, TrailersAction, statusName } from "./types";
export { Context, HttpContext, RootContext } from "./context";
export { registerRootContext, RootFactory } from "./registry";
export { HttpMessage } from "./http-message";
export { HeaderMap } from "./header-map";
export { HeaderMatch, allHeadersMatch, hasLineBreakOrNul, isHeaderName, readHeaderMatches } from "./header-match";
export { Header, Headers } from "./headers";
export { Body } from "./body";
export { HttpCallback, HttpCallResponse } from "./http-call";
export { log } from "./log";
export { Counter, Gauge, Histogram, Metric } from "./metrics";
export { sharedData, SharedDataUpdate, SharedValue } from "./shared-data";
export { SharedQueue } from "./shared-queue";
export { getProperty, getPropertyBool, getPropertyI64, getPropertyString, getPropertyU64, peerIdentity, setProperty } from "./properties";
export { currentTimeMilliseconds, currentTimeNanoseconds, setTickPeriod } from "./time";
export { callForeignFunction, ForeignResult } from "./foreign";
export { JsonArray, JsonBool, JsonKind, JsonNull, JsonNumber, JsonObject, JsonString, JsonValue, quoteJson } from "./json-value";
export { JsonParseResult, parseJson } from "./json";
export { ConfigReader } from "./config";
export { hostCallMessage, panic } from "./errors";
