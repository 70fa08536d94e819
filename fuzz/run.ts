// `npm run fuzz [-- --inputs N] [--seconds S] [--seed X] [--hang-seconds H] [--out FILE]`
//
// Sends N random and mutated inputs (default 1,000,000), for at most S seconds
// (default 600), to a relay, a notification server and a push gateway running
// as processes (fuzz/servers.ts): handshakes, blocks and transmissions —
// every command of both protocols with fuzzed fields, through real sessions
// (fuzz/session.ts, relay.ts, ntf.ts) — and HTTP requests to the gateway
// (fuzz/gateway.ts). One input is one hello, bad block, transmission or HTTP
// request. Every input must be answered (a reply, an HTTP response) or its
// connection closed within H seconds (default 30): one that is neither is a
// hang. A server process that exits is a crash, and ends the run.
//
// Prints the seed (a run's inputs come back from it with --seed) and writes
// FILE (default bench/results/fuzz.json):
//   { seed, seconds, inputs, crashes, hangs, badReplies,
//     servers: { relay|ntf|gateway: { inputs, answered, closed, hangs, maxRssMB } },
//     setups: { relay: { sessions, queues, secured }, ntf: { sessions, tokens, verified, subscriptions } },
//     answers: { relay|ntf: { tag ("ERR AUTH" for an error): count } },
//     failures: [first few: server, kind, stream (the PRNG stream), detail, input (hex)],
//     crash?: { server, exit, output, lastInputs } , machine, date }
// Exits 1 on a crash, a hang or a bad reply.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomInt } from 'node:crypto';
import { formatAddress, parseAddress } from '../src/core/address.ts';
import { nodeCrypto } from '../src/node/crypto.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { encodeCommand as ntfCommand, NTF_BLOCK_SIZE, NTF_PROTOCOL, NTF_VERSIONS } from '../src/ntf/protocol.ts';
import { RelayClient } from '../src/relay/client.ts';
import { encodeCommand as relayCommand, RELAY_BLOCK_SIZE, RELAY_PROTOCOL, RELAY_VERSIONS } from '../src/relay/protocol.ts';
import { TEST_CERT } from '../src/push/stand-ins/tls.ts';
import { Children, machine, RESULTS_DIR } from '../bench/lib.ts';
import { Packer } from './commands.ts';
import { GatewayFuzz, type Input } from './gateway.ts';
import { NtfFuzz, type Notifier, type NtfWorld } from './ntf.ts';
import { Prng } from './prng.ts';
import { RelayFuzz, type Creations } from './relay.ts';
import { PASSWORD, startServers, type ServerName, type ServerProcess, type Servers } from './servers.ts';
import { Tally } from './tally.ts';
import { blockInput, helloInput } from './frames.ts';
import { FuzzSession, type Target } from './session.ts';

const { values: args } = parseArgs({
  options: {
    inputs: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '600' },
    seed: { type: 'string' },
    'hang-seconds': { type: 'string', default: '30' },
    out: { type: 'string', default: path.join(RESULTS_DIR, 'fuzz.json') },
  },
});
const count = (name: string, v: string) => {
  if (!/^[0-9]+$/.test(v) || Number(v) < 1) throw new Error(`--${name}: not a whole number >= 1: ${v}`);
  return Number(v);
};
const INPUTS = count('inputs', args.inputs);
const SECONDS = count('seconds', args.seconds);
const HANG_MS = count('hang-seconds', args['hang-seconds']) * 1000;
const SEED = args.seed === undefined ? randomInt(2 ** 32) : seedArg(args.seed);

function seedArg(v: string): number {
  if (!/^[0-9]+$/.test(v) || Number(v) >= 2 ** 32) throw new Error(`--seed: not a whole number below 2^32: ${v}`);
  return Number(v);
}

/** Connections (or request loops) at once per server. */
const WORKERS: Record<ServerName, number> = { relay: 12, ntf: 12, gateway: 64 };
/** Transmissions per block at most, and blocks per session before a new one. */
const MAX_ITEMS: Record<'relay' | 'ntf', number> = { relay: 200, ntf: 60 };
const BLOCKS_PER_SESSION = 40;
/** Valid creations the fuzzer may make: each is state a server keeps. */
const CREATIONS = { relay: 3000, tokens: 1500, subscriptions: 3000 };
const HELLO_SHARE = 0.04;
const BAD_BLOCK_SHARE = 0.15;

/** How many valid creations are left; taken one at a time. */
const creations = (n: number): Creations => ({ take: () => n-- > 0 });

/** A relay or NTF worker: a handshake input now and then; else a session, set up, fuzzed block by block, sometimes ended by a bad block. */
async function protocolWorker(
  run: Tally,
  target: Target,
  index: number,
  setUp: (s: FuzzSession, r: Prng) => Promise<{ next(): Uint8Array; depth: Record<string, number> }>,
): Promise<void> {
  const server = target.name;
  const bad = (stream: string) => (why: string) => {
    run.badReplies++;
    run.fail({ server, kind: 'reply', stream, detail: why, input: '' });
  };
  for (let n = 0; run.running(server); n++) {
    const stream = `${server}/${index}/${n}`;
    const r = new Prng(SEED, stream);
    if (r.chance(HELLO_SHARE)) {
      if (run.take(server, 1) === 0) break;
      const h = await helloInput(target, r, bad(stream));
      run.record(server, [h.input], h.outcome, 0, { kind: `hello ${h.kind}`, stream });
      continue;
    }
    const s = await FuzzSession.open(target, bad(stream));
    if (s === 'hang' && run.take(server, 1) === 1) run.record(server, [new Uint8Array(0)], s, 0, { kind: 'hello (none from the server)', stream });
    if (typeof s === 'string') continue; // closed before the hello: retried
    let depth: Record<string, number> | undefined;
    try {
      const f = await setUp(s, r);
      depth = f.depth;
      const packer = new Packer(MAX_ITEMS[server], () => f.next());
      for (let b = 0; b < BLOCKS_PER_SESSION && run.running(server) && !s.isClosed; b++) {
        const items = packer.fill(s);
        items.length = run.take(server, items.length);
        if (items.length === 0) break;
        const x = await s.exchange(items);
        run.record(server, items, x.outcome, x.unanswered, { kind: 'transmissions', stream });
      }
      if (r.chance(BAD_BLOCK_SHARE) && !s.isClosed && run.running(server) && run.take(server, 1) === 1) {
        const x = await blockInput(s, r);
        run.record(server, [x.input], x.outcome, 0, { kind: `block ${x.kind}`, stream });
      }
    } finally {
      s.close();
      run.session(server, depth, s.tags);
    }
  }
}

async function gatewayWorker(run: Tally, fuzz: GatewayFuzz, index: number): Promise<void> {
  for (let n = 0; run.running('gateway') && run.take('gateway', 1) === 1; n++) {
    const stream = `gateway/${index}/${n}`;
    const x: Input = await fuzz.next(new Prng(SEED, stream));
    run.record('gateway', [x.input], x.outcome, 0, { kind: x.kind, stream, state: x.state });
  }
}

/** Queues with notifier credentials at the relay, for SNEWs the relay knows. */
async function makeNotifiers(address: string, n: number): Promise<Notifier[]> {
  const c = await RelayClient.connect(address, { crypto: nodeCrypto, webSocket: nodeWebSocket(), timeoutMs: HANG_MS, keepalive: false });
  try {
    const out: Notifier[] = [];
    for (let i = 0; i < n; i++) {
      const ntfAuth = nodeCrypto.x25519KeyPair();
      const ids = await c.newQueue(nodeCrypto.x25519KeyPair(), nodeCrypto.x25519KeyPair().publicKey, {
        ntfAuthKey: ntfAuth.publicKey,
        rcvNtfDhKey: nodeCrypto.x25519KeyPair().publicKey,
      });
      if (ids.ntf) out.push({ notifierId: ids.ntf.notifierId, ntfAuth });
    }
    return out;
  } finally {
    c.close();
  }
}

function target(name: 'relay' | 'ntf', address: string): Target {
  const a = parseAddress(address);
  if (!a.ok) throw new Error(`bad ${name} address: ${address}`);
  const relay = name === 'relay';
  return {
    name,
    url: `ws://127.0.0.1:${a.value.port}/`,
    fingerprint: a.value.fingerprint,
    protocol: relay ? RELAY_PROTOCOL : NTF_PROTOCOL,
    versions: relay ? RELAY_VERSIONS : NTF_VERSIONS,
    blockSize: relay ? RELAY_BLOCK_SIZE : NTF_BLOCK_SIZE,
    ping: relay ? relayCommand({ type: 'PING' }) : ntfCommand({ type: 'PING' }),
    events: new Set(relay ? ['MSG', 'NMSG', 'END', 'ENDS', 'DELD'] : []),
    crypto: nodeCrypto,
    hangMs: HANG_MS,
  };
}

/** The fixed relay addresses an SNEW may name besides the relay's own: all on 127.0.0.1, none of them dialled to anything else. */
function relayVariants(s: Servers): string[] {
  const a = parseAddress(s.relay.address);
  if (!a.ok) throw new Error('bad relay address');
  const v = a.value;
  const wrong = new Uint8Array(32).fill(7);
  const fmt = (o: Partial<typeof v>) => formatAddress({ ...v, ...o });
  return [s.relay.addressWithPassword, fmt({ tls: true }), fmt({ fingerprint: wrong }), fmt({ port: s.closedPort }), fmt({ host: 'localhost' })];
}

/** The NTF world: the relay, its notifiers, and the verification pushes the APNs test server accepts. */
function ntfWorld(s: Servers): NtfWorld {
  const waiting = new Map<string, (data: string | undefined) => void>();
  s.apns.on('push', (p) => {
    const w = waiting.get(p.token);
    if (w && typeof p.payload.d === 'string') w(p.payload.d);
  });
  return {
    crypto: nodeCrypto,
    relays: { real: s.relay.address, variants: relayVariants(s) },
    // refused (RATE…): the session's SNEWs name unknown notifiers only
    newNotifiers: (n) => makeNotifiers(s.relay.addressWithPassword, n).catch(() => []),
    password: PASSWORD,
    tokens: creations(CREATIONS.tokens),
    subscriptions: creations(CREATIONS.subscriptions),
    verificationPush: (tokenHex) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => done(undefined), HANG_MS);
        const done = (d: string | undefined) => {
          clearTimeout(timer);
          waiting.delete(tokenHex);
          resolve(d);
        };
        waiting.set(tokenHex, done);
      }),
  };
}

/** A good session's PING is answered: the server still serves after the run. */
async function protocolAlive(t: Target): Promise<boolean> {
  const s = await FuzzSession.open(t, () => {});
  if (typeof s === 'string') return false;
  const pong = await s.call(new Uint8Array(0), t.ping);
  s.close();
  return pong !== undefined;
}

async function main(): Promise<number> {
  console.log(`fuzz: seed ${SEED} (reproduce with --seed ${SEED}); ${INPUTS.toLocaleString('en')} inputs, at most ${SECONDS} s`);
  const children = new Children();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-fuzz-'));
  const run = new Tally(INPUTS, SECONDS, HANG_MS);
  // Ctrl-C, a kill, a closed stdout (`| head`): the run ends the ordinary way, its servers stopped, not orphaned.
  process.stdout.on('error', () => {});
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (run.stopped = true));
  let servers: Servers | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    servers = await startServers(children, base);
    const procs = [servers.relay, servers.ntf, servers.gateway];
    for (const p of procs) p.proc.once('exit', () => run.crashed(p));
    sampler = setInterval(() => procs.forEach((p) => p.sampleRss()), 250);
    const relayTarget = target('relay', servers.relay.address);
    const ntfTarget = target('ntf', servers.ntf.address);
    const world = ntfWorld(servers);
    const relayCreations = creations(CREATIONS.relay);
    const gateway = new GatewayFuzz({ url: servers.gateway.url, port: servers.gateway.port, ca: TEST_CERT, key: servers.gateway.key, hangMs: HANG_MS });
    const progress = setInterval(() => console.log(`  ${Math.round((performance.now() - run.started) / 1000)} s: ${run.progress}`), 10_000);
    try {
      await Promise.all([
        ...Array.from({ length: WORKERS.relay }, (_, i) =>
          protocolWorker(run, relayTarget, i, (s, r) => RelayFuzz.setUp(s, r, nodeCrypto, relayCreations, PASSWORD)),
        ),
        ...Array.from({ length: WORKERS.ntf }, (_, i) => protocolWorker(run, ntfTarget, i, (s, r) => NtfFuzz.setUp(s, r, world))),
        ...Array.from({ length: WORKERS.gateway }, (_, i) => gatewayWorker(run, gateway, i)),
      ]);
    } finally {
      clearInterval(progress);
    }
    if (!run.crash) {
      for (const [name, alive] of [
        ['relay', await protocolAlive(relayTarget)],
        ['ntf', await protocolAlive(ntfTarget)],
        ['gateway', await gateway.alive()],
      ] as const)
        if (!alive) {
          run.hangs++;
          run.fail({ server: name, kind: 'alive', stream: '', detail: 'no answer to a good request after the run', input: '' });
        }
    }
    gateway.close();
    procs.forEach((p) => p.sampleRss());
  } finally {
    clearInterval(sampler);
    run.finished = true;
    await children.killAll();
    await servers?.apns.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
  const seconds = Math.round((performance.now() - run.started) / 100) / 10;
  const mb = (p: ServerProcess | undefined) => Math.round(((p?.maxRssKB ?? 0) / 1024) * 10) / 10;
  const result = {
    seed: SEED,
    seconds,
    inputs: run.inputs,
    crashes: run.crash ? 1 : 0,
    hangs: run.hangs,
    badReplies: run.badReplies,
    servers: {
      relay: { ...run.stats.relay, maxRssMB: mb(servers?.relay) },
      ntf: { ...run.stats.ntf, maxRssMB: mb(servers?.ntf) },
      gateway: { ...run.stats.gateway, maxRssMB: mb(servers?.gateway) },
    },
    setups: run.setups,
    answers: run.answers,
    failures: run.failures,
    ...(run.crash ? { crash: run.crash } : {}),
    machine: machine(),
    date: new Date().toISOString(),
  };
  fs.mkdirSync(path.dirname(args.out), { recursive: true });
  fs.writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
  console.log(
    `fuzz: ${result.inputs.toLocaleString('en')} inputs in ${seconds} s: ${result.crashes} crashes, ${result.hangs} hangs, ${result.badReplies} bad replies; ` +
      `max RSS relay ${result.servers.relay.maxRssMB} MB, ntf ${result.servers.ntf.maxRssMB} MB, gateway ${result.servers.gateway.maxRssMB} MB (${args.out})`,
  );
  return result.crashes + result.hangs + result.badReplies > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exit(2);
  },
);
