// https/http module sources against a loopback server: the sha256 is required and checked, plain
// http only to loopback (or with allowInsecure), the cache answers IfNotPresent; and the tar reader
// on archives made by GNU tar.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ControllerError } from '../../controller/errors.ts';
import { fetchModule, readTar } from '../../controller/source/index.ts';
import { filterWasm } from '../helpers/fixtures.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let server: Server;
let base: string;
let hello: Uint8Array;
let requests = 0;

test.before(async () => {
  hello = await readFile(filterWasm('hello'));
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/hello.wasm') res.end(hello);
    else if (req.url === '/private.wasm') res.writeHead(403).end();
    else if (req.url === '/broken.wasm') res.writeHead(503).end();
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after.always(() => new Promise<void>((r) => server?.close(() => r())));

async function rejects(t: import('ava').ExecutionContext, p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const error = await t.throwsAsync(p);
  t.true(error instanceof ControllerError, String(error));
  t.is((error as ControllerError).code, code, error?.message);
  t.regex(error!.message, message);
}

test.serial('a module over http from loopback is fetched and its sha256 checked', async (t) => {
  const got = await fetchModule({ url: `${base}/hello.wasm`, sha256: sha(hello) });
  t.is(got.digest, `sha256:${sha(hello)}`);
  t.deepEqual(Buffer.from(got.bytes), Buffer.from(hello));
  const wrong = 'cd'.repeat(32);
  await rejects(t, fetchModule({ url: `${base}/hello.wasm`, sha256: wrong }), 'SLUICE_ERR_SOURCE_DIGEST', new RegExp(`module http://127\\.0\\.0\\.1:\\d+/hello\\.wasm has sha256 ${sha(hello)}, not the ${wrong} the WasmFilter names: if the module changed on purpose, update spec\\.sha256`));
});

test.serial('the sha256 is required, and plain http only to loopback', async (t) => {
  await rejects(t, fetchModule({ url: `${base}/hello.wasm` }), 'SLUICE_ERR_SOURCE_URL', /has no sha256: an http source needs spec\.sha256 \(64 lower-case hex/);
  const before = requests;
  await rejects(t, fetchModule({ url: 'http://modules.example.test/x.wasm', sha256: sha(hello) }), 'SLUICE_ERR_SOURCE_URL', /uses plain http to modules\.example\.test: use https:\/\/ \(plain http is accepted only for loopback addresses, or when the controller is set to allow insecure sources\)/);
  await rejects(t, fetchModule({ url: `http://u:p@127.0.0.1:1/x.wasm`, sha256: sha(hello) }), 'SLUICE_ERR_SOURCE_URL', /carries credentials/);
  t.is(requests, before);
});

test.serial('404, 403 and 503 are NOT_FOUND, AUTH and FETCH', async (t) => {
  const s = sha(hello);
  await rejects(t, fetchModule({ url: `${base}/nope.wasm`, sha256: s }), 'SLUICE_ERR_SOURCE_NOT_FOUND', /answered 404 for module http:\/\/127\.0\.0\.1:\d+\/nope\.wasm: check the url/);
  await rejects(t, fetchModule({ url: `${base}/private.wasm`, sha256: s }), 'SLUICE_ERR_SOURCE_AUTH', /answered 403 .*: https sources are fetched without credentials/);
  await rejects(t, fetchModule({ url: `${base}/broken.wasm`, sha256: s }), 'SLUICE_ERR_SOURCE_FETCH', /answered 503 .*: the server is failing; it is retried/);
});

test.serial('with a cache, IfNotPresent does not ask the server again; Always does', async (t) => {
  const cacheDir = await mkdtemp(join(tmpdir(), 'sluice-cache-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const src = { url: `${base}/hello.wasm`, sha256: sha(hello) };
  await fetchModule(src, { cacheDir });
  const before = requests;
  t.is((await fetchModule(src, { cacheDir })).digest, `sha256:${sha(hello)}`);
  t.is(requests, before);
  await fetchModule({ ...src, pullPolicy: 'Always' }, { cacheDir });
  t.is(requests, before + 1);
});

test('the tar reader finds files in archives made by GNU tar (gzip, long names, ./ prefixes)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-tar-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const long = `${'deep/'.repeat(25)}plugin.wasm`;
  await mkdir(join(dir, 'src', long, '..'), { recursive: true });
  await writeFile(join(dir, 'src', long), hello);
  await writeFile(join(dir, 'src', 'notes.txt'), 'hello');
  for (const format of ['gnu', 'posix']) {
    const archive = join(dir, `${format}.tar.gz`);
    execFileSync('tar', ['--format', format, '-czf', archive, '-C', join(dir, 'src'), '.']);
    const files = readTar(await readFile(archive));
    t.deepEqual(files.map((f) => f.name).sort(), [long, 'notes.txt'], format);
    t.deepEqual(Buffer.from(files.find((f) => f.name === long)!.data), Buffer.from(hello), format);
  }
  t.throws(() => readTar(Buffer.alloc(1024, 7)), { message: /not a tar archive \(bad header at byte 0\)/ });
});
