// A raw HTTP/2 client and server over node:net for tests that need frames node:http2 would not
// send the way an attacker or a broken peer does (HEADERS + RST_STREAM in a loop, a body cut
// short by RST_STREAM): writes the preface and frames, and parses what comes back into frames
// (type, flags, stream id, payload).
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export interface RawH2 {
  socket: Socket;
  frames: Frame[];
  closed: Promise<void>;
  frame(type: number, flags: number, stream: number, payload?: Uint8Array): Buffer;
  /** A HEADERS frame for `GET path` on `stream` (HPACK: static-table entries and literals, never indexed). */
  get(stream: number, path: string, endStream?: boolean): Buffer;
  /** A HEADERS frame for `POST path` on `stream`, its body to follow in DATA frames. */
  post(stream: number, path: string): Buffer;
  data(stream: number, bytes: Uint8Array, endStream?: boolean): Buffer;
  rst(stream: number, code: number): Buffer;
  goaway(): { lastStream: number; code: number } | undefined;
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export function frame(type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.byteLength, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** Calls `onFrame` for each whole frame read from `socket`, after `skip` bytes (a preface). */
function readFrames(socket: Socket, onFrame: (f: Frame) => void, skip = 0): void {
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (skip > 0) {
      const n = Math.min(skip, buf.length);
      buf = buf.subarray(n);
      skip -= n;
    }
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      onFrame({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
      buf = buf.subarray(9 + len);
    }
  });
}

export function rstFrame(stream: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, stream, payload);
}

/**
 * A raw HTTP/2 server: settings exchanged, then `onRequest(stream, write)` for each request's
 * HEADERS. `write` sends raw bytes (build them with `frame`, `rstFrame`; a response's HEADERS
 * block 0x88 is `:status: 200`).
 */
export async function rawH2Server(onRequest: (stream: number, write: (bytes: Buffer) => void) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.write(frame(FRAME.SETTINGS, 0, 0));
    readFrames(
      socket,
      (f) => {
        if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        if (f.type === FRAME.HEADERS) onRequest(f.stream, (bytes) => socket.write(bytes));
      },
      PREFACE.length,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

export async function rawH2(port: number): Promise<RawH2> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  const frames: Frame[] = [];
  readFrames(socket, (f) => frames.push(f));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
  const literal = (index: number, value: string) => Buffer.from([index, value.length, ...Buffer.from(value)]);
  return {
    socket,
    frames,
    closed,
    frame,
    // 0x82 :method GET, 0x86 :scheme http; :authority (1) and :path (4) as literals without indexing.
    get: (stream, path, endStream = true) =>
      frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, Buffer.concat([Buffer.from([0x82, 0x86]), literal(4, path), literal(1, 'localhost')])),
    // 0x83 :method POST.
    post: (stream, path) => frame(FRAME.HEADERS, FLAG.END_HEADERS, stream, Buffer.concat([Buffer.from([0x83, 0x86]), literal(4, path), literal(1, 'localhost')])),
    data: (stream, bytes, endStream = false) => frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, bytes),
    rst: rstFrame,
    goaway: () => {
      const f = frames.find((x) => x.type === FRAME.GOAWAY);
      return f && { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
    },
  };
}
