// Loads the capture addon (native/capture.c, built by `npm run build` on Linux) and says why
// capture cannot run when it is missing, so callers and tests can report the reason.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../errors.ts';

export interface CaptureAddon {
  /**
   * A listening, non-blocking TCP socket bound to host:port inside the netns at `netnsPath`. Its
   * port can be shared with another proxy's (SO_REUSEPORT): new connections go to the newer one.
   */
  listenInNetns(netnsPath: string, host: string, port: number, mark: number): number;
  /** The same in the caller's own netns (the node's ports): shared, new connections to the newer socket. */
  listenShared(host: string, port: number, v6only: boolean): number;
  /** An unconnected, non-blocking TCP socket created in the netns, carrying SO_MARK `mark`. */
  socketInNetns(netnsPath: string, family: 4 | 6, mark: number): number;
  /**
   * A thread parked in the netns, for `netnsSocket`: per socket a hand-off (~17 us) instead of a
   * thread start and setns() (~190 us). End it with `netnsClose`.
   */
  netnsOpen(netnsPath: string): NetnsHandle;
  /** An unconnected, non-blocking TCP socket created by the parked thread, carrying SO_MARK `mark`. */
  netnsSocket(handle: NetnsHandle, family: 4 | 6, mark: number): number;
  netnsClose(handle: NetnsHandle): void;
  /** The destination a connection had before nat REDIRECT (SO_ORIGINAL_DST). */
  originalDst(fd: number): { address: string; port: number; family: 4 | 6 };
  closeFd(fd: number): void;
}

// node-gyp builds beside the C source; from dist/ (the compiled CLI) that is three levels up.
const ADDON = 'native/build/Release/sluice_capture.node';
/** Opaque: a native worker parked in one network namespace. */
export type NetnsHandle = { readonly __netns: unique symbol };

export const ADDON_PATH = [new URL(`./${ADDON}`, import.meta.url), new URL(`../../../runtime/capture/${ADDON}`, import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((p) => existsSync(p)) ?? fileURLToPath(new URL(`./${ADDON}`, import.meta.url));

let loaded: CaptureAddon | undefined;

/** Why capture cannot run here, or undefined when it can (Linux, root, the addon built). */
export function captureUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `capture needs Linux (network namespaces, nftables); this is ${process.platform}`;
  if (process.getuid?.() !== 0) return 'capture needs root (entering network namespaces, SO_MARK, nft)';
  if (!existsSync(ADDON_PATH)) return `the capture addon is not built (${ADDON_PATH}); run \`npm run build\` on a machine with Node's headers`;
  return undefined;
}

export function loadAddon(): CaptureAddon {
  if (loaded) return loaded;
  const why = captureUnavailable();
  if (why) throw new SluiceError('SLUICE_ERR_CAPTURE_UNAVAILABLE', why);
  loaded = createRequire(import.meta.url)(ADDON_PATH) as CaptureAddon;
  return loaded;
}
