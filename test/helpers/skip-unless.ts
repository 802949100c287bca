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
