// The WASI preview1 functions SDK builds import: fd_write to the plugin log, clocks, randomness,
// the plugin's own environment (empty unless given), arguments (empty), the file-system stubs, and proc_exit ending the VM.
import test from 'ava';
import { GET, Probe, WILD } from '../helpers/probe.ts';

const Errno = { SUCCESS: 0, BADF: 8, FAULT: 21, NOTSUP: 58, SPIPE: 70 } as const;
const START = Date.UTC(2026, 0, 1);

/** Writes iovecs for `chunks` and calls fd_write; returns errno and nwritten. */
function write(p: Probe, fd: number, chunks: string[]) {
  const iovs = p.zeroed(chunks.length * 8 || 8);
  const mem = p.vm().mem;
  chunks.forEach((chunk, i) => {
    const [ptr, len] = p.put(chunk);
    mem.putU32(iovs + i * 8, ptr);
    mem.putU32(iovs + i * 8 + 4, len);
  });
  const nwritten = p.zeroed(4);
  const errno = p.call('fd_write', fd, iovs, chunks.length, nwritten);
  return { errno, nwritten: p.u32(nwritten) };
}

test('fd_write to stdout logs each line at info, to stderr at error; nwritten counts the bytes', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [write(p, 1, ['hello ', 'world\n']), write(p, 2, ['bad thing\n'])]);
  t.deepEqual(value, [
    { errno: Errno.SUCCESS, nwritten: 12 },
    { errno: Errno.SUCCESS, nwritten: 10 },
  ]);
  t.deepEqual(p.logLines(), ['info: hello world', 'error: bad thing']);
});

test('fd_write holds a partial line until its newline, and splits several lines', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => write(p, 1, ['par']));
  t.deepEqual(p.logLines(), []);
  p.inRoot(() => write(p, 1, ['tial\nsecond\nthi']));
  t.deepEqual(p.logLines(), ['info: partial', 'info: second']);
});

test('fd_write with no iovecs, or empty ones with any pointer, writes nothing and succeeds', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const iovs = p.zeroed(8);
    p.vm().mem.putU32(iovs, WILD); // pointer of an empty iovec: never read
    const nwritten = p.zeroed(4);
    return [p.call('fd_write', 1, iovs, 0, nwritten), p.call('fd_write', 1, iovs, 1, nwritten), p.u32(nwritten)];
  });
  t.deepEqual(value, [Errno.SUCCESS, Errno.SUCCESS, 0]);
  t.deepEqual(p.logLines(), []);
});

test('fd_write to another fd is BADF; iovecs, data or nwritten outside memory are FAULT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const badData = p.zeroed(8);
    p.vm().mem.putU32(badData, WILD);
    p.vm().mem.putU32(badData + 4, 4);
    return [
      write(p, 0, ['x\n']).errno,
      write(p, 3, ['x\n']).errno,
      p.call('fd_write', 1, WILD, 1, p.zeroed(4)),
      p.call('fd_write', 1, badData, 1, p.zeroed(4)),
      p.call('fd_write', 1, p.zeroed(8), 1, WILD),
    ];
  });
  t.deepEqual(value, [Errno.BADF, Errno.BADF, Errno.FAULT, Errno.FAULT, Errno.FAULT]);
});

test('clock_time_get: the realtime clock is the host clock in ns; monotonic clocks tick; unknown clocks are NOTSUP; a wild pointer is FAULT', async (t) => {
  const p = await Probe.load({ startTime: START });
  const value = p.inRoot(() => {
    const ret = p.zeroed(8);
    const realtime = [p.call('clock_time_get', 0, 1n, ret), p.u64(ret)];
    const mono = p.zeroed(8);
    const monotonic = p.call('clock_time_get', 1, 1n, mono);
    return { realtime, monotonic, mono: p.u64(mono), unknown: p.call('clock_time_get', 9, 1n, ret), wild: p.call('clock_time_get', 0, 1n, WILD) };
  });
  t.deepEqual(value.realtime, [Errno.SUCCESS, 1_767_225_600_000_000_000n]);
  t.is(value.monotonic, Errno.SUCCESS);
  t.true(value.mono > 0n);
  t.is(value.unknown, Errno.NOTSUP);
  t.is(value.wild, Errno.FAULT);
});

test('random_get fills the buffer; outside memory it is FAULT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const buf = p.zeroed(64);
    return [p.call('random_get', buf, 64), p.bytes(buf, 64).some((b) => b !== 0), p.call('random_get', WILD, 64), p.call('random_get', buf, -1)];
  });
  t.deepEqual(value, [Errno.SUCCESS, true, Errno.FAULT, Errno.FAULT]);
});

test('without an environment option the environment is empty (nothing of the host\'s), and the arguments are empty', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const a = p.zeroed(4);
    const b = p.zeroed(4);
    p.vm().mem.putU32(a, 99);
    p.vm().mem.putU32(b, 99);
    const env = [p.call('environ_sizes_get', a, b), p.u32(a), p.u32(b)];
    p.vm().mem.putU32(a, 99);
    p.vm().mem.putU32(b, 99);
    const args = [p.call('args_sizes_get', a, b), p.u32(a), p.u32(b)];
    return { env, args, wild: [p.call('environ_sizes_get', WILD, b), p.call('args_sizes_get', a, WILD)] };
  });
  t.deepEqual(value, { env: [0, 0, 0], args: [0, 0, 0], wild: [Errno.FAULT, Errno.FAULT] });
});

test('there is no file system: fd_read is BADF, fd_seek SPIPE, fd_close succeeds, sched_yield succeeds', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [p.call('fd_read', 0, p.zeroed(8), 1, p.zeroed(4)), p.call('fd_seek', 1, 0n, 0, p.zeroed(8)), p.call('fd_close', 1), p.call('sched_yield')]);
  t.deepEqual(value, [Errno.BADF, Errno.SPIPE, Errno.SUCCESS, Errno.SUCCESS]);
});

test('fd_fdstat_get describes stdout as a character device', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const stat = p.zeroed(24);
    return [p.call('fd_fdstat_get', 1, stat), p.bytes(stat, 1)[0], p.call('fd_fdstat_get', 7, stat), p.call('fd_fdstat_get', 1, WILD)];
  });
  t.deepEqual(value, [Errno.SUCCESS, 2, Errno.BADF, Errno.FAULT]);
});

test('proc_exit ends the guest call: the VM fails, FAIL_CLOSE answers 503, and the failure names proc_exit', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => p.call('proc_exit', 3));
  const r = await p.h.stream().requestHeaders(GET);
  t.like(r, { kind: 'local-reply', status: 503, filter: 'probe' });
  const failure = p.h.plugins[0].stats.lastFailure!;
  t.is(failure.callback, 'proxy_on_request_headers');
  t.is(failure.message, 'the filter called proc_exit(3) (in proxy_on_request_headers)');
  t.is(p.h.plugins[0].vm, undefined);
});

test('proc_exit in a root callback fails the VM too; with FAIL_OPEN the next stream gets a fresh VM', async (t) => {
  const p = await Probe.load({ failStrategy: 'FAIL_OPEN' });
  p.once('proxy_on_foreign_function', () => p.call('proc_exit', 0));
  t.is(p.h.callForeign(1), -1);
  t.is(p.h.plugins[0].stats.lastFailure!.message, 'the filter called proc_exit(0) (in proxy_on_foreign_function)');
  t.is(p.h.plugins[0].vm, undefined);
  const r = await p.h.stream().requestHeaders(GET, { endOfStream: true });
  t.deepEqual(r, { kind: 'continue' });
  t.is(p.h.plugins[0].stats.vmsStarted, 2);
  t.deepEqual(p.log().slice(4), [
    'proxy_on_foreign_function(1,1,0)',
    '_initialize()',
    'proxy_on_context_create(1,0)',
    'proxy_on_vm_start(1,0)',
    'proxy_on_configure(1,0)',
    'proxy_on_context_create(2,1)',
    'proxy_on_request_headers(2,4,1)',
  ]);
});

test('environ_sizes_get and environ_get serve exactly the plugin\'s environment, "NAME=value\\0" each in order; a bad pointer is FAULT and writes nothing', async (t) => {
  const p = await Probe.load({ environment: { MODE: 'enforce', GREETING: 'héllo wörld', EMPTY: '' } });
  const value = p.inRoot(() => {
    const a = p.zeroed(4);
    const b = p.zeroed(4);
    const sizes = [p.call('environ_sizes_get', a, b), p.u32(a), p.u32(b)];
    const pointers = p.zeroed(12);
    const buf = p.zeroed(p.u32(b));
    const got = p.call('environ_get', pointers, buf);
    const strings = [0, 1, 2].map((i) => {
      const at = p.u32(pointers + i * 4);
      let end = at;
      while (p.bytes(end, 1)[0] !== 0) end++;
      return Buffer.from(p.bytes(at, end - at)).toString('utf8');
    });
    const untouched = p.zeroed(12);
    const wild = [p.call('environ_get', WILD, buf), p.call('environ_get', untouched, WILD), p.bytes(untouched, 12).every((x) => x === 0)];
    return { sizes, got, strings, first: p.u32(pointers) === buf, wild };
  });
  const bytes = Buffer.byteLength('MODE=enforce\0GREETING=héllo wörld\0EMPTY=\0');
  t.deepEqual(value, { sizes: [0, 3, bytes], got: 0, strings: ['MODE=enforce', 'GREETING=héllo wörld', 'EMPTY='], first: true, wild: [Errno.FAULT, Errno.FAULT, true] });
});

test('an environment variable name that is not NAME-shaped, or a value with NUL, is refused at load', async (t) => {
  for (const [environment, what] of [[{ 'A=B': 'x' }, 'environment variable name "A=B" is not a letter or "_" followed by letters, digits and "_"'], [{ A: 'x\0y' }, 'environment variable A must be a string without NUL characters']] as const) {
    const e = await t.throwsAsync(Probe.load({ environment }));
    t.is(e!.message, `filter "probe": ${what}`);
  }
});
