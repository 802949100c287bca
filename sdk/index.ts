// The SDK's TypeScript side: the test harness filter authors drive their compiled filters with.
export * from './harness/index.ts';
