// The admin endpoint of a real `sluice run` refuses what a browser page elsewhere can send: a
// Host that is not its own (DNS rebinding), and state-changing requests from another origin or
// with a form content type. Raw HTTP/1.1 requests, so every header is exactly what a browser sends.
import { connect } from 'node:net';
import test from 'ava';
import { runSluice, until, type SluiceProcess } from '../helpers/sluice-run.ts';

const config = (admin = '') => `
admin: { address: 127.0.0.1:0${admin} }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [{ directResponse: { status: 200, body: "ok" } }]
`;

/** Sends `head` (request line and headers, CRLF-joined) and `body`; returns status and body. */
function raw(port: number, head: string[], body = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (text += c));
    socket.on('error', reject);
    socket.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1]);
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split).toLowerCase();
      let rest = text.slice(split + 4);
      if (!head.includes('transfer-encoding: chunked')) return resolve({ status, body: rest });
      let body = '';
      for (let size = parseInt(rest, 16); size > 0; size = parseInt(rest, 16)) {
        const start = rest.indexOf('\r\n') + 2;
        body += rest.slice(start, start + size);
        rest = rest.slice(start + size + 2);
      }
      resolve({ status, body });
    });
    const lengths = body === '' ? [] : [`Content-Length: ${Buffer.byteLength(body)}`];
    // Not end(): a half-close would cancel a request still being answered (/reload is asynchronous).
    socket.write([...head, ...lengths, 'Connection: close', '', body].join('\r\n'));
  });
}

let sluice: SluiceProcess;
let port: number;
test.before(async () => {
  sluice = await runSluice(config(', allowedHosts: [sluice-admin.example]'));
  port = await sluice.adminPort();
});
test.after.always(() => sluice?.stop());

const reloads = () => sluice.stderr().split('"msg":"applied ').length - 1;
/** Resolves once the log says `n` reloads applied (the line may reach the pipe after the answer). */
const reloaded = (n: number) => until(`${n} reloads`, () => (reloads() >= n ? reloads() : undefined));

test.serial('a cross-site form POST to /reload (the browser attack) gets 403 and reloads nothing', async (t) => {
  const before = reloads();
  const res = await raw(port, ['POST /reload HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Origin: http://evil.example', 'Sec-Fetch-Site: cross-site', 'Content-Type: application/x-www-form-urlencoded'], 'a=1');
  t.is(res.status, 403);
  t.is(res.body, `sluice admin: refused POST with Origin "http://evil.example": state-changing requests are taken only from the admin's own origin (http://127.0.0.1:${port}) or from clients that send no Origin (curl -X POST).\n`);
  // A reload of our own after it: its log line follows any the refused one would have caused.
  t.is((await raw(port, ['POST /reload HTTP/1.1', `Host: 127.0.0.1:${port}`])).status, 200);
  t.is(await reloaded(before + 1), before + 1);
});

test.serial('each sign of a request from elsewhere is refused on its own: Origin, Sec-Fetch-Site, a CORS-simple content type', async (t) => {
  const host = `Host: 127.0.0.1:${port}`;
  const cases: Array<[string[], string]> = [
    [['Origin: http://evil.example'], 'Origin "http://evil.example"'],
    [['Origin: null'], 'Origin "null"'],
    [[`Origin: http://localhost:${port}`], `Origin "http://localhost:${port}"`],
    [['Sec-Fetch-Site: cross-site'], 'Sec-Fetch-Site: cross-site'],
    [['Sec-Fetch-Site: same-site'], 'Sec-Fetch-Site: same-site'],
    [['Content-Type: application/x-www-form-urlencoded'], 'Content-Type application/x-www-form-urlencoded'],
    [['Content-Type: multipart/form-data; boundary=x'], 'Content-Type multipart/form-data'],
    [['Content-Type: Text/Plain;charset=UTF-8'], 'Content-Type text/plain'],
  ];
  for (const [headers, named] of cases) {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await raw(port, [`${method} /reload HTTP/1.1`, host, ...headers], 'x');
      t.is(res.status, 403, `${method} ${headers.join(' ')}`);
      t.true(res.body.startsWith(`sluice admin: refused ${method} with ${named}`), res.body);
    }
  }
});

test.serial('curl-style and same-origin POSTs still reload', async (t) => {
  const host = `Host: 127.0.0.1:${port}`;
  for (const extra of [[], [`Origin: http://127.0.0.1:${port}`, 'Sec-Fetch-Site: same-origin'], ['Sec-Fetch-Site: none'], ['Content-Type: application/json']]) {
    const before = reloads();
    const res = await raw(port, ['POST /reload HTTP/1.1', host, ...extra], extra.length === 1 && extra[0]!.startsWith('Content-Type') ? '{}' : '');
    t.is(res.status, 200, extra.join(' '));
    t.is(res.body, 'reloaded\n');
    t.is(await reloaded(before + 1), before + 1);
  }
});

test.serial('a Host that is not the admin (DNS rebinding) gets 403 naming the hosts it answers to, on every page', async (t) => {
  for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, `localhost.evil.example`, `[::2]:${port}`, '']) {
    for (const page of ['/config_dump', '/stats/prometheus', '/']) {
      const res = await raw(port, [`GET ${page} HTTP/1.1`, `Host: ${host}`]);
      t.is(res.status, 403, `${page} Host: ${host}`);
      t.is(
        res.body,
        `sluice admin: refused Host ${JSON.stringify(host)}: this endpoint answers only to localhost, 127.0.0.1, [::1], sluice-admin.example (any port), which protects it from DNS rebinding. If that name is yours, add it to admin.allowedHosts in the config.\n`,
      );
    }
  }
});

test.serial('its own hosts are served, with any port: localhost, 127.0.0.1, [::1], admin.allowedHosts, any case', async (t) => {
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost:8080', 'LOCALHOST', `sluice-admin.example:${port}`, 'Sluice-Admin.Example.']) {
    const res = await raw(port, ['GET /ready HTTP/1.1', `Host: ${host}`]);
    t.is(res.status, 200, host);
    t.is(res.body, 'ready\n');
  }
  const res = await raw(port, ['GET /ready HTTP/1.0']);
  t.is(res.status, 200, 'HTTP/1.0 without Host');
});

test.serial('--workers: the primary\'s admin refuses the same', async (t) => {
  const run = await runSluice(config(), ['--workers', '2']);
  t.teardown(() => run.stop());
  const admin = await run.adminPort();
  t.is((await raw(admin, ['POST /reload HTTP/1.1', `Host: 127.0.0.1:${admin}`, 'Origin: http://evil.example', 'Content-Type: text/plain'], 'x')).status, 403);
  t.is((await raw(admin, ['GET /config_dump HTTP/1.1', `Host: evil.example:${admin}`])).status, 403);
  t.is((await raw(admin, ['POST /reload HTTP/1.1', `Host: 127.0.0.1:${admin}`])).status, 200);
});
