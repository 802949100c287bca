// The Wasm engine's public surface: compile (validate, instrument, cache), instantiate with a
// per-call time budget and a memory ceiling, and classify guest failures.

export {
  compileModule,
  instantiate,
  describeGuestFailure,
  DEFAULT_CALL_BUDGET_MS,
  DEFAULT_MEMORY_LIMIT_BYTES,
  type CompiledModule,
  type EngineOptions,
  type GuestFailureKind,
  type GuestInstance,
  type InstantiateOptions,
} from './engine.ts';
export { BudgetExceededError, EngineError, type EngineErrorCode } from './errors.ts';
