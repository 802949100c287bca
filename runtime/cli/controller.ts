// `sluice controller`: runs the WasmFilter controller until SIGTERM/SIGINT (docs/platform.md).

import { parseArgs } from 'node:util';
import { Controller, ControllerError, DEFAULTS, jsonLogger, parseListen, ROLLOUT_DEFAULTS, SVID_LIFETIME_MS } from '../../controller/index.ts';

const positiveInt = (flag: string, text: string, max: number, min = 1): number => {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
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
      'trust-domain': { type: 'string', default: DEFAULTS.trustDomain },
      'ca-secret': { type: 'string' },
      'svid-lifetime': { type: 'string', default: String(SVID_LIFETIME_MS / 1000) },
      'grpc-tls-dns': { type: 'string', multiple: true, default: [] },
      'grpc-plaintext': { type: 'boolean', default: false },
      'rollout-soak': { type: 'string', default: String(ROLLOUT_DEFAULTS.soakMs / 1000) },
      'rollout-failure-threshold': { type: 'string', default: String(ROLLOUT_DEFAULTS.failureThreshold) },
    },
  });
  const level = values['log-level'] as 'debug' | 'info' | 'warn' | 'error';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--log-level must be debug, info, warn or error, got "${level}"`);
  parseListen(values.listen!); // a bad address is refused before anything connects
  parseListen(values['grpc-listen']!);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(values['agent-service-account']!)) {
    throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--agent-service-account must be namespace/name, e.g. sluice-system/sluice-node, got "${values['agent-service-account']}"`);
  }
  const nsName = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
  if (values['ca-secret'] !== undefined && !nsName.test(values['ca-secret'])) {
    throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--ca-secret must be namespace/name of a Secret with tls.crt, tls.key and ca.crt, e.g. sluice-system/sluice-intermediate, got "${values['ca-secret']}"`);
  }
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(values['trust-domain']!) || values['trust-domain']!.length > 255) {
    throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--trust-domain must be a SPIFFE trust domain (lower-case letters, digits, dots and dashes, e.g. cluster.local), got "${values['trust-domain']}"`);
  }
  for (const name of values['grpc-tls-dns']!) {
    if (!/^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name)) {
      throw new ControllerError('SLUICE_ERR_CONTROLLER_FLAGS', `--grpc-tls-dns must be a DNS name (lower case), e.g. sluice.example.internal, got "${name}"`);
    }
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
    trustDomain: values['trust-domain'],
    caSecret: values['ca-secret'],
    // At least 10 minutes: agents renew at half life, and a certificate of a few minutes only churns.
    svidLifetimeMs: positiveInt('svid-lifetime', values['svid-lifetime']!, 366 * 86400, 600) * 1000,
    grpcTlsDns: values['grpc-tls-dns'],
    grpcPlaintext: values['grpc-plaintext'],
    rolloutSoakMs: positiveInt('rollout-soak', values['rollout-soak']!, 7 * 86400, 0) * 1000,
    rolloutFailureThreshold: positiveInt('rollout-failure-threshold', values['rollout-failure-threshold']!, 1_000_000),
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
