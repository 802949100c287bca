// Foreign functions (`proxy_call_foreign_function`): named host extensions beyond the standard
// ABI. Sluice documents the ones it offers in docs/filter-authoring.md.

import { proxy_call_foreign_function } from "./abi";
import { failHostCall, warnHostCall } from "./errors";
import { clearReturned, RETURN_PTR, RETURN_SIZE, takeReturnedBytes, toBytes } from "./memory";
import { Status } from "./types";

/** The outcome of a foreign function call: its status and, when Ok, its result bytes. */
export class ForeignResult {
  constructor(readonly status: Status, readonly bytes: ArrayBuffer) {}

  get ok(): bool {
    return this.status == Status.Ok;
  }

  text(): string {
    return String.UTF8.decode(this.bytes);
  }
}

/** Calls the host's foreign function `name` with `args` (string or bytes). Failures are logged. */
export function callForeignFunction<T>(name: string, args: T): ForeignResult {
  const nameBytes = String.UTF8.encode(name);
  const argBytes = toBytes<T>(args);
  clearReturned();
  const status = <Status>proxy_call_foreign_function(
    changetype<usize>(nameBytes), nameBytes.byteLength, changetype<usize>(argBytes), argBytes.byteLength, RETURN_PTR, RETURN_SIZE,
  );
  if (status == Status.Ok) return new ForeignResult(status, takeReturnedBytes());
  if (status == Status.InvalidMemoryAccess) failHostCall("proxy_call_foreign_function", status, "function '" + name + "'");
  else warnHostCall("proxy_call_foreign_function", status, "function '" + name + "'");
  return new ForeignResult(status, new ArrayBuffer(0));
}
