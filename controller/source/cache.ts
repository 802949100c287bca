// The module cache on disk: Wasm modules stored by their sha256, plus small records that resolve a
// tag to a manifest digest and a manifest digest to a module digest. Every write is a temp file
// renamed into place, so a reader never sees half a module; every read is checked against its
// digest, so a corrupted file is a miss, not a wrong module.

import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ControllerError } from '../errors.ts';
import { sha256Hex } from './http.ts';

export class ModuleCache {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  #modulePath(hex: string): string {
    return join(this.dir, 'modules', 'sha256', `${hex}.wasm`);
  }

  #refPath(key: string): string {
    return join(this.dir, 'refs', `${sha256Hex(Buffer.from(key))}.json`);
  }

  /** The module with this digest (`sha256:<hex>` or bare hex), or undefined when absent or corrupt. */
  async getModule(digest: string): Promise<Uint8Array | undefined> {
    const hex = digest.replace(/^sha256:/, '');
    const path = this.#modulePath(hex);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch {
      return undefined;
    }
    if (sha256Hex(bytes) !== hex) {
      // Damaged on disk: drop it so the next fetch stores a good copy.
      await rm(path, { force: true });
      return undefined;
    }
    return bytes;
  }

  /** Stores a module; returns its digest `sha256:<hex>`. */
  async putModule(bytes: Uint8Array): Promise<string> {
    const hex = sha256Hex(bytes);
    await this.#write(this.#modulePath(hex), bytes);
    return `sha256:${hex}`;
  }

  /** What `key` (a tag or a manifest digest) resolved to when last fetched. */
  async getRef(key: string): Promise<string | undefined> {
    try {
      const record = JSON.parse(await readFile(this.#refPath(key), 'utf8')) as { key?: unknown; value?: unknown };
      // The file name is a hash of the key: the key inside guards against a (theoretical) collision.
      return record.key === key && typeof record.value === 'string' ? record.value : undefined;
    } catch {
      return undefined;
    }
  }

  async putRef(key: string, value: string): Promise<void> {
    await this.#write(this.#refPath(key), Buffer.from(JSON.stringify({ key, value }) + '\n'));
  }

  async #write(path: string, bytes: Uint8Array): Promise<void> {
    const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(temp, bytes);
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {});
      throw new ControllerError(
        'SLUICE_ERR_SOURCE_CACHE',
        `cannot write the module cache at ${this.dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): give the controller a writable cache folder with free space`,
        { cause: error },
      );
    }
  }
}
