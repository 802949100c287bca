// Every error code is documented in docs/errors.md, and errors carry their code.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ErrorCodes, SluiceError } from '../../runtime/errors.ts';
import { EngineError } from '../../runtime/engine/index.ts';
import { repoRoot } from '../helpers/fixtures.ts';

const doc = readFileSync(`${repoRoot}docs/errors.md`, 'utf8');

for (const code of Object.keys(ErrorCodes)) {
  test(`${code} is documented in docs/errors.md`, (t) => {
    t.true(doc.includes(`| \`${code}\` |`), `add a row for ${code} to docs/errors.md`);
  });
}

test('engine errors are SluiceErrors with their code and cause', (t) => {
  const cause = new Error('inner');
  const e = new EngineError('SLUICE_ERR_MODULE_LINK', 'linking failed', { cause });
  t.true(e instanceof SluiceError);
  t.is(e.code, 'SLUICE_ERR_MODULE_LINK');
  t.is(e.cause, cause);
  t.is(new SluiceError('SLUICE_ERR_HARNESS').message, ErrorCodes.SLUICE_ERR_HARNESS);
});
