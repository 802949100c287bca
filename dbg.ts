import { readFile } from 'node:fs/promises';
import { FilterChain, HeaderMap, Plugin, createEnvironment } from './runtime/index.ts';
const bytes = new Uint8Array(await readFile('build/fixtures/touch-headers.wasm'));
const env = createEnvironment({ log: () => {} });
const p = await Plugin.load(bytes, { name: 't', configuration: { tag: '1' } }, env);
const chain = new FilterChain([p], env);
const REQ: Array<[string,string]> = [[':method','GET'],[':path','/x'],[':authority','a'],['x-user','bob']];
for (let b = 0; b < 10; b++) {
const t = process.hrtime.bigint();
for (let i = 0; i < 20000; i++) { const s = chain.stream(); s.requestHeaders(new HeaderMap(REQ), true); s.responseHeaders(new HeaderMap([[':status','200']]), true); s.end(); }
console.log(Number(process.hrtime.bigint() - t) / 1e3 / 20000, 'us/req', p.vm!.memoryBytes, p.vm!.contexts.size);
}
