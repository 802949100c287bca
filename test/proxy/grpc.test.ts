// gRPC end to end through the node proxy: a @grpc/grpc-js client and server, Sluice between them
// on h2c both ways. Unary, server streaming, client streaming and bidirectional calls; status,
// message and trailing metadata reach the client; Sluice's own answers are gRPC statuses.
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import type { ClusterConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';

// Messages are JSON: no protobuf compiler needed, the wire framing is gRPC's own.
const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString('utf8')),
};
const method = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
const Echo = {
  say: method('/demo.Echo/Say', false, false),
  count: method('/demo.Echo/Count', false, true),
  sum: method('/demo.Echo/Sum', true, false),
  chat: method('/demo.Echo/Chat', true, true),
  fail: method('/demo.Echo/Fail', false, false),
};

type Msg = { text?: string; n?: number };

async function grpcServer(t: ExecutionContext): Promise<number> {
  const server = new grpc.Server();
  server.addService(Echo as unknown as grpc.ServiceDefinition, {
    say: (call: grpc.ServerUnaryCall<Msg, Msg>, done: grpc.sendUnaryData<Msg>) => {
      const md = new grpc.Metadata();
      md.set('x-served-by', 'echo-1');
      done(null, { text: `hello ${call.request.text} (${call.metadata.get('x-user')[0] ?? 'anonymous'})` }, md);
    },
    count: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      for (let i = 1; i <= (call.request.n ?? 0); i++) call.write({ n: i });
      call.end();
    },
    sum: (call: grpc.ServerReadableStream<Msg, Msg>, done: grpc.sendUnaryData<Msg>) => {
      let total = 0;
      call.on('data', (m: Msg) => (total += m.n ?? 0));
      call.on('end', () => done(null, { n: total }));
    },
    chat: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      call.on('data', (m: Msg) => call.write({ text: `re: ${m.text}` }));
      call.on('end', () => call.end());
    },
    fail: (_call: grpc.ServerUnaryCall<Msg, Msg>, done: grpc.sendUnaryData<Msg>) => {
      const md = new grpc.Metadata();
      md.set('x-reason', 'quota');
      done({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'no more today', metadata: md });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.teardown(() => server.forceShutdown());
  return port;
}

async function proxyFor(t: ExecutionContext, clusters: ClusterConfig[]): Promise<number> {
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'grpc',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: [],
        routes: [{ name: 'echo', match: { prefix: '/demo.Echo/' }, action: { kind: 'cluster', clusters: [{ cluster: clusters[0]!.name, weight: 1 }] }, timeoutMs: 5000 }],
      },
    ],
    clusters,
    filters: [],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  return (proxy.addresses().grpc as AddressInfo).port;
}

function client(t: ExecutionContext, port: number) {
  const Client = grpc.makeGenericClientConstructor(Echo as unknown as grpc.ServiceDefinition, 'Echo');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  t.teardown(() => c.close());
  return c;
}

function unary(c: Record<string, (...args: unknown[]) => unknown>, name: string, request: Msg, metadata = new grpc.Metadata()) {
  return new Promise<{ error: grpc.ServiceError | null; reply?: Msg; trailers?: grpc.Metadata; headers?: grpc.Metadata }>((resolve) => {
    let headers: grpc.Metadata | undefined;
    let trailers: grpc.Metadata | undefined;
    const call = c[name](request, metadata, (error: grpc.ServiceError | null, reply?: Msg) => setImmediate(() => resolve({ error, reply, trailers, headers }))) as grpc.ClientUnaryCall;
    call.on('metadata', (m) => (headers = m));
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

test('unary, server streaming, client streaming and bidirectional calls pass through', async (t) => {
  const port = await proxyFor(t, [cluster('echo', [await grpcServer(t)], { protocol: 'http2' })]);
  const c = client(t, port);

  const md = new grpc.Metadata();
  md.set('x-user', 'alice');
  const say = await unary(c, 'say', { text: 'world' }, md);
  t.is(say.error, null);
  t.deepEqual(say.reply, { text: 'hello world (alice)' });
  t.deepEqual(say.trailers?.get('x-served-by'), ['echo-1']);

  const counted: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = c.count({ n: 5 }) as grpc.ClientReadableStream<Msg>;
    call.on('data', (m: Msg) => counted.push(m.n!));
    call.on('end', resolve);
    call.on('error', reject);
  });
  t.deepEqual(counted, [1, 2, 3, 4, 5]);

  const sum = await new Promise<Msg>((resolve, reject) => {
    const call = c.sum((e: grpc.ServiceError | null, r: Msg) => (e ? reject(e) : resolve(r))) as grpc.ClientWritableStream<Msg>;
    for (const n of [10, 20, 12]) call.write({ n });
    call.end();
  });
  t.deepEqual(sum, { n: 42 });

  // Bidirectional: each reply comes back before the client sends the next message.
  const replies = await new Promise<string[]>((resolve, reject) => {
    const call = c.chat() as grpc.ClientDuplexStream<Msg, Msg>;
    const got: string[] = [];
    const words = ['one', 'two', 'three'];
    call.on('data', (m: Msg) => {
      got.push(m.text!);
      if (got.length < words.length) call.write({ text: words[got.length] });
      else call.end();
    });
    call.on('end', () => resolve(got));
    call.on('error', reject);
    call.write({ text: words[0] });
  });
  t.deepEqual(replies, ['re: one', 're: two', 're: three']);
});

test('an error status, its message and trailing metadata reach the client', async (t) => {
  const port = await proxyFor(t, [cluster('echo', [await grpcServer(t)], { protocol: 'http2' })]);
  const r = await unary(client(t, port), 'fail', {});
  t.is(r.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  t.is(r.error?.details, 'no more today');
  t.deepEqual(r.error?.metadata.get('x-reason'), ['quota']);
});

test('Sluice answers gRPC requests in gRPC statuses: no route is UNIMPLEMENTED, a dead upstream UNAVAILABLE', async (t) => {
  const port = await proxyFor(t, [cluster('echo', [1], { protocol: 'http2' })]);
  const c = client(t, port);
  const down = await unary(c, 'say', { text: 'x' });
  t.is(down.error?.code, grpc.status.UNAVAILABLE);
  t.is(down.error?.details, 'sluice: upstream connect error to 127.0.0.1:1 of cluster "echo" (ECONNREFUSED); is the service running and listening there?');

  const Other = grpc.makeGenericClientConstructor({ ping: method('/demo.Other/Ping', false, false) } as unknown as grpc.ServiceDefinition, 'Other');
  const other = new Other(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  t.teardown(() => other.close());
  const none = await unary(other, 'ping', {});
  t.is(none.error?.code, grpc.status.UNIMPLEMENTED);
  t.is(none.error?.details, 'sluice: no route matches POST /demo.Other/Ping on listener "grpc"');
});
