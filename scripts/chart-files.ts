// The Helm chart's files that are generated from deploy/ so they cannot drift from it: the CRDs
// (copied as they are) and the RBAC template (deploy/rbac/controller-rbac.yaml with the namespace
// made the release's). `npm run gen-crds` writes them; test/deploy/chart.test.ts checks them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export const CHART_DIR = `${root}deploy/charts/sluice`;

/** Chart file (relative to the chart) -> its generated content. */
export function chartGeneratedFiles(): Record<string, string> {
  return {
    'crds/wasmfilter.yaml': readFileSync(`${root}deploy/crds/wasmfilter.yaml`, 'utf8'),
    'templates/rbac.yaml': rbacTemplate(readFileSync(`${root}deploy/rbac/controller-rbac.yaml`, 'utf8')),
  };
}

/**
 * deploy/rbac/controller-rbac.yaml as a chart template: the Namespace object is left out (Helm
 * installs into `--namespace`, made with `--create-namespace`), `sluice-system` becomes the
 * release's namespace, and every object gets the chart's labels. Comments stay.
 */
export function rbacTemplate(source: string): string {
  const docs = source.split(/^---$/m).filter((d) => !/^kind: Namespace$/m.test(d));
  const out = docs.map((d) => {
    // Only namespace fields are templated; any other mention would silently keep the default.
    if (d.replace(/namespace: sluice-system$/gm, '').replace(/^#.*$/gm, '').includes('sluice-system')) {
      throw new Error('controller-rbac.yaml names sluice-system outside a namespace field; teach scripts/chart-files.ts what to do with it');
    }
    return d
      .replace(/namespace: sluice-system$/gm, 'namespace: {{ .Release.Namespace }}')
      .replace(/^metadata:$/m, 'metadata:\n  labels:\n    {{- include "sluice.labels" . | nindent 4 }}');
  });
  const header = '# GENERATED from deploy/rbac/controller-rbac.yaml by `npm run gen-crds` (scripts/chart-files.ts): edit that\n# file, not this one. test/deploy/chart.test.ts fails when they differ.\n';
  return header + out.map((d) => d.replace(/^\n+/, '')).join('---\n');
}
