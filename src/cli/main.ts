// The `hush` command.
//   hush start [--dir D] [--port P]            the local stack and its web app, initialized on first run
//   hush relay init [--dir D] [--host H] [--port P]
//   hush relay start [--dir D]
//   hush relay repair [--dir D]
//   hush ntf init [--dir D] [--host H] [--port P]
//   hush ntf start [--dir D]
//   hush ntf repair [--dir D]
//   hush gateway init [--dir D] [--host H] [--port P]
//   hush gateway add-server --name N [--dir D] [--rate R] [--burst B] [--daily-quota Q]
//   hush gateway start [--dir D]
//   hush xmpp init [--dir D]
//   hush xmpp start [--dir D]
//   hush chat --data FILE --relay ADDR [--ntf ADDR] [--name NAME] [--preview P] [--mode M]
import { parseArgs } from 'node:util';
import { parseAddress } from '../core/address.ts';
import { ConfigError } from '../server/config.ts';
import { initRelay, repairRelay, startRelay } from '../relay/run.ts';
import { initNtf, repairNtf, startNtf } from '../ntf/run.ts';
import type { JournalRepair } from '../server/journal.ts';
import { addServer, initGateway, startGateway } from '../gateway/run.ts';
import { initXmpp, startXmpp } from '../xmpp/run.ts';
import { startLocalStack } from '../stack/stack.ts';
import { NOTIFICATION_MODES, PREVIEW_MODES, runChat } from '../chat/cli.ts';

const USAGE = `usage:
  hush start [--dir DIR] [--port PORT]                    the local stack: relay, notification server, push test
                                                          servers and the web app (initialized on first run)
  hush relay init [--dir DIR] [--host HOST] [--port PORT] create identity key and config, print the address
  hush relay start [--dir DIR]                            run the relay
  hush relay repair [--dir DIR]                           with the relay stopped: set aside the journal from a
                                                          corrupt record on (kept in a side file)
  hush ntf init [--dir DIR] [--host HOST] [--port PORT]   notification server: keys and config, print the address
  hush ntf start [--dir DIR]                              run the notification server
  hush ntf repair [--dir DIR]                             the same for the notification server's journal
  hush gateway init [--dir DIR] [--host HOST] [--port PORT]
                                                          push gateway: seal key and config, print the seal key
  hush gateway add-server --name NAME [--dir DIR] [--rate N] [--burst N] [--daily-quota N]
                                                          authorize a notification server, print its key
  hush gateway start [--dir DIR]                          run the push gateway
  hush xmpp init [--dir DIR]                              XEP-0357 app server for XMPP servers: write its config
  hush xmpp start [--dir DIR]                             run it (a component of each XMPP server in xmpp.json)
  hush chat --data FILE --relay ADDR [--ntf ADDR] [--name NAME]
            [--preview message|contact|hidden] [--mode instant|periodic|off]
                                                          a terminal chat; with --ntf, notifications
                                                          through a local Web Push endpoint (/help inside)
Settings: DIR/relay.json, DIR/ntf.json, DIR/gateway.json and DIR/xmpp.json, overridden by
HUSH_RELAY_*, HUSH_NTF_*, HUSH_GATEWAY_* and HUSH_XMPP_*
environment variables (see README).`;

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      name: { type: 'string' },
      rate: { type: 'string' },
      burst: { type: 'string' },
      'daily-quota': { type: 'string' },
      data: { type: 'string' },
      relay: { type: 'string' },
      ntf: { type: 'string' },
      preview: { type: 'string' },
      mode: { type: 'string' },
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
    case 'relay repair':
      return printRepair(repairRelay(values.dir ?? 'data/relay'));
    case 'ntf init': {
      const dir = values.dir ?? 'data/ntf';
      const address = initNtf({ dir, ...listen });
      console.log(`notification server initialized in ${dir}\naddress: ${address}`);
      return;
    }
    case 'ntf start':
      return run('notification server', () => startNtf(values.dir ?? 'data/ntf'));
    case 'ntf repair':
      return printRepair(repairNtf(values.dir ?? 'data/ntf'));
    case 'gateway init': {
      const dir = values.dir ?? 'data/gateway';
      const sealKey = initGateway({ dir, ...listen });
      console.log(`push gateway initialized in ${dir}\nseal key: ${sealKey}`);
      return;
    }
    case 'gateway add-server': {
      if (!values.name) throw new UsageError('--name is required');
      const key = addServer(values.dir ?? 'data/gateway', {
        name: values.name,
        ...(values.rate ? { ratePerSecond: countArg('--rate', values.rate, 1) } : {}),
        ...(values.burst ? { burst: countArg('--burst', values.burst, 1) } : {}),
        ...(values['daily-quota'] ? { dailyQuota: countArg('--daily-quota', values['daily-quota'], 0) } : {}),
      });
      console.log(`server ${values.name} authorized; its key (shown only now; put it in its ntf.json as gateway.key):\n${key}`);
      return;
    }
    case 'gateway start':
      return run('push gateway', async () => {
        const g = await startGateway(values.dir ?? 'data/gateway');
        console.log(`seal key: ${g.sealKey}`);
        return { ...g, address: g.url };
      });
    case 'xmpp init': {
      const dir = values.dir ?? 'data/xmpp';
      console.log(`XMPP app server config written: ${initXmpp(dir)} (add the XMPP servers and a push provider)`);
      return;
    }
    case 'xmpp start':
      return run('XMPP app server', async () => {
        const x = await startXmpp(values.dir ?? 'data/xmpp');
        return { ...x, address: `a component of ${x.server.domains().join(', ') || 'no XMPP server yet'}` };
      });
    case 'chat': {
      if (!values.data || !values.relay) throw new UsageError('--data and --relay are required');
      await runChat({
        data: values.data,
        relay: addressArg('--relay', values.relay),
        ...(values.ntf ? { ntf: addressArg('--ntf', values.ntf) } : {}),
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(values.preview ? { preview: choiceArg('--preview', values.preview, PREVIEW_MODES) } : {}),
        ...(values.mode ? { mode: choiceArg('--mode', values.mode, NOTIFICATION_MODES) } : {}),
      });
      // the WebSockets' closing handshakes need not be waited for
      return process.exit(0);
    }
    case 'start': {
      const stack = await startLocalStack({ dir: values.dir ?? 'data', ...(values.port ? { webPort: portArg(values.port) } : {}) });
      console.log(
        [
          `Hush is running: open ${stack.url}`,
          `  chat       ${stack.url}            (open it in two windows)`,
          `  simulator  ${stack.url}simulator   (phones woken by APNs pushes)`,
          `  dashboard  ${stack.url}dashboard`,
          `relay address: ${stack.relay.address}  (metrics: http://127.0.0.1:${stack.relay.metricsPort}/metrics)`,
          `ntf address:   ${stack.ntf.address}  (metrics: http://127.0.0.1:${stack.ntf.metricsPort}/metrics)`,
          'Ctrl-C stops it; a second start reuses the data.',
        ].join('\n'),
      );
      return stopOnSignal(stack);
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

function countArg(name: string, v: string, min: number): number {
  if (!/^[0-9]+$/.test(v) || Number(v) < min) throw new UsageError(`${name}: not a whole number >= ${min}: ${v}`);
  return Number(v);
}

function addressArg(name: string, v: string): string {
  const a = parseAddress(v);
  if (!a.ok) throw new UsageError(`${name}: ${a.error}: ${v}`);
  return v;
}

function choiceArg<T extends string>(name: string, v: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(v)) throw new UsageError(`${name}: one of ${options.join(', ')}: ${v}`);
  return v as T;
}

function printRepair({ file, repair: r }: { file: string; repair: JournalRepair | undefined }): void {
  if (!r) return console.log(`${file}: no corrupt record, nothing changed (a torn tail is cut when the server starts)`);
  console.log(
    `${file}: corrupt record at byte ${r.offset}; kept the ${r.keptBytes} bytes from there on in ${r.keptIn}\n` +
      `the journal now ends at byte ${r.offset}, with ${r.records} records: the server starts with the state they make`,
  );
}

async function run(what: string, start: () => Promise<{ address: string; metricsPort: number; stop(): Promise<void> }>) {
  const server = await start();
  console.log(`${what} address: ${server.address}\nmetrics port: ${server.metricsPort} (/metrics, /healthz)`);
  stopOnSignal(server);
}

function stopOnSignal(server: { stop(): Promise<void> }): void {
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
