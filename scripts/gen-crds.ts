// `npm run gen-crds`: writes deploy/crds/*.yaml from the schemas in controller/crd/, then the
// Helm chart's copies of the CRDs and of the controller's RBAC (scripts/chart-files.ts).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { wasmFilterCrdYaml } from '../controller/crd/index.ts';

const file = fileURLToPath(new URL('../deploy/crds/wasmfilter.yaml', import.meta.url));
writeFileSync(file, wasmFilterCrdYaml());
console.log(`gen-crds: wrote ${file}`);
// Imported after the CRD is written: the chart's copy is read from it.
const { CHART_DIR, chartGeneratedFiles } = await import('./chart-files.ts');
for (const [name, text] of Object.entries(chartGeneratedFiles())) {
  writeFileSync(`${CHART_DIR}/${name}`, text);
  console.log(`gen-crds: wrote ${CHART_DIR}/${name}`);
}
