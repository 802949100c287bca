// Logging through the host (`proxy_log`): `log.info("...")` and friends. The host drops messages
// below its level; check `log.enabled(...)` first when building the message is itself costly.

import { proxy_get_log_level, proxy_log } from "./abi";
import { encodeArea, encodeUtf8Units, releaseEncoded, RETURN_U64 } from "./memory";
import { LogLevel } from "./types";

function write(level: LogLevel, message: string): void {
  // Encoded into the SDK's scratch area: logging allocates nothing beyond the message itself.
  const area = encodeArea(<usize>message.length * 3);
  const size = encodeUtf8Units(changetype<usize>(message), <usize>message.length, area);
  // A failed proxy_log has nowhere better to be reported; it is ignored on purpose.
  proxy_log(level, area, size);
  releaseEncoded();
}

export namespace log {
  export function trace(message: string): void { write(LogLevel.Trace, message); }
  export function debug(message: string): void { write(LogLevel.Debug, message); }
  export function info(message: string): void { write(LogLevel.Info, message); }
  export function warn(message: string): void { write(LogLevel.Warn, message); }
  export function error(message: string): void { write(LogLevel.Error, message); }
  export function critical(message: string): void { write(LogLevel.Critical, message); }
  /** Logs at a level chosen at run time. */
  export function at(level: LogLevel, message: string): void { write(level, message); }

  /** The host's current log level (`proxy_get_log_level`); Trace when the host cannot say. */
  export function level(): LogLevel {
    store<u32>(RETURN_U64, 0);
    if (proxy_get_log_level(RETURN_U64) != 0) return LogLevel.Trace;
    return <LogLevel>load<u32>(RETURN_U64);
  }

  /** Whether a message at `messageLevel` would be kept by the host. */
  export function enabled(messageLevel: LogLevel): bool {
    return messageLevel >= level();
  }
}
