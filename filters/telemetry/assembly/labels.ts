// The value of each metric label for the stream that is ending, read in onLog from the request and
// response headers and the host's properties. A missing value reads `unknown` (Istio's convention).

import { HttpContext, getPropertyString } from "../../../sdk/assembly";
import { Label, LabelSource } from "./config";

export const UNKNOWN = "unknown";

const ROUTE_NAME = ["xds", "route_name"];
const CLUSTER_NAME = ["xds", "cluster_name"];
const PROTOCOL = ["request", "protocol"];
const PEER_URI_SAN = ["connection", "uri_san_peer_certificate"];

export function labelValue(stream: HttpContext, label: Label): string {
  switch (label.source) {
    case LabelSource.Method:
      return method(stream.request.headers.get(":method"));
    case LabelSource.ResponseCode: {
      // No response headers: the client went away first (Envoy and Istio say 0).
      const status = stream.response.headers.get(":status");
      return status !== null ? status : "0";
    }
    case LabelSource.Route:
      return clean(getPropertyString(ROUTE_NAME));
    case LabelSource.Cluster:
      return clean(getPropertyString(CLUSTER_NAME));
    case LabelSource.RequestProtocol:
      return protocol(stream);
    case LabelSource.SourcePrincipal:
      return clean(getPropertyString(PEER_URI_SAN));
    case LabelSource.DestinationService:
      return clean(stream.request.headers.get(":authority"));
    case LabelSource.Path: {
      const path = stream.request.headers.get(":path");
      if (path === null) return UNKNOWN;
      const query = path.indexOf("?");
      return clean(query < 0 ? path : path.substring(0, query));
    }
    case LabelSource.Header:
      return clean(stream.request.headers.get(label.header));
    case LabelSource.Property:
      return clean(getPropertyString(label.property));
  }
  return UNKNOWN;
}

/**
 * The standard methods as themselves, anything else as `OTHER`: a client must not be able to
 * create a series per invented method.
 */
function method(value: string | null): string {
  if (value === null) return UNKNOWN;
  if (value == "GET") return "GET";
  if (value == "POST") return "POST";
  if (value == "PUT") return "PUT";
  if (value == "DELETE") return "DELETE";
  if (value == "HEAD") return "HEAD";
  if (value == "PATCH") return "PATCH";
  if (value == "OPTIONS") return "OPTIONS";
  if (value == "CONNECT") return "CONNECT";
  if (value == "TRACE") return "TRACE";
  return "OTHER";
}

/** `grpc` for a gRPC content type, else `http2` or `http` by the request's protocol. */
function protocol(stream: HttpContext): string {
  const contentType = stream.request.headers.get("content-type");
  if (contentType !== null && contentType.startsWith("application/grpc")) return "grpc";
  const p = getPropertyString(PROTOCOL);
  return p !== null && p.startsWith("HTTP/2") ? "http2" : "http";
}

/** `unknown` for a missing or empty value. (Escaping for the metric name happens once per series, in series.ts.) */
function clean(value: string | null): string {
  return value === null || value.length == 0 ? UNKNOWN : value;
}
