// A body (or any proxy-wasm buffer) of the current stream: read it, replace it, add before or
// after it. Envoy supports prepend, append and replace-all; other splices may be refused.

import { proxy_get_buffer_bytes, proxy_get_buffer_status, proxy_set_buffer_bytes } from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { clearReturned, RETURN_EXTRA, RETURN_PTR, RETURN_SIZE, takeReturnedBytes, takeReturnedString, toBytes } from "./memory";
import { BufferType, bufferTypeName, Status } from "./types";

// The ABI's "to the end" / "everything" for sizes and offsets.
const ALL: u32 = u32.MAX_VALUE;

/**
 * A host-backed buffer: the request body in onRequestBody, the response body in onResponseBody
 * (all of it so far when earlier chunks were buffered), the HTTP-call answer body, ...
 */
export class Body {
  constructor(readonly bufferType: BufferType) {}

  /** Bytes available now (`proxy_get_buffer_status`); 0 when the buffer does not exist here. */
  size(): u32 {
    store<u32>(RETURN_EXTRA, 0);
    store<u32>(RETURN_SIZE, 0);
    const status = <Status>proxy_get_buffer_status(this.bufferType, RETURN_SIZE, RETURN_EXTRA);
    if (status == Status.Ok) return load<u32>(RETURN_SIZE);
    if (status != Status.NotFound) this.report("proxy_get_buffer_status", status);
    return 0;
  }

  /** Up to `maxSize` bytes from `start` (default: all of it). Empty when the buffer does not exist here. */
  get(start: u32 = 0, maxSize: u32 = ALL): ArrayBuffer {
    clearReturned();
    const status = <Status>proxy_get_buffer_bytes(this.bufferType, start, maxSize, RETURN_PTR, RETURN_SIZE);
    if (status == Status.Ok) return takeReturnedBytes();
    if (status != Status.NotFound) this.report("proxy_get_buffer_bytes", status);
    return new ArrayBuffer(0);
  }

  /** The buffer decoded as UTF-8. */
  text(): string {
    // Decoded straight from the host's copy: no intermediate ArrayBuffer of the whole body.
    clearReturned();
    const status = <Status>proxy_get_buffer_bytes(this.bufferType, 0, ALL, RETURN_PTR, RETURN_SIZE);
    if (status == Status.Ok) return takeReturnedString();
    if (status != Status.NotFound) this.report("proxy_get_buffer_bytes", status);
    return "";
  }

  /** Replaces the whole buffer. `data`: string, ArrayBuffer, Uint8Array or Array<u8>. */
  set<T>(data: T): Status {
    return this.write("set", 0, ALL, toBytes<T>(data));
  }

  /** Inserts data before the current bytes. */
  prepend<T>(data: T): Status {
    return this.write("prepend", 0, 0, toBytes<T>(data));
  }

  /** Adds data after the current bytes. */
  append<T>(data: T): Status {
    return this.write("append", ALL, 0, toBytes<T>(data));
  }

  /** Replaces `length` bytes from `start` with data (hosts may refuse splices in the middle). */
  replace<T>(start: u32, length: u32, data: T): Status {
    return this.write("replace", start, length, toBytes<T>(data));
  }

  private write(operation: string, start: u32, length: u32, bytes: ArrayBuffer): Status {
    const status = <Status>proxy_set_buffer_bytes(this.bufferType, start, length, changetype<usize>(bytes), bytes.byteLength);
    if (status != Status.Ok) this.report("proxy_set_buffer_bytes", status, operation);
    return status;
  }

  private report(hostFunction: string, status: Status, operation: string = ""): void {
    let detail = bufferTypeName(this.bufferType);
    if (operation.length > 0) detail = operation + " " + detail;
    if (status == Status.InvalidMemoryAccess) failHostCall(hostFunction, status, detail);
    else warnHostCall(hostFunction, status, detail);
  }
}
