// Rewrites a guest module so that it can be stopped and cannot outgrow its memory ceiling: fuel
// checks at loop headers and at the entry of functions that call others (fuel-rewrite.ts) and a
// capped memory maximum. Pure byte rewriting: no compiler toolchain at run time, a few ms for a
// typical 65 KB filter (bench/engine.ts).

import { EngineError } from './errors.ts';
import { addFuelChecks, RewriteError } from './fuel-rewrite.ts';
import { constantDataSegmentEnds, definedMemories, withMemoryMax } from './wasm-binary.ts';

export const PAGE_BYTES = 65536;

/** Returns the instrumented module bytes, or throws EngineError SLUICE_ERR_MODULE_INVALID. */
export function instrument(bytes: Uint8Array, memoryLimitBytes: number): Uint8Array {
  const limitPages = Math.floor(memoryLimitBytes / PAGE_BYTES);
  const memory = checkMemory(bytes, limitPages);
  try {
    return withMemoryMax(addFuelChecks(bytes), Math.min(memory.max ?? limitPages, limitPages));
  } catch (error) {
    if (error instanceof RewriteError) throw invalid(error.message, error);
    throw invalid(`instrumenting it for the time budget failed (${(error as Error).message})`, error);
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

function invalid(reason: string, cause?: unknown): EngineError {
  return new EngineError('SLUICE_ERR_MODULE_INVALID', `the module cannot run in Sluice: ${reason}`, cause === undefined ? undefined : { cause });
}

function mib(bytes: number): string {
  return `${+(bytes / 1048576).toFixed(2)} MiB`;
}
