// deploy/crds/wasmfilter.yaml is generated from controller/crd/wasmfilter.ts and must stay so.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { parse } from 'yaml';
import { wasmFilterCrd, wasmFilterCrdYaml } from '../../controller/crd/index.ts';
import { repoRoot } from '../helpers/fixtures.ts';

test('the committed CRD YAML is the one generated from the schema in code', (t) => {
  const committed = readFileSync(`${repoRoot}deploy/crds/wasmfilter.yaml`, 'utf8');
  t.is(committed, wasmFilterCrdYaml(), 'deploy/crds/wasmfilter.yaml is stale: run `npm run gen-crds` and commit it');
  t.deepEqual(parse(committed), wasmFilterCrd());
});
