// Memory per stream is bounded through the real `sluice run` process: a client that does not read
// a large response (HTTP/1.1 and HTTP/2), and an upload to an upstream that does not read yet,
// leave the proxy's resident memory far below the body's size, and every byte still arrives.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import http2 from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { runSluice, type SluiceProcess } from '../helpers/sluice-run.ts';

const MiB = 1024 * 1024;
/** How much the proxy's RSS may grow while one stream's body is held up. */
const BOUND = 64 * MiB;

/** Resident memory of a process, from /proc. */
function rss(pid: number): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(line![1]) * 1024;
}

/** Samples `pid`'s RSS every 50 ms for `ms`; the largest value seen. */
async function peakRss(pid: number, ms: number): Promise<number> {
  let peak = rss(pid);
  for (const end = Date.now() + ms; Date.now() < end; ) {
    await new Promise((r) => setTimeout(r, 50));
    peak = Math.max(peak, rss(pid));
  }
  return peak;
}

/** The n-th MiB of a generated body: a counter, so reordering or loss shows in the checksum. */
function block(n: number): Buffer {
  const b = Buffer.alloc(MiB, n & 0xff);
  for (let i = 0; i < MiB; i += 4096) b.writeUInt32BE(n * 256 + i / 4096, i);
  return b;
}

async function listen(t: ExecutionContext, server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** An upstream answering every GET with `mib` MiB of generated body, written as its client takes it. */
async function bigResponder(t: ExecutionContext, mib: number): Promise<number> {
  const server = createServer(async (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(mib * MiB) });
    for (let n = 0; n < mib && !res.destroyed; n++) {
      if (!res.write(block(n))) await new Promise((r) => (res.once('drain', r), res.once('close', r)));
    }
    res.end();
  });
  return listen(t, server);
}

async function proxy(t: ExecutionContext, upstreamPort: number): Promise<{ run: SluiceProcess; port: number; pid: number }> {
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: up
        timeoutMs: 60000
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstreamPort}]
    requestTimeoutMs: 60000
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  return { run, port, pid: run.child.pid! };
}

test('HTTP/1.1: a client that does not read a 256 MiB response leaves the proxy\'s memory bounded', async (t) => {
  const up = await bigResponder(t, 256);
  const { port, pid } = await proxy(t, up);
  const before = rss(pid);

  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
  // The client reads only the first bytes (the response head), then nothing for 3 s.
  const first = await new Promise<Buffer>((r) => socket.once('data', r));
  socket.pause();
  t.true(first.toString('latin1').startsWith('HTTP/1.1 200'), first.toString('latin1', 0, 40));
  const peak = await peakRss(pid, 3000);
  t.log(`RSS before ${(before / MiB).toFixed(1)} MiB, peak while the client does not read ${(peak / MiB).toFixed(1)} MiB`);
  t.true(peak - before < BOUND, `the proxy grew by ${((peak - before) / MiB).toFixed(1)} MiB`);

  // Then it reads: the first 4 MiB of the body arrive intact.
  const head = first.indexOf('\r\n\r\n') + 4;
  const chunks: Buffer[] = [first.subarray(head)];
  let got = chunks[0]!.length;
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    got += c.length;
    if (got >= 4 * MiB) socket.pause();
  });
  socket.resume();
  while (got < 4 * MiB) await new Promise((r) => setTimeout(r, 20));
  const body = Buffer.concat(chunks).subarray(0, 4 * MiB);
  t.true(body.equals(Buffer.concat([block(0), block(1), block(2), block(3)])));
});

test('HTTP/2: a client that does not read a 256 MiB response leaves the proxy\'s memory bounded', async (t) => {
  const up = await bigResponder(t, 256);
  const { port, pid } = await proxy(t, up);
  const before = rss(pid);

  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const stream = session.request({ ':path': '/big' });
  stream.on('error', () => {});
  const headers = await new Promise<http2.IncomingHttpHeaders>((r) => stream.once('response', r));
  t.is(headers[':status'], 200);
  // No 'data' listener: the stream stays paused and the proxy's send window runs out.
  const peak = await peakRss(pid, 3000);
  t.log(`RSS before ${(before / MiB).toFixed(1)} MiB, peak while the client does not read ${(peak / MiB).toFixed(1)} MiB`);
  t.true(peak - before < BOUND, `the proxy grew by ${((peak - before) / MiB).toFixed(1)} MiB`);

  const chunks: Buffer[] = [];
  let got = 0;
  await new Promise<void>((resolve) => {
    stream.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= 4 * MiB) {
        stream.pause();
        resolve();
      }
    });
  });
  t.true(Buffer.concat(chunks).subarray(0, 4 * MiB).equals(Buffer.concat([block(0), block(1), block(2), block(3)])));
});

test('an upload of 128 MiB to an upstream that does not read yet leaves the proxy\'s memory bounded, and arrives intact', async (t) => {
  const MIB_UP = 128;
  let letRead!: () => void;
  const reading = new Promise<void>((r) => (letRead = r));
  const server = createServer(async (req, res) => {
    // The upstream takes the request head, then reads nothing until told to.
    await reading;
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const c of req) {
      hash.update(c as Buffer);
      bytes += (c as Buffer).length;
    }
    res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
  });
  const up = await listen(t, server);
  const { port, pid } = await proxy(t, up);
  const before = rss(pid);

  const expected = createHash('sha256');
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answer = '';
  socket.on('data', (c) => (answer += c));
  socket.write(`POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${MIB_UP * MiB}\r\n\r\n`);
  const sending = (async () => {
    for (let n = 0; n < MIB_UP && !socket.destroyed; n++) {
      const b = block(n);
      expected.update(b);
      if (!socket.write(b)) await new Promise((r) => socket.once('drain', r));
    }
  })();
  const peak = await peakRss(pid, 3000);
  t.log(`RSS before ${(before / MiB).toFixed(1)} MiB, peak while the upstream does not read ${(peak / MiB).toFixed(1)} MiB`);
  t.true(peak - before < BOUND, `the proxy grew by ${((peak - before) / MiB).toFixed(1)} MiB`);

  letRead();
  await sending;
  while (!answer.includes('}')) await new Promise((r) => setTimeout(r, 20));
  t.true(answer.startsWith('HTTP/1.1 200'), answer);
  const got = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { bytes: number; sha256: string };
  t.deepEqual(got, { bytes: MIB_UP * MiB, sha256: expected.digest('hex') });
});

test('HTTP/2: an upload of 128 MiB to an upstream that does not read yet leaves the proxy\'s memory bounded, and arrives intact', async (t) => {
  const MIB_UP = 128;
  let letRead!: () => void;
  const reading = new Promise<void>((r) => (letRead = r));
  const server = createServer(async (req, res) => {
    await reading;
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const c of req) {
      hash.update(c as Buffer);
      bytes += (c as Buffer).length;
    }
    res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }));
  });
  const up = await listen(t, server);
  const { port, pid } = await proxy(t, up);
  const before = rss(pid);

  const expected = createHash('sha256');
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const stream = session.request({ ':method': 'POST', ':path': '/upload' });
  let answer = '';
  stream.on('data', (c) => (answer += c));
  const ended = new Promise<void>((resolve, reject) => (stream.on('end', resolve), stream.on('error', reject)));
  const sending = (async () => {
    for (let n = 0; n < MIB_UP && !stream.destroyed; n++) {
      const b = block(n);
      expected.update(b);
      if (!stream.write(b)) await new Promise((r) => stream.once('drain', r));
    }
    stream.end();
  })();
  const peak = await peakRss(pid, 3000);
  t.log(`RSS before ${(before / MiB).toFixed(1)} MiB, peak while the upstream does not read ${(peak / MiB).toFixed(1)} MiB`);
  t.true(peak - before < BOUND, `the proxy grew by ${((peak - before) / MiB).toFixed(1)} MiB`);

  letRead();
  await sending;
  await ended;
  t.deepEqual(JSON.parse(answer), { bytes: MIB_UP * MiB, sha256: expected.digest('hex') });
});

test('a filter that buffers a body past its limits.bodyBytes: 413 for an 8 MiB upload, 500 for an 8 MiB response, memory bounded', async (t) => {
  const up = await bigResponder(t, 8);
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
filters:
  - name: brackets
    module: \${repo}/build/fixtures/stream/brackets.wasm
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [brackets]
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${up}]
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const pid = run.child.pid!;
  const before = rss(pid);

  // The upload: the filter buffers it to its end (brackets.wat), past 1 MiB it is refused.
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let answer = '';
  socket.on('data', (c) => (answer += c));
  socket.on('error', () => {});
  socket.write(`POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${8 * MiB}\r\n\r\n`);
  for (let n = 0; n < 8 && !socket.destroyed && !answer.includes('\r\n\r\n'); n++) {
    if (!socket.write(block(n))) await new Promise((r) => (socket.once('drain', r), socket.once('close', r), setTimeout(r, 500)));
  }
  while (!answer.includes('(limits.bodyBytes)')) {
    if (socket.destroyed) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.true(answer.startsWith('HTTP/1.1 413 '), answer.slice(0, 200));
  t.true(answer.includes('sluice: filter "brackets" buffered more than its body limit of 1048576 bytes (limits.bodyBytes)'), answer.slice(0, 400));

  // The response: the same filter buffers the upstream's 8 MiB; the client gets a 500 instead.
  const res = await new Promise<{ head: string; body: string }>((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    s.on('data', (c) => {
      text += c;
      const at = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text.slice(0, at));
      if (at >= 0 && length && text.length >= at + 4 + Number(length[1])) {
        s.destroy();
        resolve({ head: text.slice(0, at), body: text.slice(at + 4) });
      }
    });
    s.on('error', reject);
    s.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
  });
  t.true(res.head.startsWith('HTTP/1.1 500 '), res.head);
  t.true(res.body.includes('buffered more than its body limit of 1048576 bytes (limits.bodyBytes)'), res.body);
  const after = rss(pid);
  t.true(after - before < BOUND, `the proxy grew by ${((after - before) / MiB).toFixed(1)} MiB`);
});
