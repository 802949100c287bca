// Sluice's controller: the public surface the CLI and tests import.

export { Controller, DEFAULTS, loadKubeConfig, type ControllerOptions } from './controller.ts';
export { ControllerError, ControllerErrorCodes, type ControllerErrorCode } from './errors.ts';
export * from './crd/index.ts';
export { parseListen } from './http-server.ts';
export { jsonLogger, silentLogger, type Logger } from './log.ts';
export { WorkQueue } from './kube/work-queue.ts';
export { validateModule } from './reconcile/validate-module.ts';
export { REASONS } from './reconcile/status.ts';
export * from './distribution/index.ts';
export * from './ca/index.ts';
export { canaryNodes, nextRollout, ROLLOUT_DEFAULTS, type RolloutOptions } from './rollout/rollout.ts';
export { filterNodes, mergeReports, type FilterNodes, type ReplicaReport, type ReportedNode } from './nodes/node-report.ts';
