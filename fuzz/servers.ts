// The servers the fuzzer attacks, as real processes started through the hush
// CLI (bin/hush.js) on 127.0.0.1: a relay, a notification server whose only
// provider is a push gateway, and that gateway (TLS with the test certificate,
// so HTTP/1.1 is served beside HTTP/2), whose APNs provider points at an APNs
// test server in this process. Each process' resident memory is sampled; one
// that exits while the fuzzer runs is a crash.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { formatAddress, parseAddress, publicAddress } from '../src/core/address.ts';
import { LOCAL_RELAYS } from '../src/ntf/config.ts';
import { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { freePort } from '../src/server/testkit/free-port.ts';
import { HUSH, ROOT, runChild, TEST_CA_FILE, waitForLine, type Children } from '../bench/lib.ts';

export type ServerName = 'relay' | 'ntf' | 'gateway';

/** The creation password the relay and the NTF are started with: the fuzzer sends it, and wrong ones. */
export const PASSWORD = 'fuzz-creation-password';
const TOPIC = 'chat.hush.fuzz';
const TEST_KEY_FILE = path.join(ROOT, 'src', 'push', 'stand-ins', 'fixtures', 'localhost.key');
/** Generous per-address limits: every fuzzer connection comes from 127.0.0.1. Per-connection limits stay the defaults. */
const MANY = '100000000';

export class ServerProcess {
  maxRssKB = 0;
  /** The end of its output, for a crash report. */
  private tail = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly name: ServerName,
    readonly proc: ChildProcess,
  ) {
    const keep = (d: Buffer) => (this.tail = (this.tail + d.toString()).slice(-8000));
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.once('exit', (code, signal) => (this.exit = { code, signal }));
  }

  get output(): string {
    return this.tail;
  }

  /** Reads VmRSS (Linux) and keeps the largest seen. */
  sampleRss(): void {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'));
      if (m) this.maxRssKB = Math.max(this.maxRssKB, Number(m[1]));
    } catch {
      // exited, or not Linux
    }
  }
}

export interface Servers {
  apns: ApnsTestServer;
  relay: ServerProcess & { address: string; addressWithPassword: string };
  ntf: ServerProcess & { address: string };
  gateway: ServerProcess & { url: string; port: number; key: string };
  /** A loopback port nothing listens on (SNEW may name it). */
  closedPort: number;
}

const hush = (children: Children, args: string[]) => runChild(children, process.execPath, [HUSH, ...args], 60_000);

/** FUZZ_CPU_PROF=DIR: each server writes a V8 CPU profile into DIR when it stops. */
const PROF = process.env.FUZZ_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(process.env.FUZZ_CPU_PROF)] : [];

function start(children: Children, name: ServerName, dir: string, env: Record<string, string>): ServerProcess {
  const proc = children.spawn(process.execPath, [...PROF, HUSH, name, 'start', '--dir', dir], {
    env: { ...process.env, HUSH_LOG_LEVEL: 'error', ...env },
  });
  return new ServerProcess(name, proc);
}

function editJson(file: string, edit: (c: Record<string, unknown>) => void): void {
  const c = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  fs.writeFileSync(file, JSON.stringify(c, null, 2) + '\n');
}

export async function startServers(children: Children, base: string): Promise<Servers> {
  const apns = await ApnsTestServer.start({ topics: [TOPIC], record: false });
  const team = apns.keys.create();
  const closedPort = await freePort();

  // ---- the gateway: TLS, the APNs test server as its provider, two servers' keys
  const gwDir = path.join(base, 'gateway');
  await hush(children, ['gateway', 'init', '--dir', gwDir]);
  const apnsKey = path.join(gwDir, 'apns.p8');
  fs.writeFileSync(apnsKey, team.privateKey, { mode: 0o600 });
  editJson(path.join(gwDir, 'gateway.json'), (c) => {
    c.tls = { cert: TEST_CA_FILE, key: TEST_KEY_FILE };
    c.apns = { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile: apnsKey, topic: TOPIC, caFile: TEST_CA_FILE };
    c.maxConnectionsPerAddress = 0;
  });
  const keyOf = (out: string) => /^(hgw_\S+)$/m.exec(out)![1]!;
  const ntfKey = keyOf(await hush(children, ['gateway', 'add-server', '--dir', gwDir, '--name', 'ntf']));
  const fuzzKey = keyOf(await hush(children, ['gateway', 'add-server', '--dir', gwDir, '--name', 'fuzz', '--rate', '1000000', '--burst', '1000000']));
  const gw = start(children, 'gateway', gwDir, { HUSH_GATEWAY_PORT: '0', HUSH_GATEWAY_METRICS_PORT: '0' });
  const url = (await waitForLine(gw.proc, /push gateway address: (https:\/\/127\.0\.0\.1:\d+)/, 60_000))[1]!;

  // ---- the relay: a creation password, per-address limits out of the way
  const relayDir = path.join(base, 'relay');
  await hush(children, ['relay', 'init', '--dir', relayDir, '--port', '5223']); // the port is a placeholder: HUSH_RELAY_PORT=0
  const relay = start(children, 'relay', relayDir, {
    HUSH_RELAY_PORT: '0',
    HUSH_RELAY_METRICS_PORT: '0',
    HUSH_RELAY_CREATION_PASSWORD: PASSWORD,
    HUSH_RELAY_CREATION_PER_ADDRESS_BURST: MANY,
    HUSH_RELAY_CREATION_PER_ADDRESS_PER_HOUR: MANY,
    HUSH_RELAY_MAX_CONNECTIONS_PER_ADDRESS: '0',
  });
  const relayPrinted = (await waitForLine(relay.proc, /relay address: (\S+)/, 60_000))[1]!;
  const relayAddress = publicAddress(relayPrinted);
  const parsed = parseAddress(relayAddress);
  if (!parsed.ok) throw new Error(`the relay printed a bad address: ${relayPrinted}`);

  // ---- the notification server: the gateway its only provider, relays on 127.0.0.1 allowed (and no others)
  const ntfDir = path.join(base, 'ntf');
  await hush(children, ['ntf', 'init', '--dir', ntfDir, '--port', '5224']);
  editJson(path.join(ntfDir, 'ntf.json'), (c) => {
    c.gateway = { url, key: ntfKey, caFile: TEST_CA_FILE };
    c.relays = LOCAL_RELAYS;
    c.creation = { subscriptions: { perAddressBurst: Number(MANY), perAddressPerHour: Number(MANY) } }; // (no variables for these)
  });
  const ntf = start(children, 'ntf', ntfDir, {
    HUSH_NTF_PORT: '0',
    HUSH_NTF_METRICS_PORT: '0',
    HUSH_NTF_CREATION_PASSWORD: PASSWORD,
    HUSH_NTF_CREATION_PER_ADDRESS_BURST: MANY,
    HUSH_NTF_CREATION_PER_ADDRESS_PER_HOUR: MANY,
    HUSH_NTF_MAX_CONNECTIONS_PER_ADDRESS: '0',
  });
  const ntfAddress = (await waitForLine(ntf.proc, /notification server address: (\S+)/, 60_000))[1]!;

  return {
    apns,
    relay: Object.assign(relay, { address: relayAddress, addressWithPassword: formatAddress({ ...parsed.value, password: PASSWORD }) }),
    ntf: Object.assign(ntf, { address: publicAddress(ntfAddress) }),
    gateway: Object.assign(gw, { url, port: Number(new URL(url).port), key: fuzzKey }),
    closedPort,
  };
}
