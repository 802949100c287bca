// Every controller error code is documented in docs/errors.md, and errors carry their code.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ControllerError, ControllerErrorCodes } from '../../controller/errors.ts';
import { repoRoot } from '../helpers/fixtures.ts';

const doc = readFileSync(`${repoRoot}docs/errors.md`, 'utf8');

for (const code of Object.keys(ControllerErrorCodes)) {
  test(`${code} is documented in docs/errors.md`, (t) => {
    t.true(doc.includes(`| \`${code}\` |`), `add a row for ${code} to docs/errors.md`);
  });
}

test('controller errors carry their code, default message and cause', (t) => {
  const cause = new Error('inner');
  const e = new ControllerError('SLUICE_ERR_SOURCE_AUTH', 'refused', { cause });
  t.is(e.code, 'SLUICE_ERR_SOURCE_AUTH');
  t.is(e.cause, cause);
  t.is(e.name, 'ControllerError');
  t.is(new ControllerError('SLUICE_ERR_SOURCE_DIGEST').message, ControllerErrorCodes.SLUICE_ERR_SOURCE_DIGEST);
});
