// The agent's content-addressed module cache: `<dir>/<sha256hex>.wasm`, each file verified against
// its name before it is written, and written atomically (temp file, then rename).

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const NAME = /^([0-9a-f]{64})\.wasm$/;

export class ModuleCache {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The digests of the modules in the cache. */
  digests(): string[] {
    return readdirSync(this.dir).flatMap((f) => NAME.exec(f)?.[1] ?? []);
  }

  /** Writes `bytes` as `<sha256>.wasm`; throws when the bytes do not have that digest. */
  async put(sha256: string, bytes: Uint8Array): Promise<void> {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new Error(`module ${sha256} from the controller has sha256 ${actual}; not cached`);
    await atomicWrite(join(this.dir, `${sha256}.wasm`), bytes);
  }
}

/** Writes a file so that a reader sees the old content or the new one, never a part. */
export async function atomicWrite(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
