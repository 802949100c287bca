// Errors the engine raises: EngineError (a module Sluice cannot compile or link, with a stable
// SLUICE_ERR_* code) and BudgetExceededError (a guest call ran past its time budget).

import { SluiceError } from '../errors.ts';

export type EngineErrorCode = 'SLUICE_ERR_MODULE_INVALID' | 'SLUICE_ERR_MODULE_LINK';

export class EngineError extends SluiceError {
  declare readonly code: EngineErrorCode;
  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'EngineError';
  }
}

/** Thrown out of a guest call (through the guest's frames) when the call used up its time budget. */
export class BudgetExceededError extends Error {
  constructor(readonly budgetMs: number, readonly elapsedMs: number) {
    super(`the guest call ran for ${elapsedMs.toFixed(1)} ms, over its ${budgetMs} ms budget, and was stopped; ` +
      'look for an unbounded loop in the filter, or raise the plugin\'s callBudgetMs');
    this.name = 'BudgetExceededError';
  }
}
