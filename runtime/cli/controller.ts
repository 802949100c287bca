// `sluice controller`: runs the WasmFilter controller until SIGTERM/SIGINT (docs/platform.md).

import { parseArgs } from 'node:util';
import { Controller, ControllerError, DEFAULTS, jsonLogger, parseListen } from '../../controller/index.ts';

const positiveInt = (flag: string, text: string, max: number): number => {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > max) throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--${flag} must be a whole number from 1 to ${max}, got "${text}"`);
  return n;
};

export async function runController(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', default: DEFAULTS.namespace },
      listen: { type: 'string', default: DEFAULTS.listen },
      'lease-name': { type: 'string', default: DEFAULTS.leaseName },
      'lease-duration': { type: 'string', default: String(DEFAULTS.leaseDurationMs / 1000) },
      workers: { type: 'string', default: String(DEFAULTS.workers) },
      'cache-dir': { type: 'string' },
      'allow-insecure-registries': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      identity: { type: 'string' },
      'grpc-listen': { type: 'string', default: DEFAULTS.grpcListen },
      'agent-service-account': { type: 'string', default: DEFAULTS.agentServiceAccount },
    },
  });
  const level = values['log-level'] as 'debug' | 'info' | 'warn' | 'error';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--log-level must be debug, info, warn or error, got "${level}"`);
  parseListen(values.listen!); // a bad address is refused before anything connects
  parseListen(values['grpc-listen']!);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(values['agent-service-account']!)) {
    throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--agent-service-account must be namespace/name, e.g. sluice-system/sluice-node, got "${values['agent-service-account']}"`);
  }
  const log = jsonLogger({ level, fields: { component: 'controller' } });
  const controller = new Controller({
    kubeconfig: values.kubeconfig,
    namespace: values.namespace,
    listen: values.listen,
    leaseName: values['lease-name'],
    leaseDurationMs: positiveInt('lease-duration', values['lease-duration']!, 3600) * 1000,
    workers: positiveInt('workers', values.workers!, 64),
    cacheDir: values['cache-dir'],
    allowInsecure: values['allow-insecure-registries'],
    identity: values.identity,
    grpcListen: values['grpc-listen'],
    agentServiceAccount: values['agent-service-account'],
    log,
  });
  await controller.start();
  log.info('controller started', { identity: controller.identity, namespace: values.namespace, lease: values['lease-name'] });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info('stopping: releasing the lease');
  await controller.stop();
  log.info('stopped');
  return 0;
}
