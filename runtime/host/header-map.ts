// An ordered multi-map of HTTP headers (or trailers) with lower-case keys, the shape proxy-wasm
// filters see: pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`, `:status`) included.

export type HeaderInit = HeaderMap | Iterable<readonly [string, string]> | Record<string, string | string[]>;

export class HeaderMap {
  /** Flat [key0, value0, key1, value1, ...]: cheap to scan for the 10-20 headers of a request. */
  private kv: string[] = [];

  constructor(init?: HeaderInit) {
    if (init === undefined) return;
    if (init instanceof HeaderMap) {
      this.kv = init.kv.slice();
    } else if (Symbol.iterator in init) {
      for (const [k, v] of init as Iterable<readonly [string, string]>) this.add(k, v);
    } else {
      for (const [k, v] of Object.entries(init)) {
        if (Array.isArray(v)) for (const one of v) this.add(k, one);
        else this.add(k, v);
      }
    }
  }

  /** Builds a map from Node's `rawHeaders` ([name, value, name, value, ...]), lower-casing names. */
  static fromRaw(raw: readonly string[]): HeaderMap {
    const map = new HeaderMap();
    for (let i = 0; i < raw.length; i += 2) map.kv.push(raw[i].toLowerCase(), raw[i + 1]);
    return map;
  }

  get size(): number {
    return this.kv.length >> 1;
  }

  /** The first value for `key`, or undefined. */
  get(key: string): string | undefined {
    const kv = this.kv;
    for (let i = 0; i < kv.length; i += 2) if (kv[i] === key) return kv[i + 1];
    return undefined;
  }

  getAll(key: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.kv.length; i += 2) if (this.kv[i] === key) out.push(this.kv[i + 1]);
    return out;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  add(key: string, value: string): void {
    this.kv.push(key.toLowerCase(), value);
  }

  /** Replaces every value of `key` with one value (adds it when absent), keeping its position. */
  set(key: string, value: string): void {
    key = key.toLowerCase();
    const kv = this.kv;
    let found = -1;
    for (let i = 0; i < kv.length; i += 2) {
      if (kv[i] !== key) continue;
      if (found < 0) {
        found = i;
        kv[i + 1] = value;
      } else {
        kv.splice(i, 2);
        i -= 2;
      }
    }
    if (found < 0) kv.push(key, value);
  }

  delete(key: string): void {
    key = key.toLowerCase();
    const kv = this.kv;
    for (let i = kv.length - 2; i >= 0; i -= 2) if (kv[i] === key) kv.splice(i, 2);
  }

  /** Replaces every entry except the pseudo-headers absent from `pairs`, which keep their values. */
  replaceAll(pairs: Array<[string, string]>): void {
    const kept: string[] = [];
    for (let i = 0; i < this.kv.length; i += 2) {
      const key = this.kv[i];
      if (key.charCodeAt(0) === 58 /* ':' */ && !pairs.some(([k]) => k === key)) kept.push(key, this.kv[i + 1]);
    }
    this.kv = kept;
    for (const [k, v] of pairs) this.add(k, v);
  }

  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (let i = 0; i < this.kv.length; i += 2) yield [this.kv[i], this.kv[i + 1]];
  }

  entries(): Array<[string, string]> {
    return [...this];
  }

  /** The flat [key, value, ...] list, for writers that take raw header arrays. Do not mutate. */
  raw(): readonly string[] {
    return this.kv;
  }

  /** One object with the first value of each key (a test and logging convenience). */
  toObject(): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = 0; i < this.kv.length; i += 2) if (!(this.kv[i] in out)) out[this.kv[i]] = this.kv[i + 1];
    return out;
  }

  clone(): HeaderMap {
    return new HeaderMap(this);
  }
}
