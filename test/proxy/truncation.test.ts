// A stream cut short is never passed on as complete, through the real `sluice run` process: an
// HTTP/2 client that resets its stream mid-upload gets the upstream request aborted (never ended);
// an upstream that breaks off mid-response gets the HTTP/2 client a RST_STREAM with an error code
// (never NO_ERROR) and the HTTP/1.1 client a closed connection without the chunked terminator.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { FLAG, FRAME, frame, rawH2, rawH2Server, rstFrame } from '../helpers/h2-frames.ts';
import { runSluice, until } from '../helpers/sluice-run.ts';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;

async function upstream(t: ExecutionContext, handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

async function proxy(t: ExecutionContext, port: number, protocol = 'http1', clusterExtra = '') {
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - cluster: up
        timeoutMs: 20000
clusters:
  - name: up
    endpoints: [127.0.0.1:${port}]
    protocol: ${protocol}
    ${clusterExtra}
`);
  t.teardown(() => run.stop());
  return { run, port: await run.port('web') };
}

test('an HTTP/2 upload the client resets mid-body is aborted upstream, never ended', async (t) => {
  // What the upstream saw of each request: 'end' (a whole request) or 'aborted'.
  const seen = new Map<string, string>();
  const reading = new Set<string>();
  const port = await upstream(t, (req, res) => {
    let bytes = 0;
    reading.add(req.url!);
    req.on('data', (c: Buffer) => (bytes += c.byteLength));
    req.on('end', () => {
      seen.set(req.url!, `end after ${bytes} bytes`);
      res.end('whole');
    });
    req.on('aborted', () => seen.set(req.url!, 'aborted'));
    res.on('close', () => {
      if (!seen.has(req.url!)) seen.set(req.url!, 'aborted');
    });
  });
  await truncatedUploads(t, await proxy(t, port), seen, reading);
});

test('an HTTP/2 upload the client resets mid-body is aborted at an HTTP/2 upstream too', async (t) => {
  const seen = new Map<string, string>();
  const reading = new Set<string>();
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    let bytes = 0;
    reading.add(path);
    stream.on('error', () => {});
    stream.on('data', (c: Buffer) => (bytes += c.byteLength));
    stream.on('end', () => {
      seen.set(path, `end after ${bytes} bytes`);
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end('whole');
    });
    stream.on('close', () => {
      if (!seen.has(path)) seen.set(path, 'aborted');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  await truncatedUploads(t, await proxy(t, (server.address() as AddressInfo).port, 'http2'), seen, reading);
});

/**
 * Sends 40 uploads cut short by the client (HEADERS, DATA without END_STREAM, RST_STREAM: the
 * body is incomplete, unmistakably) and checks that none reached the upstream as complete.
 * `seen`: how each request the upstream got ended ('end ...' or 'aborted'); `reading`: requests it got.
 */
async function truncatedUploads(t: ExecutionContext, { run, port }: Awaited<ReturnType<typeof proxy>>, seen: Map<string, string>, reading: Set<string>) {
  const client = await rawH2(port);
  t.teardown(() => client.socket.destroy());
  const chunk = Buffer.alloc(8 * 1024, 'a');
  for (let i = 0; i < 40; i++) {
    const id = 2 * i + 1;
    client.socket.write(Buffer.concat([client.post(id, `/upload/${i}`), client.data(id, chunk)]));
    if (i % 2 === 1) {
      // Half the tries: the reset follows once the upstream is reading the body.
      await until(`the upstream to start reading /upload/${i}`, () => (reading.has(`/upload/${i}`) ? true : undefined), 2000).catch(() => {});
      client.socket.write(client.data(id, chunk));
    }
    client.socket.write(client.rst(id, NGHTTP2_CANCEL));
    // Spaced out: this is not a rapid-reset attack.
    await new Promise((r) => setTimeout(r, 30));
  }
  // Every request that reached the upstream ends, one way or the other.
  await until(`every request the upstream got to end; ${reading.size} got, ${seen.size} ended`, () => (reading.size === seen.size ? true : undefined), 10_000);
  const ended = [...seen].filter(([, how]) => how.startsWith('end'));
  t.deepEqual(ended, [], `of ${seen.size} requests that reached the upstream, these were delivered as complete`);
  t.true(seen.size > 0, 'some requests reached the upstream');
  t.is(run.child.exitCode, null);
}

/** An upstream that sends 64 KiB of a 1 MiB chunked answer, then drops the connection. */
function breakingUpstream(req: IncomingMessage, res: ServerResponse) {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  res.write(Buffer.alloc(64 * 1024, 'b'));
  setTimeout(() => res.socket?.destroy(), 50);
}

test('an upstream that breaks off mid-response gets the HTTP/2 client RST_STREAM INTERNAL_ERROR', async (t) => {
  const { port } = await proxy(t, await upstream(t, breakingUpstream));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const result = await new Promise<{ status: number; bytes: number; rstCode?: number; ended: boolean }>((resolve) => {
    const stream = session.request({ ':path': '/big' });
    let status = 0;
    let bytes = 0;
    let ended = false;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c: Buffer) => (bytes += c.byteLength));
    stream.on('end', () => (ended = true));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, bytes, rstCode: stream.rstCode, ended }));
  });
  t.is(result.status, 200);
  t.true(result.bytes > 0 && result.bytes <= 64 * 1024, `${result.bytes} bytes`);
  t.false(result.ended, 'the body ended (END_STREAM) before the reset');
  t.is(result.rstCode, NGHTTP2_INTERNAL_ERROR);
});

test('an HTTP/2 upstream that resets mid-response with CANCEL is not passed on as a clean end', async (t) => {
  // Raw frames: node:http2's stream.close(CANCEL) ends the stream cleanly before it resets it.
  const { server, port: upstreamPort } = await rawH2Server((id, write) =>
    write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, id, Buffer.from([0x88])), frame(FRAME.DATA, 0, id, Buffer.alloc(16 * 1024, 'c')), rstFrame(id, NGHTTP2_CANCEL)])),
  );
  t.teardown(() => server.close());
  const { port } = await proxy(t, upstreamPort, 'http2');
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const result = await new Promise<{ bytes: number; rstCode?: number; ended: boolean }>((resolve) => {
    const stream = session.request({ ':path': '/big' });
    let bytes = 0;
    let ended = false;
    stream.on('data', (c: Buffer) => (bytes += c.byteLength));
    stream.on('end', () => (ended = true));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ bytes, rstCode: stream.rstCode, ended }));
  });
  t.true(result.bytes <= 16 * 1024, `${result.bytes} bytes`);
  t.false(result.ended, 'the body ended (END_STREAM) before the reset');
  t.is(result.rstCode, NGHTTP2_INTERNAL_ERROR);
});

test('an upstream that breaks off mid-response closes the HTTP/1.1 client connection without the chunked terminator', async (t) => {
  const { run, port } = await proxy(t, await upstream(t, breakingUpstream));
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
  await new Promise((r) => socket.once('close', r));
  const text = Buffer.concat(chunks).toString('latin1');
  t.true(text.startsWith('HTTP/1.1 200 OK\r\n'), text.slice(0, 200));
  t.true(/\r\ntransfer-encoding: chunked\r\n/i.test(text), text.slice(0, 400));
  t.true(text.includes('b'.repeat(1024)));
  t.false(text.endsWith('\r\n0\r\n\r\n'), 'a clean end of the chunked body');
  // Logged as what it is, an upstream failure, not as a bug in the proxy.
  await run.waitFor('GET /big: the upstream response broke off');
  t.false(run.stderr().includes('"msg":"request failed"'), run.stderr());
});

test('an HTTP/2 upstream that sends no response headers in time while the upload streams sees the request aborted, not ended', async (t) => {
  const seen: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream) => {
    let ended = false;
    stream.on('error', () => {});
    stream.on('data', () => {});
    stream.on('end', () => (ended = true));
    stream.on('close', () => seen.push(ended ? 'end' : 'aborted'));
    // No response headers, ever.
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const { port } = await proxy(t, (server.address() as AddressInfo).port, 'http2', 'requestTimeoutMs: 500');
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const status = await new Promise<number>((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false });
    stream.on('error', () => resolve(-1));
    stream.on('response', (h) => resolve(Number(h[':status'])));
    stream.write(Buffer.alloc(1024, 'u'));
    // ... and the body stays open.
  });
  t.is(status, 504);
  await until('the upstream stream to close', () => (seen.length === 1 ? true : undefined), 10_000);
  t.deepEqual(seen, ['aborted']);
});
