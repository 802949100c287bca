// The numbers of the proxy-wasm 0.2.1 ABI as typed enums: statuses, map and buffer types, what
// callbacks return, log levels, metric and stream types. Values match runtime/abi/constants.ts.

/** What every host function returns. */
export enum Status {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  InternalFailure = 10,
  Unimplemented = 12,
}

/** Which header map a header call acts on. */
export enum MapType {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4,
  GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

/** Which buffer a buffer call acts on. */
export enum BufferType {
  HttpRequestBody = 0,
  HttpResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
  ForeignFunctionArguments = 8,
}

/** What `onRequestHeaders` / `onResponseHeaders` return. */
export enum HeadersAction {
  /** Pass the headers on to the next filter. */
  Continue = 0,
  /** Pause the stream until `continueRequest()` / `continueResponse()` (or a local response). */
  StopIteration = 1,
  ContinueAndEndStream = 2,
  StopAllIterationAndBuffer = 3,
  StopAllIterationAndWatermark = 4,
}

/** What `onRequestBody` / `onResponseBody` return. */
export enum BodyAction {
  /** Pass this chunk on. */
  Continue = 0,
  /** Hold the body back and buffer it; the next call sees all of it so far. */
  StopIterationAndBuffer = 1,
  StopIterationAndWatermark = 2,
  StopIterationNoBuffer = 3,
}

/** What `onRequestTrailers` / `onResponseTrailers` return. */
export enum TrailersAction {
  Continue = 0,
  StopIteration = 1,
}

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

export enum MetricType {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

/** The stream `continueStream` / `closeStream` act on. */
export enum StreamType {
  HttpRequest = 0,
  HttpResponse = 1,
  Downstream = 2,
  Upstream = 3,
}

/** The ABI's name of a status with its number, e.g. `BAD_ARGUMENT(2)`. */
export function statusName(status: Status): string {
  let name: string;
  switch (status) {
    case Status.Ok: name = "OK"; break;
    case Status.NotFound: name = "NOT_FOUND"; break;
    case Status.BadArgument: name = "BAD_ARGUMENT"; break;
    case Status.SerializationFailure: name = "SERIALIZATION_FAILURE"; break;
    case Status.ParseFailure: name = "PARSE_FAILURE"; break;
    case Status.InvalidMemoryAccess: name = "INVALID_MEMORY_ACCESS"; break;
    case Status.Empty: name = "EMPTY"; break;
    case Status.CasMismatch: name = "CAS_MISMATCH"; break;
    case Status.InternalFailure: name = "INTERNAL_FAILURE"; break;
    case Status.Unimplemented: name = "UNIMPLEMENTED"; break;
    default: name = "UNKNOWN_STATUS";
  }
  return name + "(" + (<i32>status).toString() + ")";
}

/** A readable name for a map type, used in error messages. */
export function mapTypeName(mapType: MapType): string {
  switch (mapType) {
    case MapType.RequestHeaders: return "request headers";
    case MapType.RequestTrailers: return "request trailers";
    case MapType.ResponseHeaders: return "response headers";
    case MapType.ResponseTrailers: return "response trailers";
    case MapType.GrpcReceiveInitialMetadata: return "gRPC initial metadata";
    case MapType.GrpcReceiveTrailingMetadata: return "gRPC trailing metadata";
    case MapType.HttpCallResponseHeaders: return "HTTP call response headers";
    case MapType.HttpCallResponseTrailers: return "HTTP call response trailers";
  }
  return "map type " + (<i32>mapType).toString();
}

/** A readable name for a buffer type, used in error messages. */
export function bufferTypeName(bufferType: BufferType): string {
  switch (bufferType) {
    case BufferType.HttpRequestBody: return "request body";
    case BufferType.HttpResponseBody: return "response body";
    case BufferType.DownstreamData: return "downstream data";
    case BufferType.UpstreamData: return "upstream data";
    case BufferType.HttpCallResponseBody: return "HTTP call response body";
    case BufferType.GrpcReceiveBuffer: return "gRPC message";
    case BufferType.VmConfiguration: return "VM configuration";
    case BufferType.PluginConfiguration: return "plugin configuration";
    case BufferType.ForeignFunctionArguments: return "foreign function arguments";
  }
  return "buffer type " + (<i32>bufferType).toString();
}
