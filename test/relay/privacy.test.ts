// The relay's privacy properties (DESIGN.md "Privacy properties"), each as a
// test over a real in-process relay on loopback: unrelated random queue IDs,
// no shared ciphertext between sent and delivered traffic, fixed-size frames,
// no existence oracle, and logs without IDs or keys.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { WebSocketFactory, WebSocketLike } from '../../src/core/client.ts';
import { decodeBlock } from '../../src/core/block.ts';
import type { KeyPair } from '../../src/core/crypto/suite.ts';
import { decodeClientHello, decodeServerHello } from '../../src/core/handshake.ts';
import { equalBytes } from '../../src/core/encoding.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { RelayCommandError, type RelayEvent } from '../../src/relay/client.ts';
import { ID_LENGTH, RELAY_BLOCK_SIZE, type RelayCommand } from '../../src/relay/protocol.ts';
import { countingCrypto } from '../crypto-count.ts';
import { bytes, connect, crypto, MANY_QUEUES, newQueue, startRelay, type Queue, type TestClient, type TestRelay , capturedLog } from '../helpers.ts';

const EMPTY = new Uint8Array(0);

// ---- wire capture: a WebSocket factory that records every frame both ways ----

interface Frame {
  dir: 'in' | 'out';
  data: Uint8Array;
}

function toBytes(data: unknown): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  throw new Error(`unexpected frame type ${typeof data}`);
}

/** Delegates to a real socket, recording what the client sends and what it receives. */
class RecordingSocket implements WebSocketLike {
  private handler: WebSocketLike['onmessage'] = null;

  constructor(
    private readonly ws: WebSocketLike,
    private readonly frames: Frame[],
  ) {}

  get binaryType() {
    return this.ws.binaryType;
  }
  set binaryType(v: string) {
    this.ws.binaryType = v;
  }
  get readyState() {
    return this.ws.readyState;
  }
  send(data: Uint8Array): void {
    this.frames.push({ dir: 'out', data: toBytes(data) });
    this.ws.send(data);
  }
  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
  get onmessage() {
    return this.handler;
  }
  set onmessage(h: WebSocketLike['onmessage']) {
    this.handler = h;
    this.ws.onmessage = h
      ? (ev) => {
          this.frames.push({ dir: 'in', data: toBytes(ev.data) });
          h(ev);
        }
      : null;
  }
  get onopen() {
    return this.ws.onopen;
  }
  set onopen(h: WebSocketLike['onopen']) {
    this.ws.onopen = h;
  }
  get onclose() {
    return this.ws.onclose;
  }
  set onclose(h: WebSocketLike['onclose']) {
    this.ws.onclose = h;
  }
  get onerror() {
    return this.ws.onerror;
  }
  set onerror(h: WebSocketLike['onerror']) {
    this.ws.onerror = h;
  }
}

function recordingWebSocket(frames: Frame[]): WebSocketFactory {
  const inner = nodeWebSocket();
  return (url) => new RecordingSocket(inner(url), frames);
}

// ---- helpers ----

async function withRelay(
  opts: Parameters<typeof startRelay>[0],
  fn: (relay: TestRelay, open: (frames?: Frame[]) => Promise<TestClient>) => Promise<void>,
): Promise<void> {
  const relay = await startRelay(opts);
  const clients: TestClient[] = [];
  try {
    await fn(relay, async (frames) => {
      const c = await connect(relay.address, frames ? { webSocket: recordingWebSocket(frames) } : {});
      clients.push(c);
      return c;
    });
  } finally {
    for (const c of clients) c.close();
    await relay.stop();
  }
}

const key = (): KeyPair => crypto.x25519KeyPair();
const randomId = () => crypto.randomBytes(ID_LENGTH);
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

async function next<T extends RelayEvent['type']>(c: TestClient, type: T): Promise<Extract<RelayEvent, { type: T }>> {
  const e = await c.nextEvent(type);
  assert.equal(e.type, type);
  return e as Extract<RelayEvent, { type: T }>;
}

function ntfOf(q: Queue) {
  assert.ok(q.ntf, 'queue has notifier credentials');
  return q.ntf;
}

/** Every `n`-byte window of each buffer, as strings for set lookups. */
function windows(bufs: Uint8Array[], n: number): Set<string> {
  const s = new Set<string>();
  for (const b of bufs) {
    const str = latin1(b);
    for (let i = 0; i + n <= str.length; i++) s.add(str.slice(i, i + n));
  }
  return s;
}

/** Offset of the first `n`-byte window of `b` found in `set`, or -1. */
function sharedWindow(b: Uint8Array, set: Set<string>, n: number): number {
  const str = latin1(b);
  for (let i = 0; i + n <= str.length; i++) if (set.has(str.slice(i, i + n))) return i;
  return -1;
}

function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RelayCommandError) return e.error;
    throw e;
  }
  assert.fail('expected a relay error');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Round-trip time of an attempt that must fail with AUTH. */
async function timeAuth(attempt: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  const e = await errorOf(attempt());
  const dt = performance.now() - t0;
  assert.equal(e, 'AUTH');
  return dt;
}

// ---- the properties ----

describe('queue IDs', () => {
  test('rcvId, sndId and notifierId are distinct, unrelated and random-looking', () =>
    withRelay({ creation: MANY_QUEUES }, async (_relay, open) => {
      const c = await open();
      const queues: Queue[] = [];
      for (let i = 0; i < 4; i++) queues.push(...(await Promise.all(Array.from({ length: 50 }, () => newQueue(c, true)))));
      const triples = queues.map((q) => [q.rcvId, q.sndId, ntfOf(q).notifierId] as const);
      const all = triples.flat();
      assert.equal(all.length, 600);
      for (const id of all) assert.equal(id.length, ID_LENGTH);
      assert.equal(new Set(all.map(latin1)).size, all.length, 'all IDs unique');

      for (const ids of triples) {
        for (let i = 0; i < 3; i++)
          for (let j = 0; j < 3; j++) {
            if (i === j) continue;
            const a = ids[i]!;
            const b = ids[j]!;
            assert.ok(commonPrefix(a, b) < 4, 'IDs of one queue share a 4-byte prefix');
            assert.equal(sharedWindow(b, windows([a], 6), 6), -1, 'IDs of one queue share a 6-byte run');
            // Not derived from each other by a hash.
            assert.ok(!equalBytes(crypto.sha256(a).subarray(0, ID_LENGTH), b), 'one ID is a hash of another');
          }
      }

      // Shared 2-byte prefixes across all 600 IDs: ~2.7 expected by chance (C(600,2)/65536).
      const prefixes = new Map<number, number>();
      for (const id of all) prefixes.set((id[0]! << 8) | id[1]!, (prefixes.get((id[0]! << 8) | id[1]!) ?? 0) + 1);
      let pairs = 0;
      for (const n of prefixes.values()) pairs += (n * (n - 1)) / 2;
      assert.ok(pairs <= 20, `${pairs} pairs of IDs share a 2-byte prefix`);

      // Bits are balanced (115 200 bits, sd ≈ 170) and byte values uniform (chi-square, 255 dof).
      let ones = 0;
      const counts = new Array<number>(256).fill(0);
      for (const id of all)
        for (const b of id) {
          counts[b]!++;
          for (let v = b; v; v >>= 1) ones += v & 1;
        }
      const bits = all.length * ID_LENGTH * 8;
      assert.ok(Math.abs(ones - bits / 2) < 1700, `${ones} of ${bits} bits set`);
      const expected = (all.length * ID_LENGTH) / 256;
      const chi2 = counts.reduce((s, n) => s + (n - expected) ** 2 / expected, 0);
      assert.ok(chi2 < 400, `byte values not uniform: chi-square ${chi2.toFixed(1)}`);
    }));
});

describe('ciphertext', () => {
  test('delivered MSGs and the frames on the wire share no 16-byte run with the sent body or the sent frames', () =>
    withRelay({}, async (_relay, open) => {
      const rFrames: Frame[] = [];
      const sFrames: Frame[] = [];
      const r = await open(rFrames);
      const s = await open(sFrames);
      const q = await newQueue(r);
      const body = crypto.randomBytes(4000);
      const textBody = bytes('a readable message that a relay must never forward as it came; '.repeat(20));
      await s.send(q.sndId, body);
      await s.send(q.sndId, textBody, { notify: true });

      const viaGet = await r.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(viaGet);
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const first = await next(r, 'MSG');
      await r.ack(q.rcvId, q.rcvAuth.privateKey, first.msgId);
      const second = await next(r, 'MSG');

      const sent = windows([body, textBody], 16);
      for (const sealed of [viaGet.sealed, first.sealed, second.sealed])
        assert.equal(sharedWindow(sealed, sent, 16), -1, 'MSG ciphertext contains the sent body');
      // The relay really delivered these bodies (the check above is not vacuous).
      assert.equal(first.sealed.length, body.length + 9 + 16);
      assert.equal(second.sealed.length, textBody.length + 9 + 16);

      const frames = [...rFrames, ...sFrames];
      assert.ok(rFrames.some((f) => f.dir === 'in') && sFrames.some((f) => f.dir === 'out'));
      for (const f of frames) assert.equal(sharedWindow(f.data, sent, 16), -1, `a ${f.dir} frame contains the body`);

      // Sent and received traffic share no ciphertext (handshake frames, the first each way, are plain padding).
      const afterHello = (fs: Frame[], dir: Frame['dir']) => fs.filter((f) => f.dir === dir).slice(1).map((f) => f.data);
      const senderOut = windows(afterHello(sFrames, 'out'), 16);
      for (const f of afterHello(rFrames, 'in')) assert.equal(sharedWindow(f, senderOut, 16), -1, 'sent and received frames share bytes');
    }));
});

describe('fixed-size frames', () => {
  test('every frame in both directions, handshake included, is exactly RELAY_BLOCK_SIZE bytes', () =>
    withRelay({ limits: { maxPending: 4 } }, async (relay, open) => {
      const perConnection: Frame[][] = [[], [], [], []];
      const [a, b, n1, n2] = [
        await open(perConnection[0]),
        await open(perConnection[1]),
        await open(perConnection[2]),
        await open(perConnection[3]),
      ];
      const service = key();

      await a.ping();
      const q = await newQueue(a, true);
      const plain = await newQueue(a);
      const ntf = ntfOf(q);
      const snd = key();
      await a.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
      for (const size of [0, 1, 100, 1000, 5000, relay.server.limits.maxMessageBytes])
        await b.send(q.sndId, crypto.randomBytes(size), { sndAuthKey: snd.privateKey, notify: size === 100 });
      await n1.subscribeService(service);
      await n1.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      const msg = await a.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(msg);
      await a.ack(q.rcvId, q.rcvAuth.privateKey, msg.msgId);
      await a.subscribe(q.rcvId, q.rcvAuth.privateKey);
      for (let i = 0; i < 5; i++) await a.ack(q.rcvId, q.rcvAuth.privateKey, (await next(a, 'MSG')).msgId);
      await b.send(q.sndId, bytes('notify'), { sndAuthKey: snd.privateKey, notify: true });
      await next(n1, 'NMSG');
      assert.equal(await n2.subscribeService(service), 1);
      await next(n1, 'ENDS');
      await b.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await next(a, 'END');
      await a.enableNotifications(plain.rcvId, plain.rcvAuth.privateKey, key().publicKey, key().publicKey);
      await a.disableNotifications(q.rcvId, q.rcvAuth.privateKey);
      await next(n2, 'DELD');
      // Errors of several kinds.
      await Promise.allSettled([
        b.send(randomId(), bytes('x')),
        a.get(q.rcvId, q.rcvAuth.privateKey),
        a.command(EMPTY, { type: 'PING' }, key().privateKey),
        a.conn.request(EMPTY, Uint8Array.of(4, 0x4e, 0x4f, 0x50, 0x45)),
        b.send(q.sndId, new Uint8Array(relay.server.limits.maxMessageBytes + 1), { sndAuthKey: snd.privateKey }),
      ]);
      // A batch spread over several blocks, then one block with BUSY answers (maxPending 4).
      await Promise.allSettled(Array.from({ length: 7 }, () => b.send(plain.sndId, crypto.randomBytes(5000))));
      const pings = await Promise.allSettled(Array.from({ length: 8 }, () => b.ping()));
      assert.ok(pings.some((r) => r.status === 'rejected' && r.reason instanceof RelayCommandError && r.reason.error === 'BUSY'));
      await a.suspend(q.rcvId, q.rcvAuth.privateKey);
      await a.deleteQueue(q.rcvId, q.rcvAuth.privateKey);
      await next(b, 'DELD');
      await Promise.all([a.ping(), b.ping(), n1.ping(), n2.ping()]);

      // The handshake frames are recorded too: each connection's first frame each way is a plain hello.
      for (const fs of perConnection) {
        const serverHello = fs.find((f) => f.dir === 'in');
        const clientHello = fs.find((f) => f.dir === 'out');
        assert.ok(serverHello && clientHello);
        const sh = decodeBlock(serverHello.data);
        assert.ok(sh.ok && decodeServerHello(sh.value[0]!).ok, 'first frame in is the server hello');
        const ch = decodeBlock(clientHello.data);
        assert.ok(ch.ok && decodeClientHello(ch.value[0]!).ok, 'first frame out is the client hello');
      }
      const frames = perConnection.flat();
      const out = frames.filter((f) => f.dir === 'out');
      const inn = frames.filter((f) => f.dir === 'in');
      assert.ok(out.length >= 40 && inn.length >= 40, `${out.length} out, ${inn.length} in`);
      for (const f of frames) assert.equal(f.data.length, RELAY_BLOCK_SIZE, `a ${f.dir} frame of ${f.data.length} bytes`);
    }));
});

/** Every recipient command, with fresh keys. */
const recipientProbes = (): RelayCommand[] => [
  { type: 'SUB' },
  { type: 'GET' },
  { type: 'ACK', msgId: crypto.randomBytes(12) },
  { type: 'KEY', sndAuthKey: key().publicKey },
  { type: 'NKEY', ntfAuthKey: key().publicKey, rcvNtfDhKey: key().publicKey },
  { type: 'NDEL' },
  { type: 'OFF' },
  { type: 'DEL' },
];

/** A secured queue with a notifier, its sender's key, and a key that is no one's. */
async function securedQueue(c: TestClient) {
  const q = await newQueue(c, true);
  const snd = key();
  await c.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
  return { c, q, ntf: ntfOf(q), snd, wrong: key().privateKey };
}

describe('no existence oracle', () => {
  test('an unknown ID and a wrong key answer alike: AUTH', () =>
    withRelay({}, async (_relay, open) => {
      const { c, q, ntf, snd, wrong } = await securedQueue(await open());
      const recipientCommands = recipientProbes();
      for (const cmd of recipientCommands) {
        assert.equal(await errorOf(c.command(randomId(), cmd, q.rcvAuth.privateKey)), 'AUTH', `${cmd.type}, unknown ID`);
        assert.equal(await errorOf(c.command(q.rcvId, cmd, wrong)), 'AUTH', `${cmd.type}, wrong key`);
      }
      assert.equal(await errorOf(c.send(randomId(), bytes('x'), { sndAuthKey: snd.privateKey })), 'AUTH');
      assert.equal(await errorOf(c.send(q.sndId, bytes('x'), { sndAuthKey: wrong })), 'AUTH');
      assert.equal(await errorOf(c.send(randomId(), bytes('x'))), 'AUTH');
      assert.equal(await errorOf(c.send(q.sndId, bytes('x'))), 'AUTH');
      assert.equal(await errorOf(c.subscribeNotifier(randomId(), ntf.auth.privateKey)), 'AUTH');
      assert.equal(await errorOf(c.subscribeNotifier(ntf.notifierId, wrong)), 'AUTH');
      // The wrong-key attempts changed nothing: the queue is intact and still secured.
      await c.send(q.sndId, bytes('still here'), { sndAuthKey: snd.privateKey });
      assert.ok(await c.get(q.rcvId, q.rcvAuth.privateKey));
    }));

  test('an unknown ID and a wrong key take alike long (median of 200 each)', () =>
    withRelay({}, async (_relay, open) => {
      const { c, q, ntf, wrong } = await securedQueue(await open());
      const unknown = randomId();
      // Each pair differs only in what the relay knows: the same auth key signs both attempts.
      const cases: Array<[string, () => Promise<unknown>, () => Promise<unknown>]> = [
        ['recipient GET', () => c.get(unknown, wrong), () => c.get(q.rcvId, wrong)],
        ['SEND on a secured queue', () => c.send(unknown, bytes('x'), { sndAuthKey: wrong }), () => c.send(q.sndId, bytes('x'), { sndAuthKey: wrong })],
        ['NSUB', () => c.subscribeNotifier(unknown, wrong), () => c.subscribeNotifier(ntf.notifierId, wrong)],
      ];
      for (const [what, unknownAttempt, wrongAttempt] of cases) {
        for (let i = 0; i < 20; i++) {
          await timeAuth(unknownAttempt);
          await timeAuth(wrongAttempt);
        }
        const u: number[] = [];
        const w: number[] = [];
        for (let i = 0; i < 200; i++) {
          // Interleaved, alternating which goes first, so drift and load hit both alike.
          if (i % 2) {
            u.push(await timeAuth(unknownAttempt));
            w.push(await timeAuth(wrongAttempt));
          } else {
            w.push(await timeAuth(wrongAttempt));
            u.push(await timeAuth(unknownAttempt));
          }
        }
        const ratio = median(u) / median(w);
        assert.ok(ratio > 0.5 && ratio < 2.0, `${what}: unknown ${median(u).toFixed(3)} ms vs wrong key ${median(w).toFixed(3)} ms`);
      }
    }));
});

describe('constant-time AUTH', () => {
  // Each probe runs on a fresh session, with no warm-up: the work the relay does
  // (X25519, HMAC and HKDF calls) must not depend on whether an ID exists, neither
  // on the first probe of a session nor on later ones.
  test('unknown IDs cost what existing ones with a wrong key cost, on fresh and on warm sessions', async () => {
    const counting = countingCrypto(nodeCrypto);
    await withRelay({ crypto: counting }, async (_relay, open) => {
      const c = await open();
      const q = await newQueue(c, true);
      const unsecured = await newQueue(c);
      await c.secure(q.rcvId, q.rcvAuth.privateKey, key().publicKey);
      const wrong = key().privateKey;
      const cmd = (command: RelayCommand) => (t: TestClient, id: Uint8Array) => t.command(id, command, wrong);
      const probes: Array<[string, (t: TestClient, id: Uint8Array) => Promise<unknown>, Uint8Array]> = [
        ...recipientProbes().map((command): [string, (t: TestClient, id: Uint8Array) => Promise<unknown>, Uint8Array] => [command.type, cmd(command), q.rcvId]),
        ['SEND, secured queue', (t, id) => t.send(id, bytes('x'), { sndAuthKey: wrong }), q.sndId],
        ['SEND with auth, unsecured queue', (t, id) => t.send(id, bytes('x'), { sndAuthKey: wrong }), unsecured.sndId],
        ['NSUB', (t, id) => t.subscribeNotifier(id, wrong), ntfOf(q).notifierId],
      ];
      /** What a fresh session costs the relay: its handshake and one AUTH-failing probe per ID. */
      const cost = async (probe: (t: TestClient, id: Uint8Array) => Promise<unknown>, ids: Uint8Array[]) => {
        const before = { ...counting.counts };
        const t = await open();
        for (const id of ids) assert.equal(await errorOf(probe(t, id)), 'AUTH');
        t.close();
        return counting.since(before);
      };
      for (const [what, probe, real] of probes) {
        const a = randomId();
        const unknown = await cost(probe, [a, randomId()]);
        assert.ok(unknown.x25519 >= 3 && unknown.hmac >= 2, `${what}: the probes did the work (${JSON.stringify(unknown)})`);
        assert.deepEqual(await cost(probe, [a, real]), unknown, `${what}: [unknown, existing] vs [unknown, unknown]`);
        assert.deepEqual(await cost(probe, [real, a]), unknown, `${what}: [existing, unknown] vs [unknown, unknown]`);
        // A warm session: many unknown IDs, then the existing one among them, then the same ones again.
        const many = Array.from({ length: 6 }, randomId);
        const warm = await cost(probe, [...many, randomId(), ...many]);
        assert.deepEqual(await cost(probe, [...many, real, ...many]), warm, `${what}: on a warm session`);
      }
      // An ID probed as a recipient ID and then as a sender ID costs the same whether it is a queue's or not.
      const both = (t: TestClient, id: Uint8Array) => errorOf(t.get(id, wrong)).then(() => t.send(id, bytes('x'), { sndAuthKey: wrong }));
      assert.deepEqual(await cost(both, [q.rcvId]), await cost(both, [randomId()]), 'GET then SEND on one ID');
    });
  });

  test("the session that made a queue verifies its next recipient command without another X25519; another session pays one", async () => {
    const counting = countingCrypto(nodeCrypto);
    await withRelay({ crypto: counting }, async (_relay, open) => {
      const c = await open();
      const q = await newQueue(c);
      const before = { ...counting.counts };
      await c.secure(q.rcvId, q.rcvAuth.privateKey, key().publicKey);
      assert.equal(counting.since(before).x25519, 0, 'KEY on the NEW session');
      const other = await open();
      const before2 = { ...counting.counts };
      await other.get(q.rcvId, q.rcvAuth.privateKey); // an empty queue: OK
      assert.equal(counting.since(before2).x25519, 2, 'a fresh session: its handshake and one key agreement');
    });
  });
});

describe('logs', () => {
  test('hold no queue IDs, keys, message IDs or bodies in any encoding', async () => {
    const { log, text } = capturedLog();
    let now = 1_700_000_000_000;
    const identity = nodeCrypto.ed25519KeyPair();
    const secrets: Array<[string, Uint8Array]> = [['identity private key', identity.privateKey]];
    const relay = await startRelay({
      log,
      identity,
      now: () => now,
      limits: { maxConnections: 4, messageTtlMs: 1000, pendingNotificationTtlMs: 1000 },
    });
    const clients: TestClient[] = [];
    const open = async () => {
      const c = await connect(relay.address);
      clients.push(c);
      secrets.push(['session ID', c.conn.sessionId]);
      return c;
    };
    try {
      const r = await open();
      const s = await open();
      const n = await open();
      const n2 = await open();
      await assert.rejects(connect(relay.address)); // logs connection_refused

      const service = key();
      const snd = key();
      secrets.push(['service key', service.publicKey], ['service private key', service.privateKey]);
      secrets.push(['service ID', crypto.sha256(service.publicKey)]);
      secrets.push(['sender key', snd.publicKey], ['sender private key', snd.privateKey]);
      const queues = [await newQueue(r, true), await newQueue(r, true), await newQueue(r)];
      for (const [i, q] of queues.entries()) {
        secrets.push([`rcvId ${i}`, q.rcvId], [`sndId ${i}`, q.sndId]);
        secrets.push([`rcvAuth ${i}`, q.rcvAuth.publicKey], [`rcvAuth private ${i}`, q.rcvAuth.privateKey]);
        secrets.push([`rcvDh ${i}`, q.rcvDh.publicKey], [`rcvDh private ${i}`, q.rcvDh.privateKey]);
        secrets.push([`rcvDhSecret ${i}`, q.rcvDhSecret]);
        if (q.ntf) {
          secrets.push([`notifierId ${i}`, q.ntf.notifierId], [`ntf auth ${i}`, q.ntf.auth.publicKey]);
          secrets.push([`ntf auth private ${i}`, q.ntf.auth.privateKey], [`ntf dh ${i}`, q.ntf.dh.publicKey]);
          secrets.push([`ntf dh private ${i}`, q.ntf.dh.privateKey], [`rcvNtfDhSecret ${i}`, q.ntf.rcvNtfDhSecret]);
        }
      }
      const [q0, q1, q2] = queues as [Queue, Queue, Queue];
      const body = crypto.randomBytes(64);
      secrets.push(['body', body]);

      await r.secure(q0.rcvId, q0.rcvAuth.privateKey, snd.publicKey);
      await n.subscribeService(service);
      await n.subscribeNotifier(ntfOf(q0).notifierId, ntfOf(q0).auth.privateKey);
      await s.send(q0.sndId, body, { sndAuthKey: snd.privateKey, notify: true });
      await next(n, 'NMSG');
      await r.subscribe(q0.rcvId, q0.rcvAuth.privateKey);
      const msg = await next(r, 'MSG');
      secrets.push(['msgId', msg.msgId]);
      await r.ack(q0.rcvId, q0.rcvAuth.privateKey, msg.msgId);
      await s.send(q1.sndId, body, { notify: true }); // NMSG kept for q1
      await n2.subscribeService(service); // ENDS to n
      const nid = await r.enableNotifications(q2.rcvId, q2.rcvAuth.privateKey, key().publicKey, key().publicKey);
      secrets.push(['new notifierId', nid.notifierId], ['srvNtfDhKey', nid.srvNtfDhKey]);
      await r.disableNotifications(q2.rcvId, q2.rcvAuth.privateKey);
      // Errors.
      await Promise.allSettled([
        s.send(q0.sndId, body),
        s.send(randomId(), body),
        r.get(randomId(), q0.rcvAuth.privateKey),
        r.get(q0.rcvId, q0.rcvAuth.privateKey),
        n.subscribeNotifier(ntfOf(q1).notifierId, key().privateKey),
        r.command(EMPTY, { type: 'PING' }, key().privateKey),
        r.conn.request(q1.rcvId, Uint8Array.of(4, 0x4e, 0x4f, 0x50, 0x45), q1.rcvAuth.privateKey),
      ]);
      r.conn.sendRaw(Uint8Array.of(5, 1, 2, 3, 4, 5, 0, 0, 4, 0x50, 0x49, 0x4e, 0x47));
      await next(r, 'ERR');
      // Expiry of messages and of a kept notification (logs 'expired').
      await s.send(q2.sndId, body);
      now += 5000;
      relay.server.expire();
      await r.suspend(q1.rcvId, q1.rcvAuth.privateKey);
      await r.deleteQueue(q1.rcvId, q1.rcvAuth.privateKey);
      await Promise.all(clients.map((c) => c.ping()));
    } finally {
      for (const c of clients) c.close();
      await relay.stop();
    }
    log.flush();
    const logText = text();

    // The log is really wired: these events are there.
    for (const event of ['relay_started', 'connection_refused', 'expired'])
      assert.ok(logText.includes(`"event":"${event}"`), `log has ${event}`);

    assert.ok(secrets.length > 40);
    for (const [what, b] of secrets) {
      assert.ok(b.length >= 12, `${what} is long enough to search for`);
      const head = b.subarray(0, 12);
      const forms = [
        Buffer.from(head).toString('base64url'),
        Buffer.from(head).toString('base64'),
        Buffer.from(head.subarray(0, 8)).toString('hex'),
        Buffer.from(head.subarray(0, 8)).toString('hex').toUpperCase(),
        Array.from(head.subarray(0, 8)).join(','),
        latin1(head.subarray(0, 8)),
        JSON.stringify(latin1(head.subarray(0, 8))).slice(1, -1),
      ];
      for (const form of forms) assert.ok(!logText.includes(form), `log holds ${what} (as ${JSON.stringify(form)})`);
    }
  });
});
