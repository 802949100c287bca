// `sluice <command>`: the command-line entry point. Each command lives in its own module.

import { parseArgs } from 'node:util';
import { runCni } from './cni.ts';
import { runDemo } from './demo.ts';
import { runNew } from './new.ts';
import { runProxy } from './run.ts';
import { workerCount } from './workers.ts';

const USAGE = `usage: sluice <command> [options]

commands:
  run -c FILE [--drain-ms N] [--workers N|auto] [--capture-socket PATH]
                           run the node proxy from a YAML or JSON config (docs/configuration.md);
                           --workers: that many worker processes (auto: one per core; default 1);
                           --capture-socket: serve the CNI plugin there and capture pods (docs/capture.md)
  cni install|uninstall [--cni-bin-dir DIR] [--cni-conf-dir DIR] [--config FILE] [--watch]
                           chain sluice-cni into the node's CNI config, or remove it (docs/capture.md)
  demo                     the proxy on examples/local/sluice.yaml with an echo upstream (what npm start runs)
  new <name> [--dir DIR]   create a new filter from the SDK template (default DIR: filters/<name>)
  help                     show this text
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, 'drain-ms': { type: 'string', default: '10000' }, workers: { type: 'string', default: '1' }, 'capture-socket': { type: 'string' } } });
        if (!values.config) {
          process.stderr.write('sluice run: give the config file, e.g. `sluice run -c sluice.yaml`\n');
          return 2;
        }
        const drainMs = Number(values['drain-ms']);
        if (!Number.isInteger(drainMs) || drainMs < 0) {
          process.stderr.write(`sluice run: --drain-ms must be a whole number of milliseconds, got "${values['drain-ms']}"\n`);
          return 2;
        }
        const workers = workerCount(values.workers!);
        if (workers === undefined) {
          process.stderr.write(`sluice run: --workers must be a whole number from 1 to 256, or auto (one per core), got "${values.workers}"\n`);
          return 2;
        }
        if (values['capture-socket'] !== undefined && workers > 1) {
          process.stderr.write('sluice run: --capture-socket needs a single process; drop --workers\n');
          return 2;
        }
        return await runProxy(values.config, { drainMs, workers, captureSocket: values['capture-socket'] });
      }
      case 'cni':
        return await runCni(rest);
      case 'demo':
        parseArgs({ args: rest, options: {} });
        return await runDemo();
      case 'new': {
        const { values, positionals } = parseArgs({ args: rest, options: { dir: { type: 'string' } }, allowPositionals: true });
        if (positionals.length !== 1) {
          process.stderr.write('sluice new: give exactly one filter name, e.g. `sluice new my-filter`\n');
          return 2;
        }
        return runNew(positionals[0], values.dir);
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
