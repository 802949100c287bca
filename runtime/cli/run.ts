// `sluice run -c sluice.yaml [--workers N]`: the node proxy from a config file, in this process or
// in N worker processes (workers.ts); or `sluice run --controller ADDR`: fed by the controller. Reloads on SIGHUP, on a change of the file and on POST
// /reload (an invalid file is refused and the running config stays); drains on SIGTERM/SIGINT.

import { loadConfig } from '../config/index.ts';
import { log } from '../log.ts';
import { NodeProxy } from '../proxy/node-proxy.ts';
import { CaptureServer } from '../capture/index.ts';
import { AGENT_DEFAULTS, NodeAgent } from '../agent/index.ts';
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

/**
 * `sluice run --controller HOST:PORT`: node mode (docs/proxy.md#node-mode). The config comes from
 * the controller; the proxy starts on the last good config on disk or on the first good snapshot.
 */
export async function runNodeAgent(opts: { controller: string; tokenFile?: string; nodeName?: string; stateDir?: string; controllerCa?: string; controllerPlaintext?: boolean; adminAddress?: string; drainMs: number }): Promise<number> {
  const nodeName = opts.nodeName ?? process.env.NODE_NAME ?? '';
  const stateDir = opts.stateDir ?? AGENT_DEFAULTS.stateDir;
  const controllerCa = opts.controllerCa ?? AGENT_DEFAULTS.controllerCa;
  const agent = new NodeAgent({ controller: opts.controller, tokenFile: opts.tokenFile ?? AGENT_DEFAULTS.tokenFile, nodeName, stateDir, controllerCa, controllerPlaintext: opts.controllerPlaintext, adminAddress: opts.adminAddress });
  log('info', `node mode: controller ${opts.controller} (${opts.controllerPlaintext ? 'plaintext' : `TLS, trust bundle ${controllerCa}`}), node ${nodeName}, state in ${stateDir}`);
  await agent.start();
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log('info', `${signal}: draining for up to ${opts.drainMs} ms`);
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await agent.stop(opts.drainMs);
  log('info', 'stopped');
  return 0;
}
