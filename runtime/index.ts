// Sluice's runtime: the public surface other packages (sdk/harness, controller, the CLI) import.

export * from './host/index.ts';
export { compileModule, type CompiledModule } from './engine/index.ts';
export { SluiceError, ErrorCodes, type ErrorCode } from './errors.ts';
export { Status, MapType, BufferType, LogLevel, LOG_LEVEL_NAMES, MetricType } from './abi/constants.ts';
export * from './config/index.ts';
export { NodeProxy } from './proxy/node-proxy.ts';
export * from './agent/index.ts';
export * from './identity/index.ts';
export * from './tunnel/index.ts';
