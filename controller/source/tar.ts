// Reads the regular files of a tar archive (ustar, with GNU long names and pax `path` records),
// gzip-compressed or not: enough to find the .wasm file in an image layer.

import { gunzipSync } from 'node:zlib';
import { MAX_BLOB_BYTES } from './http.ts';

export interface TarFile {
  name: string;
  data: Uint8Array;
}

const BLOCK = 512;

function text(block: Uint8Array, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(end >= 0 ? field.subarray(0, end) : field).toString('utf8');
}

function size(block: Uint8Array): number {
  // Base-256 (GNU) for sizes over 8 GiB: high bit of the first byte set. Nothing we accept is that big.
  if (block[124] & 0x80) return Number.POSITIVE_INFINITY;
  const field = text(block, 124, 12).trim();
  return field === '' ? 0 : parseInt(field, 8);
}

/** True when the bytes start with gzip's magic number. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The archive's regular files; throws an Error saying what is wrong with a malformed archive. */
export function readTar(archive: Uint8Array): TarFile[] {
  const bytes = isGzip(archive) ? gunzipSync(archive, { maxOutputLength: MAX_BLOB_BYTES }) : archive;
  const files: TarFile[] = [];
  let offset = 0;
  let longName: string | undefined;
  while (offset + BLOCK <= bytes.length) {
    const header = bytes.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    if (text(header, 257, 5) !== 'ustar' && text(header, 257, 6) !== 'ustar ') {
      // Old V7 archives have no magic; accept them when the checksum adds up.
      if (!checksumOk(header)) throw new Error(`not a tar archive (bad header at byte ${offset})`);
    }
    const length = size(header);
    const dataStart = offset + BLOCK;
    if (!Number.isFinite(length) || dataStart + length > bytes.length) throw new Error(`tar entry at byte ${offset} runs past the end of the archive`);
    const data = bytes.subarray(dataStart, dataStart + length);
    const type = String.fromCharCode(header[156] || 0x30);
    const prefix = text(header, 345, 155);
    let name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    longName = undefined;
    if (type === 'L') {
      longName = Buffer.from(data).toString('utf8').replace(/\0+$/, '');
    } else if (type === 'x') {
      const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(Buffer.from(data).toString('utf8'));
      if (path) longName = path[1];
    } else if (type === '0' || type === '7') {
      if (name.startsWith('./')) name = name.slice(2);
      files.push({ name, data });
    }
    offset = dataStart + Math.ceil(length / BLOCK) * BLOCK;
  }
  return files;
}

function checksumOk(header: Uint8Array): boolean {
  const stored = parseInt(text(header, 148, 8).trim(), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
  return stored === sum;
}

/** Writes a ustar archive of the given files (mode 0644, mtime 0: the same files give the same bytes). */
export function writeTar(files: TarFile[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const file of files) {
    const header = Buffer.alloc(BLOCK);
    if (Buffer.byteLength(file.name) > 100) throw new Error(`tar: name "${file.name}" is longer than 100 bytes`);
    header.write(file.name, 0, 100, 'utf8');
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(file.data.byteLength.toString(8).padStart(11, '0') + '\0', 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(header, file.data, Buffer.alloc((BLOCK - (file.data.byteLength % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
