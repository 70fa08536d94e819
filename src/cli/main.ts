// The `hush` command.
//   hush start [--dir D]                       the local stack (for now: a relay), initialized on first run
//   hush relay init [--dir D] [--host H] [--port P]
//   hush relay start [--dir D]
//   hush ntf init [--dir D] [--host H] [--port P]
//   hush ntf start [--dir D]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../server/config.ts';
import { initRelay, startRelay } from '../relay/cli.ts';
import { relayFiles } from '../relay/config.ts';
import { initNtf, startNtf } from '../ntf/cli.ts';

const USAGE = `usage:
  hush start [--dir DIR]                                  start a local relay (initialized on first run)
  hush relay init [--dir DIR] [--host HOST] [--port PORT] create identity key and config, print the address
  hush relay start [--dir DIR]                            run the relay
  hush ntf init [--dir DIR] [--host HOST] [--port PORT]   notification server: keys and config, print the address
  hush ntf start [--dir DIR]                              run the notification server
Settings: DIR/relay.json and DIR/ntf.json, overridden by HUSH_RELAY_* and HUSH_NTF_*
environment variables (see README).`;

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const cmd = positionals.join(' ');
  if (values.help || cmd === '') return console.log(USAGE);
  const listen = {
    ...(values.host ? { host: values.host } : {}),
    // Checked here: Number('abc') is NaN, which the config file stores as null and zod then reads as port 0.
    ...(values.port ? { port: portArg(values.port) } : {}),
  };
  switch (cmd) {
    case 'relay init': {
      const dir = values.dir ?? 'data/relay';
      const address = initRelay({ dir, ...listen });
      console.log(`relay initialized in ${dir}\naddress: ${address}`);
      return;
    }
    case 'relay start':
      return run('relay', () => startRelay(values.dir ?? 'data/relay'));
    case 'ntf init': {
      const dir = values.dir ?? 'data/ntf';
      const address = initNtf({ dir, ...listen });
      console.log(`notification server initialized in ${dir}\naddress: ${address}`);
      return;
    }
    case 'ntf start':
      return run('notification server', () => startNtf(values.dir ?? 'data/ntf'));
    case 'start': {
      const dir = path.join(values.dir ?? 'data', 'relay');
      if (!fs.existsSync(relayFiles(dir).identity)) initRelay({ dir });
      return run('relay', () => startRelay(dir));
    }
    default:
      throw new UsageError(`unknown command: ${cmd}`);
  }
}

class UsageError extends Error {}

function portArg(v: string): number {
  const port = Number(v);
  if (!/^[0-9]+$/.test(v) || port < 1 || port > 65535) throw new UsageError(`--port: not a port number (1-65535): ${v}`);
  return port;
}

async function run(what: string, start: () => Promise<{ address: string; metricsPort: number; stop(): Promise<void> }>) {
  const server = await start();
  console.log(`${what} address: ${server.address}\nmetrics port: ${server.metricsPort} (/metrics, /healthz)`);
  const stop = async () => {
    await server.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main(process.argv.slice(2)).catch((e) => {
  if (e instanceof ConfigError || e instanceof UsageError) {
    console.error(`hush: ${e.message}`);
    if (e instanceof UsageError) console.error(USAGE);
  } else console.error(`hush: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(e instanceof UsageError ? 64 : 1);
});
