// `sluice <command>`: the command-line entry point. Each command lives in its own module.

import { parseArgs } from 'node:util';
import { LOG_LEVEL_NAMES } from '../abi/constants.ts';
import { DEFAULT_LOG_LEVEL, setLogLevel, type LogLevelName } from '../log.ts';
import { buildFilterDir } from './build.ts';
import { runCni } from './cni.ts';
import { runDemo } from './demo.ts';
import { runNew } from './new.ts';
import { runNodeAgent, runProxy } from './run.ts';
import { runStatus } from './status.ts';
import { packageRoot } from './paths.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { workerCount } from './workers.ts';
import { parseHostPort } from '../config/index.ts';

const USAGE = `usage: sluice <command> [options]

commands:
  run -c FILE [--drain-ms N] [--workers N|auto] [--log-level LEVEL]
      [--capture-socket PATH] [--metrics-listen HOST:PORT]
                           run the node proxy from a YAML or JSON config (docs/configuration.md);
                           --workers: that many worker processes (auto: one per core; default 1);
                           --log-level: trace, debug, info (default), warn, error or critical, for
                           the proxy's lines and filters' (a filter's logLevel in the config wins)
                           --capture-socket: serve the CNI plugin there and capture pods (docs/capture.md)
                           --metrics-listen: /healthz, /ready, /stats/prometheus alone on that address
                           (for Prometheus and kubelet probes; the admin stays where it is)
  run --controller HOST:PORT [--node-name N] [--token-file F] [--state-dir DIR] [--drain-ms N]
      [--controller-ca FILE | --controller-plaintext] [--admin-address HOST:PORT]
      [--capture-socket PATH [--tunnel-listen HOST:PORT]] [--metrics-listen HOST:PORT]
                           node mode: the config comes from the controller (docs/proxy.md#node-mode);
                           defaults: node name from $NODE_NAME, token from
                           /var/run/secrets/tokens/sluice-token, state in /var/lib/sluice, admin on
                           127.0.0.1:15000; TLS verified with --controller-ca (default
                           /var/run/sluice/ca/root-cert.pem); --controller-plaintext: no TLS (tests, benches);
                           with --capture-socket, the node-to-node mTLS tunnel listens on
                           --tunnel-listen (default 0.0.0.0:15008; docs/capture.md#the-node-to-node-tunnel)
  controller [--kubeconfig FILE] [--namespace NS] [--listen HOST:PORT] [--lease-name NAME]
             [--lease-duration SECONDS] [--workers N] [--cache-dir DIR] [--allow-insecure-registries]
             [--log-level debug|info|warn|error] [--grpc-listen HOST:PORT]
             [--agent-service-account NS/NAME] [--trust-domain TD] [--ca-secret NS/NAME]
             [--svid-lifetime SECONDS] [--grpc-tls-dns NAME]... [--grpc-plaintext]
                           the WasmFilter controller (docs/platform.md): --namespace is the root
                           namespace and holds the leader Lease (default sluice-system);
                           /healthz, /readyz, /metrics on --listen (default :15014); the node
                           agents on --grpc-listen (default :15012), authenticated as
                           --agent-service-account (default sluice-system/sluice-node), with
                           TLS from the controller's CA (docs/platform.md#identities): its own
                           root in Secret sluice-ca, or the intermediate of --ca-secret; workload
                           certificates for spiffe://TD/ns/NS/sa/SA (default cluster.local), valid
                           --svid-lifetime (default 86400); --grpc-plaintext: no TLS (tests, benches)
  cni install|uninstall [--cni-bin-dir DIR] [--cni-conf-dir DIR] [--config FILE] [--watch]
                    [--release-pods DIR]
                           chain sluice-cni into the node's CNI config, or remove it (docs/capture.md);
                           uninstall --release-pods: also remove the capture rules from the pods
                           recorded in DIR (/var/run/sluice/pods), so they talk directly again
  status [--admin HOST:PORT] [--json]
                           what the node proxy here runs (its admin's /status, default
                           127.0.0.1:15000): config source and version, filters, captured pods;
                           exit 0 ready and healthy, 1 not ready or a filter quarantined, 3 no answer
  version, --version       print the version
  demo                     the proxy on examples/local/sluice.yaml with an echo upstream (what npm start runs)
  new <name> [--dir DIR] [--standalone]
                           create a new filter from the SDK template: inside a Sluice checkout
                           in filters/<name>; elsewhere (or with --standalone) a project of its own
                           in ./<name> that depends on the sluice package; --dir: another folder
  build [DIR]              compile the filter in DIR (default .) to Wasm
  push <registry>/<repo>:<tag> [DIR] [--username U --password P] [--plain-http]
                           build the filter in DIR (default .) and push it as a Wasm OCI artifact;
                           prints the digests and a WasmFilter to apply (credentials also from
                           SLUICE_REGISTRY_USERNAME / SLUICE_REGISTRY_PASSWORD; --plain-http: the
                           registry speaks http, not https; loopback registries fall back to http)
  help                     show this text
`;

/** The version of this installation: package.json's, read where the code runs from. */
export function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, 'drain-ms': { type: 'string', default: '10000' }, workers: { type: 'string', default: '1' }, 'log-level': { type: 'string', default: DEFAULT_LOG_LEVEL }, 'capture-socket': { type: 'string' }, controller: { type: 'string' }, 'node-name': { type: 'string' }, 'token-file': { type: 'string' }, 'state-dir': { type: 'string' }, 'controller-ca': { type: 'string' }, 'controller-plaintext': { type: 'boolean' }, 'admin-address': { type: 'string' }, 'metrics-listen': { type: 'string' }, 'tunnel-listen': { type: 'string' } } });
        if (!values.config && !values.controller) {
          process.stderr.write('sluice run: give the config file, e.g. `sluice run -c sluice.yaml`, or the controller, e.g. `sluice run --controller sluice-controller.sluice-system:15012`\n');
          return 2;
        }
        if (values.config && values.controller) {
          process.stderr.write('sluice run: give either -c FILE or --controller HOST:PORT, not both\n');
          return 2;
        }
        if (!values.controller && (values['node-name'] ?? values['token-file'] ?? values['state-dir'] ?? values['controller-ca'] ?? values['controller-plaintext'] ?? values['admin-address']) !== undefined) {
          process.stderr.write('sluice run: --node-name, --token-file, --state-dir, --controller-ca, --controller-plaintext and --admin-address are for node mode (with -c the config file sets admin.address); add --controller HOST:PORT\n');
          return 2;
        }
        if (values['tunnel-listen'] !== undefined && (!values.controller || values['capture-socket'] === undefined)) {
          process.stderr.write('sluice run: --tunnel-listen is for node mode with capture (the tunnel carries captured pods\' connections with their identities from the controller); add --controller HOST:PORT and --capture-socket PATH\n');
          return 2;
        }
        if (values['tunnel-listen'] !== undefined && 'error' in parseHostPort(values['tunnel-listen'], 0)) {
          process.stderr.write(`sluice run: --tunnel-listen must be HOST:PORT (e.g. 0.0.0.0:15008), got "${values['tunnel-listen']}"\n`);
          return 2;
        }
        if (values['controller-ca'] !== undefined && values['controller-plaintext']) {
          process.stderr.write('sluice run: give either --controller-ca FILE (TLS, the default) or --controller-plaintext, not both\n');
          return 2;
        }
        const drainMs = Number(values['drain-ms']);
        if (!Number.isInteger(drainMs) || drainMs < 0) {
          process.stderr.write(`sluice run: --drain-ms must be a whole number of milliseconds, got "${values['drain-ms']}"\n`);
          return 2;
        }
        const level = values['log-level']!;
        if (!(LOG_LEVEL_NAMES as readonly string[]).includes(level)) {
          process.stderr.write(`sluice run: --log-level must be one of ${LOG_LEVEL_NAMES.join(', ')}, got "${level}"\n`);
          return 2;
        }
        // Worker processes run this same command line (node:cluster), so they set the same level.
        setLogLevel(level as LogLevelName);
        const workers = workerCount(values.workers!);
        if (workers === undefined) {
          process.stderr.write(`sluice run: --workers must be a whole number from 1 to 256, or auto (one per core), got "${values.workers}"\n`);
          return 2;
        }
        if (values['capture-socket'] !== undefined && workers > 1) {
          process.stderr.write('sluice run: --capture-socket needs a single process; drop --workers\n');
          return 2;
        }
        if (values.controller) {
          if (workers > 1) {
            process.stderr.write('sluice run: --controller runs a single process for now; drop --workers\n');
            return 2;
          }
          return await runNodeAgent({ controller: values.controller, nodeName: values['node-name'], tokenFile: values['token-file'], stateDir: values['state-dir'], controllerCa: values['controller-ca'], controllerPlaintext: values['controller-plaintext'], adminAddress: values['admin-address'], drainMs, captureSocket: values['capture-socket'], tunnelListen: values['tunnel-listen'], metricsListen: values['metrics-listen'] });
        }
        return await runProxy(values.config!, { drainMs, workers, captureSocket: values['capture-socket'], metricsListen: values['metrics-listen'] });
      }
      case 'controller': {
        // Loaded only here: the Kubernetes client is not needed by the other commands.
        const { runController } = await import('./controller.ts');
        return await runController(rest);
      }
      case 'cni':
        return await runCni(rest);
      case 'status':
        return await runStatus(rest);
      case 'version':
      case '--version':
      case '-v':
        parseArgs({ args: rest, options: {} });
        process.stdout.write(`sluice ${version()}\n`);
        return 0;
      case 'demo':
        parseArgs({ args: rest, options: {} });
        return await runDemo();
      case 'new': {
        const { values, positionals } = parseArgs({ args: rest, options: { dir: { type: 'string' }, standalone: { type: 'boolean' } }, allowPositionals: true });
        if (positionals.length !== 1) {
          process.stderr.write('sluice new: give exactly one filter name, e.g. `sluice new my-filter`\n');
          return 2;
        }
        return runNew(positionals[0], { dir: values.dir, standalone: values.standalone });
      }
      case 'build': {
        const { positionals } = parseArgs({ args: rest, options: {}, allowPositionals: true });
        if (positionals.length > 1) {
          process.stderr.write('sluice build: give at most one folder, e.g. `sluice build filters/my-filter`\n');
          return 2;
        }
        const built = await buildFilterDir(positionals[0] ?? '.', (line) => process.stdout.write(`${line}\n`));
        process.stdout.write(`${built.wasm}\n`);
        return 0;
      }
      case 'push': {
        const { values, positionals } = parseArgs({
          args: rest,
          options: { username: { type: 'string' }, password: { type: 'string' }, 'plain-http': { type: 'boolean', default: false } },
          allowPositionals: true,
        });
        if (positionals.length < 1 || positionals.length > 2) {
          process.stderr.write('sluice push: give the reference and optionally the filter folder, e.g. `sluice push ghcr.io/team/my-filter:v1 .`\n');
          return 2;
        }
        // Loaded on demand: the proxy commands need none of the registry client.
        const { runPush } = await import('./push.ts');
        return await runPush({ reference: positionals[0], dir: positionals[1] ?? '.', username: values.username, password: values.password, plainHttp: values['plain-http']! });
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`sluice: unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    const e = error as Error & { code?: string };
    process.stderr.write(`sluice ${command}: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    return 1;
  }
}
