// Rewrites a guest module so that it can be stopped and cannot outgrow its memory ceiling:
// a fuel check at every function entry, loop header and `return` (binaryen's log-execution pass),
// and a capped memory maximum.
//
// Each check is inlined as
//   fuel -= 1; if (fuel < 0) { fuel = sluice.out_of_fuel(); if (fuel < 0) unreachable }
// `out_of_fuel` (engine.ts) refills the fuel, or throws BudgetExceededError when the call is over
// its budget; it returns -1 only when the guest caught that error (Wasm exception handling can
// catch JS exceptions), and the trap that follows cannot be caught.

import binaryen from 'binaryen';
import { EngineError } from './errors.ts';
import { FUEL_IMPORT } from './fuel.ts';
import { constantDataSegmentEnds, definedMemories, hasNameSection, withMemoryMax, withoutNameSection } from './wasm-binary.ts';

const PAGE_BYTES = 65536;

// The import the `log-execution` pass adds (we turn it into the inlined check), and our own names.
const LOG_EXECUTION = 'log_execution';
const FUEL = 'sluice$fuel';
const OUT_OF_FUEL = 'sluice$out_of_fuel';
const INTERNAL_NAMES = [LOG_EXECUTION, FUEL, OUT_OF_FUEL];

/** Returns the instrumented module bytes, or throws EngineError SLUICE_ERR_MODULE_INVALID. */
export function instrument(bytes: Uint8Array, memoryLimitBytes: number): Uint8Array {
  const limitPages = Math.floor(memoryLimitBytes / PAGE_BYTES);
  const memory = checkMemory(bytes, limitPages);
  let m = read(bytes);
  try {
    checkImports(m);
    if (INTERNAL_NAMES.some((name) => m.getFunction(name) !== 0 || m.getGlobal(name) !== 0)) {
      // The module's name section uses one of our names: read it again without names.
      m.dispose();
      m = read(withoutNameSection(bytes));
    }
    addFuelChecks(m);
    // Keep function names (for the filter author's stack traces) when the module had them.
    let out!: Uint8Array;
    withBinaryenSettings({ debugInfo: hasNameSection(bytes) }, () => (out = m.emitBinary()));
    return withMemoryMax(out, Math.min(memory.max ?? limitPages, limitPages));
  } catch (error) {
    if (error instanceof EngineError) throw error;
    throw invalid(`instrumenting it for the time budget failed (${binaryenMessage(error)})`, error);
  } finally {
    m.dispose();
  }
}

function checkMemory(bytes: Uint8Array, limitPages: number) {
  const memories = definedMemories(bytes);
  if (memories.length === 0) {
    // An imported memory would be shared with whoever provides it; none at all cannot take data.
    throw invalid('it defines no memory of its own (an imported memory is not supported); ' +
      'build it so that it defines and exports its memory as "memory"');
  }
  if (memories.length > 1) throw invalid(`it defines ${memories.length} memories; Sluice runs modules with one memory`);
  const [memory] = memories;
  if (memory.flags & ~0x03) throw invalid('its memory is 64-bit or uses custom page sizes; build it for wasm32 with 64 KiB pages');
  if (memory.initial > limitPages) {
    throw invalid(`it starts with ${mib(memory.initial * PAGE_BYTES)} of memory, more than the VM memory limit of ` +
      `${mib(limitPages * PAGE_BYTES)}; raise the plugin's memory limit or lower the module's initial memory ` +
      '(AssemblyScript: --initialMemory; Rust/C: the linker\'s --initial-memory)');
  }
  const initialBytes = memory.initial * PAGE_BYTES;
  const end = Math.max(0, ...constantDataSegmentEnds(bytes));
  if (end > initialBytes) {
    throw invalid(`a data segment ends at byte ${end}, beyond the module's initial memory of ${initialBytes} bytes; the module is broken, rebuild it`);
  }
  return memory;
}

function read(bytes: Uint8Array): binaryen.Module {
  try {
    return binaryen.readBinaryWithFeatures(bytes, binaryen.Features.All);
  } catch (error) {
    throw invalid(`binaryen cannot read it (${binaryenMessage(error)}); it may use a Wasm feature Sluice does not support yet`, error);
  }
}

function checkImports(m: binaryen.Module): void {
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const f = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (f.module === FUEL_IMPORT.module && f.base === FUEL_IMPORT.name) {
      throw invalid(`it imports ${FUEL_IMPORT.module}.${FUEL_IMPORT.name}, a name reserved for Sluice's engine`);
    }
  }
}

function addFuelChecks(m: binaryen.Module): void {
  const i32 = binaryen.i32;
  // Only our check may be inlined: mark every function of the module as not inlinable first.
  withBinaryenSettings({ passArgument: ['no-inline', '*'] }, () => m.runPasses(['no-inline']));
  m.runPasses(['log-execution']);
  removeExitChecks(m);
  m.removeFunction(LOG_EXECUTION);
  m.addGlobal(FUEL, i32, true, m.i32.const(0));
  m.addFunctionImport(OUT_OF_FUEL, FUEL_IMPORT.module, FUEL_IMPORT.name, binaryen.none, i32);
  const fuel = () => m.global.get(FUEL, i32);
  const negative = () => m.i32.lt_s(fuel(), m.i32.const(0));
  m.addFunction(LOG_EXECUTION, i32, binaryen.none, [], m.block(null, [
    m.global.set(FUEL, m.i32.sub(fuel(), m.i32.const(1))),
    m.if(negative(), m.block(null, [
      m.global.set(FUEL, m.call(OUT_OF_FUEL, [], i32)),
      m.if(negative(), m.unreachable()),
    ])),
  ]));
  withBinaryenSettings({ alwaysInlineMaxSize: 100 }, () => m.runPasses(['inlining']));
}

// Binaryen.js has these at run time, its typings lack them.
const { Block, Call } = binaryen as unknown as {
  Block: { getNumChildren(e: number): number; getChildAt(e: number, i: number): number; setChildAt(e: number, i: number, c: number): void };
  Call: { getTarget(e: number): string };
};

function isCheck(e: number): boolean {
  // log-execution wraps X as the sequence `(block (call $log_execution (i32.const id)) X)`.
  if (binaryen.getExpressionId(e) !== binaryen.BlockId || Block.getNumChildren(e) !== 2) return false;
  const first = Block.getChildAt(e, 0);
  return binaryen.getExpressionId(first) === binaryen.CallId && Call.getTarget(first) === LOG_EXECUTION;
}

/**
 * log-execution also checks before the last expression of a function body; a function's entry
 * check already accounts for its run, so drop that one (it costs a check per call).
 */
function removeExitChecks(m: binaryen.Module): void {
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const body = binaryen.getFunctionInfo(m.getFunctionByIndex(i)).body;
    if (!body || !isCheck(body)) continue;
    const original = Block.getChildAt(body, 1);
    if (binaryen.getExpressionId(original) !== binaryen.BlockId) continue;
    const last = Block.getNumChildren(original) - 1;
    if (last >= 0 && isCheck(Block.getChildAt(original, last))) {
      Block.setChildAt(original, last, Block.getChildAt(Block.getChildAt(original, last), 1));
    }
  }
}

/** Binaryen's settings are process-wide (the AssemblyScript compiler shares them): restore them. */
function withBinaryenSettings(
  s: { passArgument?: [string, string]; alwaysInlineMaxSize?: number; debugInfo?: boolean },
  fn: () => void,
): void {
  const savedArg = s.passArgument ? binaryen.getPassArgument(s.passArgument[0]) : null;
  const savedSize = binaryen.getAlwaysInlineMaxSize();
  const savedDebugInfo = binaryen.getDebugInfo();
  try {
    if (s.passArgument) binaryen.setPassArgument(s.passArgument[0], s.passArgument[1]);
    if (s.alwaysInlineMaxSize !== undefined) binaryen.setAlwaysInlineMaxSize(s.alwaysInlineMaxSize);
    if (s.debugInfo !== undefined) binaryen.setDebugInfo(s.debugInfo);
    fn();
  } finally {
    if (s.passArgument) binaryen.setPassArgument(s.passArgument[0], savedArg);
    binaryen.setAlwaysInlineMaxSize(savedSize);
    binaryen.setDebugInfo(savedDebugInfo);
  }
}

function binaryenMessage(error: unknown): string {
  const e = error as { message?: unknown };
  if (typeof e?.message === 'string') return e.message;
  if (Array.isArray(e?.message)) return e.message.join(': ');
  return String(error);
}

function invalid(reason: string, cause?: unknown): EngineError {
  return new EngineError('SLUICE_ERR_MODULE_INVALID', `the module cannot run in Sluice: ${reason}`, cause === undefined ? undefined : { cause });
}

function mib(bytes: number): string {
  return `${+(bytes / 1048576).toFixed(2)} MiB`;
}
