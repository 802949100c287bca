// Validation in Sluice's host, without a cluster: what is accepted, what is refused and why, and
// the ceiling on how long one call may hold the controller's event loop.
import test from 'ava';
import { validateModule } from '../../controller/index.ts';
import { modules } from '../helpers/controller-env.ts';

test('a proxy-wasm filter that accepts its configuration validates, with its start-up log lines', async (t) => {
  const v = await validateModule(modules.hello(), 'team-a/hello', { pluginConfig: { header: 'x-team', value: 'a' } });
  t.deepEqual(v.logs, ["info: hello: adding 'x-team: a'"]);
});

test('a filter that refuses its configuration is refused with its own log line', async (t) => {
  const e = await t.throwsAsync(validateModule(modules.hello(), 'team-a/hello', { pluginConfig: { denyPath: 'admin' } }));
  t.is((e as Error & { code: string }).code, 'SLUICE_ERR_FILTER_CONFIG_REFUSED');
  t.is(e!.message, "filter \"team-a/hello\": proxy_on_configure rejected the configuration: hello: invalid configuration: field 'denyPath': must start with '/', got 'admin'; fix spec.pluginConfig as the filter log lines say; the last good version stays in force");
});

test('a runaway proxy_on_configure is stopped at the validation ceiling (2 s) even when callBudgetMs allows a minute', async (t) => {
  const e = await t.throwsAsync(validateModule(modules.spinOnConfigure(), 'team-a/spin', { limits: { callBudgetMs: 60_000 } }));
  t.is((e as Error & { code: string }).code, 'SLUICE_ERR_FILTER_START');
  t.regex(e!.message, /^filter "team-a\/spin": proxy_on_configure failed: the guest call ran for [\d.]+ ms, over its 2000 ms budget, and was stopped;.* \(validation gives each call at most 2000 ms, whatever callBudgetMs says\); /);
});

test('Wasm without the proxy-wasm ABI is refused as not proxy-wasm', async (t) => {
  const e = await t.throwsAsync(validateModule(modules.noMarker(), 'team-a/plain', {}));
  t.is((e as Error & { code: string }).code, 'SLUICE_ERR_FILTER_NOT_PROXY_WASM');
  t.regex(e!.message, /; build it with a proxy-wasm SDK/);
});

test('a filter growing to 512 MiB at start is refused: validation caps VM memory at 256 MiB whatever memoryBytes says', async (t) => {
  const e = await t.throwsAsync(validateModule(modules.growOnStart(), 'team-a/grow', { limits: { memoryBytes: 1024 ** 3 } }));
  t.is((e as Error & { code: string }).code, 'SLUICE_ERR_FILTER_START');
  t.regex(e!.message, /^filter "team-a\/grow": proxy_on_vm_start returned false.* \(validation gives the VM at most 268435456 bytes of memory, whatever memoryBytes says\); /);
});

test('validation runs the filter with its vmConfig.env, as the nodes will: a filter that needs a variable validates with it and is refused without', async (t) => {
  const spec = { pluginConfig: { require: ['MODE'] } };
  await t.notThrowsAsync(validateModule(modules.showEnv(), 'team-a/env', { ...spec, vmConfig: { env: [{ name: 'MODE', value: 'enforce', valueFrom: 'INLINE' as const }] } }));
  const e = await t.throwsAsync(validateModule(modules.showEnv(), 'team-a/env', spec));
  t.is((e as Error & { code: string }).code, 'SLUICE_ERR_FILTER_CONFIG_REFUSED');
  t.regex(e!.message, /^filter "team-a\/env": proxy_on_configure rejected the configuration: show-env: MODE is not in the environment \(0 variables\); /);
});
