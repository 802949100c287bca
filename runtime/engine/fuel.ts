// The contract between instrumented guests (instrument.ts) and the engine (engine.ts): the import
// an instrumented module calls when its fuel runs out.

/** `() -> i32`: returns the new fuel, -1 to make the guest trap, or throws BudgetExceededError. */
export const FUEL_IMPORT = { module: 'sluice', name: 'out_of_fuel' } as const;
