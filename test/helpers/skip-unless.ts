// Tests that need something this machine may lack (root, Go, helm, a built image) run where it is
// there and are listed as skipped with the reason elsewhere.

import test from 'ava';

type Register = typeof test.serial;

/** `base` when `why` is undefined, else a registrar that skips each test and says why in its title. */
export function skipUnless(why: string | undefined, base: Register = test.serial): Register {
  if (!why) return base;
  const skip = base === test ? test.skip : test.serial.skip;
  return ((title: string, fn: Parameters<Register>[1]) => skip(`${title} (skipped: ${why})`, fn)) as Register;
}

/**
 * `base` when `why` is undefined, else a registrar whose tests fail saying why: for what `npm test`
 * builds itself (helm, the Kubernetes binaries), where a failed build must not pass as a skip.
 */
export function failUnless(why: string | undefined, base: Register = test.serial): Register {
  if (!why) return base;
  return ((title: string) => base(title, (t) => t.fail(`cannot run: ${why}`))) as Register;
}
