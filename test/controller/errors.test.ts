// Every controller error code is documented in docs/errors.md, and refusals map to condition reasons.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ControllerError, ControllerErrorCodes, REASONS } from '../../controller/index.ts';
import { repoRoot } from '../helpers/fixtures.ts';

const doc = readFileSync(`${repoRoot}docs/errors.md`, 'utf8');
const platform = readFileSync(`${repoRoot}docs/platform.md`, 'utf8');

for (const code of Object.keys(ControllerErrorCodes)) {
  test(`${code} is documented in docs/errors.md`, (t) => {
    t.true(doc.includes(`| \`${code}\` |`), `add a row for ${code} to docs/errors.md`);
  });
}

for (const reason of new Set(Object.values(REASONS))) {
  test(`condition reason ${reason} is documented in docs/platform.md`, (t) => {
    t.true(platform.includes(`| \`${reason}\` |`), `add a row for ${reason} to the reasons table in docs/platform.md`);
  });
}

test('controller errors carry their code, default message and cause', (t) => {
  const cause = new Error('inner');
  const e = new ControllerError('SLUICE_ERR_SOURCE_DIGEST', 'mismatch', { cause });
  t.is(e.code, 'SLUICE_ERR_SOURCE_DIGEST');
  t.is(e.cause, cause);
  t.is(new ControllerError('SLUICE_ERR_KUBECONFIG').message, ControllerErrorCodes.SLUICE_ERR_KUBECONFIG);
});
