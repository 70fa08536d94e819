// Client SDK benchmark: push received → notifications ready, on loopback.
//
//   relay                 a real process (bin/hush.js relay start, journal store, fsync off)
//   notification server   in this process, with our APNs provider → the APNs test server
//   Alice, Bob            SDK clients in this process, with the seams openNodeClient fills in
//                         (node:crypto, ws) on a MemoryStore
//
// Bob is asleep (no SUB). Each round Alice sends n messages; once Bob's pushes
// have stopped coming for QUIET_MS, the newest is handed to Bob's push handler
// and timed: open the push, map its entry to the contact, GET + decrypt + ACK
// each waiting message, build the notification. Peer, same run: the protocol
// floor, a bare relay client doing the same GETs and ACKs (each ACK with the
// next GET, as the SDK sends them) on a queue of its own, with n waiting
// messages of the same size, the clients' crypto, without any SDK work. Its rounds alternate with
// the SDK's and start after the same quiet: a relay and a client that sat idle
// answer a first round trip slower than ones in a tight loop (here ~2x), and
// machine load comes and goes; both sides see the same.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { nodeCrypto } from '../src/node/crypto.ts';
import { LOCAL_RELAYS } from '../src/ntf/config.ts';
import { NtfServer } from '../src/ntf/server.ts';
import { MemoryNtfStore } from '../src/ntf/store/memory.ts';
import { ApnsProvider } from '../src/push/apns/provider.ts';
import { ApnsTestServer, type ApnsRecordedPush } from '../src/push/stand-ins/apns-server.ts';
import { RelayClient } from '../src/relay/client.ts';
import { HushClient } from '../src/sdk/client.ts';
import { apnsToken } from '../src/sdk/device.ts';
import { E2E_BODY_SIZE } from '../src/sdk/e2e.ts';
import { nodeSeams } from '../src/sdk/node.ts';
import { MemoryStore } from '../src/sdk/store/memory.ts';
import pino from 'pino';
import { Children, percentile, round, sleep, table, writeResults } from './lib.ts';
import { startRelayProcess } from './relay.ts';

const TOPIC = 'chat.hush.bench';
const ROUNDS: Record<number, number> = { 1: 300, 6: 150 };
/** Idle time before each timed round, the SDK's and the floor's. */
const QUIET_MS = 15;

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

export async function run(): Promise<void> {
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-client-'));
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  const team = apns.keys.create();
  let ntf: NtfServer | undefined;
  const clients: Array<{ close(): void }> = [];
  try {
    const relay = await startRelayProcess(children, path.join(dir, 'relay'));
    ntf = new NtfServer({
      identity: nodeCrypto.ed25519KeyPair(),
      serviceKey: nodeCrypto.x25519KeyPair(),
      crypto: nodeCrypto,
      store: new MemoryNtfStore(),
      providers: [new ApnsProvider({ host: apns.url, ca: apns.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: TOPIC, serves: ['apns'] })],
      relays: LOCAL_RELAYS,
      host: '127.0.0.1',
      port: 0,
      log: pino({ level: 'silent' }),
    });
    await ntf.start();
    let skew = 0;
    const open = (name: string, now?: () => number) =>
      HushClient.open({ store: new MemoryStore(), relays: [relay.address], ntfServer: ntf!.address, name, ...nodeSeams(), ...(now ? { now } : {}) });
    const alice = await open('Alice');
    // Bob's clock moves 2 s a round, past the per-chat rate limit, so every round shows its notification.
    const bob = await open('Bob', () => Date.now() + skew);
    clients.push(alice, bob);

    const token = Buffer.alloc(32, 7);
    const pushes: ApnsRecordedPush[] = [];
    apns.on('push', (p) => p.token === token.toString('hex') && pushes.push(p));
    await bob.registerDevice(apnsToken(token));
    await until('the verification push', () => pushes.length === 1);
    await bob.handlePush(pushes[0]!.payload);
    await alice.start();
    await bob.start();
    const { contactId, link } = await alice.createInvitation();
    await bob.acceptInvitation(link);
    await until('connected', () => bob.contacts()[0]?.state === 'ready' && alice.contacts()[0]?.state === 'ready');
    await until('subscribed', () => bob.contacts()[0]?.subscription !== undefined);
    for (let i = 0; i < 100 && bob.contacts()[0]?.subscription !== 'ACTIVE'; i++) {
      await bob.checkNotifications();
      await sleep(20);
    }
    bob.stop();

    const figures: Record<string, number> = {};
    const rows: (string | number)[][] = [];
    const peer = await RelayClient.connect(relay.address, nodeSeams());
    clients.push(peer);
    for (const n of [1, 6]) {
      const ours: number[] = [];
      const floor: number[] = [];
      const floorQueue = await newFloorQueue(peer);
      for (let r = 0; r < ROUNDS[n]!; r++) {
        skew += 2000;
        const before = pushes.length;
        for (let k = 0; k < n; k++) await alice.send(contactId, `round ${r} message ${k}`);
        // the newest push, once no more come: it names the last message
        await until('a push', () => pushes.length > before);
        let seen = pushes.length;
        for (;;) {
          await sleep(QUIET_MS);
          if (pushes.length === seen) break;
          seen = pushes.length;
        }
        const t0 = performance.now();
        const shown = await bob.handlePush(pushes.at(-1)!.payload);
        ours.push(performance.now() - t0);
        if (shown.length !== 1 || shown[0]!.count !== n) throw new Error(`round ${r}: expected one notification for ${n} messages, got ${JSON.stringify(shown)}`);
        floor.push(await floorRound(peer, floorQueue, n));
      }
      ours.sort((a, b) => a - b);
      floor.sort((a, b) => a - b);
      const p50 = round(percentile(ours, 50), 2);
      const p99 = round(percentile(ours, 99), 2);
      const f50 = round(percentile(floor, 50), 2);
      Object.assign(figures, {
        [`push_to_notifications_p50_ms_${n}msg`]: p50,
        [`push_to_notifications_p99_ms_${n}msg`]: p99,
        [`get_ack_floor_p50_ms_${n}msg`]: f50,
        [`get_ack_floor_p99_ms_${n}msg`]: round(percentile(floor, 99), 2),
        [`ours_over_floor_p50_${n}msg`]: round(p50 / f50, 2),
      });
      rows.push([n, ROUNDS[n]!, p50, p99, f50, round(percentile(floor, 99), 2), round(p50 / f50, 2), p99 <= 50 ? 'met' : 'missed']);
    }
    console.log(
      table(['messages', 'rounds', 'p50 ms', 'p99 ms', 'floor p50', 'floor p99', 'p50 ÷ floor', 'p99 ≤ 50 ms'], rows),
    );
    const file = writeResults('client', {
      figures,
      notes: {
        measure: 'push received → notifications ready: handlePush(APNs payload) with n messages waiting, Bob asleep (no SUB); the client as openNodeClient ships it (node:crypto, ws) on a MemoryStore',
        servers: 'relay: separate process (bin/hush.js relay start, journal store, fsync off); notification server and APNs test server in this process, idle while timed',
        floor: `a bare RelayClient GET + ACK of n waiting ${E2E_BODY_SIZE}-byte messages on its own queue, no SDK work, same crypto (node:crypto), same relay, same run; its rounds alternate with the SDK's, each after ${QUIET_MS} ms idle as the SDK's`,
        target: 'p99 ≤ 50 ms',
      },
    });
    console.log(`wrote ${file}`);
  } finally {
    for (const c of clients) c.close();
    await ntf?.stop();
    await apns.close();
    await children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A queue of the peer's own, and the body its messages carry. */
async function newFloorQueue(c: RelayClient) {
  const rcvAuth = c.crypto.x25519KeyPair();
  const q = await c.newQueue(rcvAuth, c.crypto.x25519KeyPair().publicKey);
  return { rcvId: q.rcvId, sndId: q.sndId, rcvKey: rcvAuth.privateKey, body: c.crypto.randomBytes(E2E_BODY_SIZE) };
}

/** n messages sent, QUIET_MS idle, then GET + ACK of them, timed. */
async function floorRound(c: RelayClient, q: Awaited<ReturnType<typeof newFloorQueue>>, n: number): Promise<number> {
  for (let k = 0; k < n; k++) await c.send(q.sndId, q.body);
  await sleep(QUIET_MS);
  const t0 = performance.now();
  // as the SDK does: each ACK goes with the next GET
  let m = await c.get(q.rcvId, q.rcvKey);
  while (m) [, m] = await Promise.all([c.ack(q.rcvId, q.rcvKey, m.msgId), c.get(q.rcvId, q.rcvKey)]);
  return performance.now() - t0;
}
