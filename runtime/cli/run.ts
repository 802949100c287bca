// `sluice run -c sluice.yaml [--workers N]`: the node proxy from a config file, in this process or
// in N worker processes (workers.ts). Reloads on SIGHUP, on a change of the file and on POST
// /reload (an invalid file is refused and the running config stays); drains on SIGTERM/SIGINT.

import { loadConfig } from '../config/index.ts';
import { log } from '../log.ts';
import { NodeProxy } from '../proxy/node-proxy.ts';
import { CaptureServer } from '../capture/index.ts';
import { watchConfig } from './config-watcher.ts';
import { isWorker, runWorker, startPrimary, type Served } from './workers.ts';

export async function runProxy(file: string, opts: { drainMs: number; workers?: number; captureSocket?: string; onReady?: () => void }): Promise<number> {
  if (isWorker()) return runWorker();
  const served = (opts.workers ?? 1) > 1 ? await startPrimary(file, opts.workers!) : await startOne(file, opts.captureSocket);
  const reload = (why: string) =>
    served.reload().catch((error: Error & { code?: string }) => log('error', `${why}: config refused, the running one stays`, { code: error.code, error: error.message }));

  for (const [name, a] of Object.entries(served.addresses)) log('info', `${name} listening on ${a.address}:${a.port}`);
  opts.onReady?.();
  process.on('SIGHUP', () => void reload('SIGHUP'));
  const watcher = watchConfig(file, () => void reload(`${file} changed`));
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log('info', `${signal}: draining for up to ${opts.drainMs} ms`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  watcher.close();
  await served.stop(opts.drainMs);
  log('info', 'stopped');
  return 0;
}

async function startOne(file: string, captureSocket?: string): Promise<Served> {
  const proxy = await NodeProxy.start(await loadConfig(file));
  proxy.reload = async () => {
    await proxy.apply(await loadConfig(file));
    log('info', `applied ${file}`);
  };
  // Capture (docs/capture.md) serves the CNI plugin once the proxy's listeners are up.
  const capture = captureSocket ? await CaptureServer.start(captureSocket, proxy, log).catch(async (error) => {
    await proxy.stop(0);
    throw error;
  }) : undefined;
  return { addresses: proxy.addresses(), reload: () => proxy.reload!(), stop: async (ms) => (await capture?.stop(), await proxy.stop(ms)) };
}
