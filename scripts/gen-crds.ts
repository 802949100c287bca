// `npm run gen-crds`: writes deploy/crds/*.yaml from the schemas in controller/crd/.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { wasmFilterCrdYaml } from '../controller/crd/index.ts';

const file = fileURLToPath(new URL('../deploy/crds/wasmfilter.yaml', import.meta.url));
writeFileSync(file, wasmFilterCrdYaml());
console.log(`gen-crds: wrote ${file}`);
