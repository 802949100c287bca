// `Expect: 100-continue` through the real `sluice run` process: Sluice answers 100 Continue itself
// (as Envoy does by default), the client then sends its body, and the upstream gets the request
// without the Expect header and answers it. Over HTTP/1.1 and HTTP/2.
import http2 from 'node:http2';
import { connect } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

async function start(t: ExecutionContext) {
  const up = await echoUpstream();
  t.teardown(() => up.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { prefix: / }
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${up.port}]
`);
  t.teardown(() => run.stop());
  return { up, port: await run.port('web') };
}

test('HTTP/1.1: Expect: 100-continue gets 100 Continue, then the body reaches the upstream, which answers', async (t) => {
  const { up, port } = await start(t);
  const socket = connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (c) => (received += c));
  const waitFor = async (text: string) => {
    while (!received.includes(text)) {
      if (socket.destroyed) throw new Error(`the connection closed; got ${JSON.stringify(received)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  socket.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n');
  await waitFor('\r\n\r\n');
  t.true(received.startsWith('HTTP/1.1 100 Continue\r\n'), received);
  // Only now the body.
  socket.write('hello world');
  await waitFor('"body":"hello world"');
  const final = received.slice(received.indexOf('\r\n\r\n') + 4);
  t.true(final.startsWith('HTTP/1.1 200 '), final);
  t.is(up.requests.length, 1);
  t.is(up.requests[0]!.body, 'hello world');
  t.is(up.requests[0]!.headers.expect, undefined);
});

test('HTTP/2: expect: 100-continue gets a 100 (continue event), then the body reaches the upstream, which answers', async (t) => {
  const { up, port } = await start(t);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': '/upload', 'content-type': 'text/plain', expect: '100-continue' });
  await new Promise<void>((resolve, reject) => {
    stream.once('continue', () => resolve());
    stream.once('response', (h) => reject(new Error(`a final response before 100: ${h[':status']}`)));
    stream.once('error', reject);
  });
  stream.end('hello world');
  const [headers, body] = await new Promise<[http2.IncomingHttpHeaders, string]>((resolve, reject) => {
    let h: http2.IncomingHttpHeaders = {};
    let text = '';
    stream.on('response', (x) => (h = x));
    stream.on('data', (c) => (text += c));
    stream.on('end', () => resolve([h, text]));
    stream.on('error', reject);
  });
  t.is(headers[':status'], 200, body);
  t.is((JSON.parse(body) as { body: string }).body, 'hello world');
  t.is(up.requests[0]!.headers.expect, undefined);
});
