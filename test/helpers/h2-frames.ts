// A raw HTTP/2 client over node:net for tests that need frames node:http2 would not send the way
// an attacker does (HEADERS + RST_STREAM in a loop): writes the preface and frames, and parses
// what comes back into frames (type, flags, stream id, payload).
import { connect, type Socket } from 'node:net';

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
  rst(stream: number, code: number): Buffer;
  goaway(): { lastStream: number; code: number } | undefined;
}

export async function rawH2(port: number): Promise<RawH2> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  const frames: Frame[] = [];
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      frames.push({ type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
      buf = buf.subarray(9 + len);
    }
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const frame = (type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.byteLength, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(stream, 5);
    return Buffer.concat([head, payload]);
  };
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]));
  const literal = (index: number, value: string) => Buffer.from([index, value.length, ...Buffer.from(value)]);
  return {
    socket,
    frames,
    closed,
    frame,
    // 0x82 :method GET, 0x86 :scheme http; :authority (1) and :path (4) as literals without indexing.
    get: (stream, path, endStream = true) =>
      frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, Buffer.concat([Buffer.from([0x82, 0x86]), literal(4, path), literal(1, 'localhost')])),
    rst: (stream, code) => {
      const payload = Buffer.alloc(4);
      payload.writeUInt32BE(code);
      return frame(FRAME.RST_STREAM, 0, stream, payload);
    },
    goaway: () => {
      const f = frames.find((x) => x.type === FRAME.GOAWAY);
      return f && { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
    },
  };
}
