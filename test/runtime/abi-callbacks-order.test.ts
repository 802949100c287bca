// The order in which the host calls a module's callbacks: start-up, each stream from its first
// request headers to proxy_on_delete, filter chains, local replies, shutdown; the exact sequence.
import test from 'ava';
import { GET, Probe, ROOT_CALL_ID, Status, pairsBytes, settle } from '../helpers/probe.ts';

test('start-up runs _initialize, proxy_on_context_create(root, 0), proxy_on_vm_start, proxy_on_configure with the configuration sizes', async (t) => {
  const p = await Probe.load({ configuration: 'cfg-bytes', vmConfiguration: 'vm' });
  t.deepEqual(p.log(), ['_initialize()', 'proxy_on_context_create(1,0)', 'proxy_on_vm_start(1,2)', 'proxy_on_configure(1,9)']);
});

test('a stream runs context_create(id, root), every phase callback with its sizes, then on_log, on_done, on_delete', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  t.deepEqual(await s.requestHeaders(GET), { kind: 'continue' });
  await s.requestBody('hello', { endOfStream: false });
  await s.requestTrailers({ 'x-t': '1' });
  t.deepEqual(await s.responseHeaders({ ':status': '200', 'content-type': 'text/plain' }), { kind: 'continue' });
  await s.responseBody('ok', { endOfStream: false });
  await s.responseTrailers({ 'grpc-status': '0' });
  await s.end();
  t.deepEqual(p.log().slice(4), [
    'proxy_on_context_create(2,1)',
    'proxy_on_request_headers(2,4,0)',
    'proxy_on_request_body(2,5,0)',
    'proxy_on_request_trailers(2,1)',
    'proxy_on_response_headers(2,2,0)',
    'proxy_on_response_body(2,2,0)',
    'proxy_on_response_trailers(2,1)',
    'proxy_on_log(2)',
    'proxy_on_done(2)',
    'proxy_on_delete(2)',
  ]);
});

test('end_of_stream is passed to headers and body callbacks', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  await s.responseHeaders({ ':status': '200' }, { endOfStream: false });
  await s.responseBody('abc', { endOfStream: true });
  t.deepEqual(p.log({ only: ['proxy_on_request_headers', 'proxy_on_response_headers', 'proxy_on_response_body'] }), [
    'proxy_on_request_headers(2,4,1)',
    'proxy_on_response_headers(2,1,0)',
    'proxy_on_response_body(2,3,1)',
  ]);
});

test('each stream gets a fresh context id; contexts of two open streams are distinct', async (t) => {
  const p = await Probe.load();
  const a = p.h.stream();
  const b = p.h.stream();
  await a.requestHeaders(GET, { endOfStream: true });
  await b.requestHeaders(GET, { endOfStream: true });
  await b.end();
  await a.end();
  t.deepEqual(p.log().slice(4), [
    'proxy_on_context_create(2,1)',
    'proxy_on_request_headers(2,4,1)',
    'proxy_on_context_create(3,1)',
    'proxy_on_request_headers(3,4,1)',
    'proxy_on_log(3)',
    'proxy_on_done(3)',
    'proxy_on_delete(3)',
    'proxy_on_log(2)',
    'proxy_on_done(2)',
    'proxy_on_delete(2)',
  ]);
});

test('in a chain, request callbacks run in chain order, response callbacks in reverse, on_log for all before on_done', async (t) => {
  const p = await Probe.load({}, ['a', 'b']);
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  await s.responseHeaders({ ':status': '204' }, { endOfStream: true });
  await s.end();
  t.deepEqual(p.log({ plugins: true }).slice(8), [
    'a:proxy_on_context_create(2,1)',
    'b:proxy_on_context_create(2,1)',
    'a:proxy_on_request_headers(2,4,1)',
    'b:proxy_on_request_headers(2,4,1)',
    'b:proxy_on_response_headers(2,1,1)',
    'a:proxy_on_response_headers(2,1,1)',
    'a:proxy_on_log(2)',
    'b:proxy_on_log(2)',
    'a:proxy_on_done(2)',
    'a:proxy_on_delete(2)',
    'b:proxy_on_done(2)',
    'b:proxy_on_delete(2)',
  ]);
});

test('proxy_on_vm_start returning false rejects the plugin with SLUICE_ERR_PLUGIN_START; proxy_on_configure is never called', async (t) => {
  let probe!: Probe;
  const error = await t.throwsAsync(
    Probe.load({
      before: (p) => {
        probe = p;
        p.returning('proxy_on_vm_start', 0);
      },
    }),
  );
  t.is((error as Error & { code: string }).code, 'SLUICE_ERR_PLUGIN_START');
  t.deepEqual(probe.log(), ['_initialize()', 'proxy_on_context_create(1,0)', 'proxy_on_vm_start(1,0)']);
});

test('proxy_on_configure returning false rejects the plugin with SLUICE_ERR_PLUGIN_CONFIGURE', async (t) => {
  let probe!: Probe;
  const error = await t.throwsAsync(
    Probe.load({
      configuration: '{}',
      before: (p) => {
        probe = p;
        p.returning('proxy_on_configure', 0);
      },
    }),
  );
  t.is((error as Error & { code: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.deepEqual(probe.log(), ['_initialize()', 'proxy_on_context_create(1,0)', 'proxy_on_vm_start(1,0)', 'proxy_on_configure(1,2)']);
});

test('a local reply from request headers runs the response callbacks (headers, then the body with end_of_stream)', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => p.call('proxy_send_local_response', 403, 0, 0, ...p.put('no'), 0, 0, -1));
  const s = p.h.stream();
  const r = await s.requestHeaders(GET);
  t.is(r.kind, 'local-reply');
  t.is(r.status, 403);
  await s.end();
  t.deepEqual(p.log().slice(4), [
    'proxy_on_context_create(2,1)',
    'proxy_on_request_headers(2,4,0)',
    'proxy_on_response_headers(2,1,0)',
    'proxy_on_response_body(2,2,1)',
    'proxy_on_log(2)',
    'proxy_on_done(2)',
    'proxy_on_delete(2)',
  ]);
});

test('after a local reply no request callback runs, even when the caller drives the request body on', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => p.call('proxy_send_local_response', 403, 0, 0, 0, 0, 0, 0, -1));
  const s = p.h.stream();
  t.is((await s.requestHeaders(GET)).kind, 'local-reply');
  // Either refusing the phase (SLUICE_ERR_STREAM_STATE) or skipping the filters is fine; calling them is not.
  await Promise.resolve()
    .then(() => s.requestBody('late', { endOfStream: true }))
    .catch(() => undefined);
  t.deepEqual(p.log({ only: ['proxy_on_request_body', 'proxy_on_request_trailers'] }), []);
});

test('closing the plugin runs proxy_on_done then proxy_on_delete on the root context', async (t) => {
  const p = await Probe.load();
  p.h.close();
  t.deepEqual(p.log().slice(4), ['proxy_on_done(1)', 'proxy_on_delete(1)']);
});

test('a root context that answers false from proxy_on_done is deleted only after proxy_done', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_done', 0);
  p.h.close();
  t.deepEqual(p.log().slice(4), ['proxy_on_done(1)']);
  t.is(
    p.inRoot(() => p.call('proxy_done')),
    Status.OK,
  );
  await settle();
  t.deepEqual(p.log({ except: ['proxy_on_foreign_function'] }).slice(4), ['proxy_on_done(1)', 'proxy_on_delete(1)']);
});

test('ticks, queue wake-ups, HTTP call answers and foreign calls reach the root context with their arguments', async (t) => {
  const p = await Probe.load();
  const queue = p.inRoot(() => {
    t.is(p.call('proxy_set_tick_period_milliseconds', 1000), Status.OK);
    const ret = p.zeroed(4);
    t.is(p.call('proxy_register_shared_queue', ...p.put('q'), ret), Status.OK);
    const id = p.u32(ret);
    t.is(p.call('proxy_enqueue_shared_queue', id, ...p.put('item')), Status.OK);
    const [c, cl] = p.put('upstream');
    const [hd, hl] = p.put(pairsBytes([[':method', 'GET'], [':path', '/'], [':authority', 'upstream.test']]));
    t.is(p.call('proxy_http_call', c, cl, hd, hl, 0, 0, 0, 0, 500, p.zeroed(4)), Status.OK);
    return id;
  }, 'xyz');
  await settle();
  await p.h.advanceTime(1000);
  p.h.pendingHttpCalls[0].respond(200, { body: 'hey' });
  t.deepEqual(p.log().slice(4), [
    `proxy_on_foreign_function(1,${ROOT_CALL_ID},3)`,
    `proxy_on_queue_ready(1,${queue})`,
    'proxy_on_tick(1)',
    'proxy_on_http_call_response(1,1,1,3,0)',
  ]);
});
