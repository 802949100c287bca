// The request or the response of the current HTTP stream, as a filter sees it: headers,
// trailers and body, each read and changed through the host.

import { Body } from "./body";
import { HeaderMap } from "./header-map";
import { BufferType, MapType } from "./types";

export class HttpMessage {
  readonly headers: HeaderMap;
  readonly trailers: HeaderMap;
  readonly body: Body;

  constructor(headers: MapType, trailers: MapType, body: BufferType) {
    this.headers = new HeaderMap(headers);
    this.trailers = new HeaderMap(trailers);
    this.body = new Body(body);
  }
}

// The host functions act on the effective context, so one instance of each serves every stream.
export const REQUEST = new HttpMessage(MapType.RequestHeaders, MapType.RequestTrailers, BufferType.HttpRequestBody);
export const RESPONSE = new HttpMessage(MapType.ResponseHeaders, MapType.ResponseTrailers, BufferType.HttpResponseBody);
