// `sluice <command>`: the command-line entry point. Each command lives in its own module.

import { parseArgs } from 'node:util';
import { runDemo } from './demo.ts';
import { runNew } from './new.ts';

const USAGE = `usage: sluice <command> [options]

commands:
  demo [--port N]          run the example filters behind a small HTTP server on 127.0.0.1 (what npm start runs)
  new <name> [--dir DIR]   create a new filter from the SDK template (default DIR: filters/<name>)
  help                     show this text
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'demo': {
        const { values } = parseArgs({ args: rest, options: { port: { type: 'string', default: '15001' } } });
        await runDemo({ port: Number(values.port) });
        return 0;
      }
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
