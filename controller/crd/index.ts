// The controller's custom resources and their YAML as deploy/crds/ holds it.

import { stringify } from 'yaml';
import { wasmFilterCrd } from './wasmfilter.ts';

export * from './wasmfilter.ts';

/** deploy/crds/wasmfilter.yaml, exactly: `npm run gen-crds` writes it, a test checks it is current. */
export function wasmFilterCrdYaml(): string {
  return `# Generated from controller/crd/wasmfilter.ts by \`npm run gen-crds\`; do not edit.\n${stringify(wasmFilterCrd(), { lineWidth: 0 })}`;
}
