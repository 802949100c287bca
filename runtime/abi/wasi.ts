// The WASI preview1 functions that proxy-wasm SDK builds import (Rust, TinyGo, C++, AssemblyScript
// with WASI), linked under both `wasi_snapshot_preview1` and `wasi_unstable`. There is no file
// system: stdout/stderr go to the plugin's log, clocks and randomness are real, the environment is
// the plugin's own (its spec's `environment`, nothing of the host's), the arguments are empty.

import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { GuestAbort } from './host-functions.ts';
import type { GuestMemory } from './memory.ts';

// A pointer outside memory is FAULT (21), as the proxy-wasm spec and cpp-host answer; INVAL is for bad values.
const Errno = { Success: 0, Badf: 8, Fault: 21, Inval: 28, Nosys: 52, Spipe: 70, Notsup: 58 } as const;

export interface WasiHost {
  readonly mem: GuestMemory;
  log(level: number, message: string): void;
  nowNanoseconds(): bigint;
}

type WasiFunction = (...args: never[]) => number | void;

/** `environment`: the variables environ_get serves, in this order (the plugin's `environment`). */
export function wasiFunctions(host: WasiHost, environment: Readonly<Record<string, string>> = {}): Record<string, WasiFunction> {
  const mem = host.mem;
  const pending: Record<number, string> = { 1: '', 2: '' };
  // "NAME=value\0" each, as WASI hands them out: the strings back to back, a pointer to each.
  const environ = Object.entries(environment).map(([name, value]) => Buffer.from(`${name}=${value}\0`, 'utf8'));
  const environBytes = environ.reduce((n, b) => n + b.byteLength, 0);

  return {
    fd_write(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number) {
      if (fd !== 1 && fd !== 2) return Errno.Badf;
      let total = 0;
      let text = '';
      for (let i = 0; i < iovsLen >>> 0; i++) {
        const ptr = mem.u32((iovs >>> 0) + i * 8);
        const len = mem.u32((iovs >>> 0) + i * 8 + 4);
        if (ptr === undefined || len === undefined) return Errno.Fault;
        if (len === 0) continue; // an empty iovec's pointer is never read (cpp-host skips it too)
        const chunk = mem.string(ptr, len);
        if (chunk === undefined) return Errno.Fault;
        text += chunk;
        total += len;
      }
      // Log whole lines: SDKs write a message and its newline in separate calls.
      const lines = (pending[fd] + text).split('\n');
      pending[fd] = lines.pop() ?? '';
      for (const line of lines) host.log(fd === 1 ? 2 : 4, line);
      return mem.putU32(nwrittenPtr >>> 0, total) ? Errno.Success : Errno.Fault;
    },
    fd_read: () => Errno.Badf,
    fd_close: () => Errno.Success,
    fd_seek: () => Errno.Spipe,
    fd_sync: () => Errno.Success,
    fd_fdstat_get(fd: number, statPtr: number) {
      if (fd < 0 || fd > 2) return Errno.Badf;
      const b = mem.bytes;
      const ptr = statPtr >>> 0;
      if (ptr + 24 > b.byteLength) return Errno.Fault;
      b.fill(0, ptr, ptr + 24);
      b[ptr] = 2; // filetype: character device
      return Errno.Success;
    },
    fd_fdstat_set_flags: () => Errno.Notsup,
    fd_prestat_get: () => Errno.Badf,
    fd_prestat_dir_name: () => Errno.Badf,
    fd_filestat_get: () => Errno.Badf,
    path_open: () => Errno.Notsup,
    path_filestat_get: () => Errno.Notsup,
    environ_sizes_get(countPtr: number, sizePtr: number) {
      return mem.putU32(countPtr >>> 0, environ.length) && mem.putU32(sizePtr >>> 0, environBytes) ? Errno.Success : Errno.Fault;
    },
    environ_get(environPtr: number, bufPtr: number) {
      const pointers = environPtr >>> 0;
      const buf = bufPtr >>> 0;
      // Checked whole before anything is written: a bad pointer changes no guest memory.
      if (environ.length === 0) return Errno.Success;
      if (!mem.inBounds(pointers, environ.length * 4) || !mem.inBounds(buf, environBytes)) return Errno.Fault;
      let offset = 0;
      environ.forEach((entry, i) => {
        mem.putU32(pointers + i * 4, buf + offset);
        mem.bytes.set(entry, buf + offset);
        offset += entry.byteLength;
      });
      return Errno.Success;
    },
    args_sizes_get(countPtr: number, sizePtr: number) {
      return mem.putU32(countPtr >>> 0, 0) && mem.putU32(sizePtr >>> 0, 0) ? Errno.Success : Errno.Fault;
    },
    args_get: () => Errno.Success,
    clock_res_get(clockId: number, resPtr: number) {
      if (clockId < 0 || clockId > 3) return Errno.Inval;
      return mem.putU64(resPtr >>> 0, 1000n) ? Errno.Success : Errno.Fault;
    },
    clock_time_get(clockId: number, _precision: bigint, timePtr: number) {
      let now: bigint;
      if (clockId === 0) now = host.nowNanoseconds();
      else if (clockId === 1 || clockId === 2 || clockId === 3) now = process.hrtime.bigint();
      else return Errno.Notsup; // the proxy-wasm spec: NOTSUP for an unknown clock
      return mem.putU64(timePtr >>> 0, now) ? Errno.Success : Errno.Fault;
    },
    random_get(ptr: number, len: number) {
      const b = mem.bytes;
      if ((ptr >>> 0) + (len >>> 0) > b.byteLength) return Errno.Fault;
      randomFillSync(b, ptr >>> 0, len >>> 0);
      return Errno.Success;
    },
    sched_yield: () => Errno.Success,
    poll_oneoff: () => Errno.Notsup,
    proc_exit(code: number) {
      throw new GuestAbort(`the filter called proc_exit(${code})`);
    },
  };
}

/** `env` helpers some toolchains import besides proxy_*: AssemblyScript's abort/trace/seed, emscripten's growth hook. */
export function toolchainFunctions(host: WasiHost): Record<string, WasiFunction> {
  const mem = host.mem;
  // AssemblyScript strings are UTF-16 with their byte length in the 4 bytes before the pointer.
  const asString = (ptr: number): string => {
    ptr >>>= 0;
    if (ptr < 4) return '';
    const len = mem.u32(ptr - 4);
    if (len === undefined || !mem.inBounds(ptr, len)) return '';
    return mem.bytes.toString('utf16le', ptr, ptr + len);
  };
  return {
    abort(msg: number, file: number, line: number, column: number) {
      const text = `abort: ${asString(msg)} at ${asString(file)}:${line >>> 0}:${column >>> 0}`;
      host.log(5, text);
      throw new GuestAbort(text);
    },
    trace(msg: number, n: number, ...values: number[]) {
      host.log(2, `trace: ${asString(msg)} ${values.slice(0, n).join(', ')}`.trim());
    },
    seed: () => Date.now() * Math.random(),
    emscripten_notify_memory_growth: () => {},
  };
}
