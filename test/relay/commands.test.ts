// Every relay command over a real in-process relay on loopback: the happy path
// and each error the relay can answer.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionError } from '../../src/core/client.ts';
import { Encoder, equalBytes } from '../../src/core/encoding.ts';
import type { KeyPair } from '../../src/core/crypto/suite.ts';
import { openMessage, openMeta, RelayCommandError, type RelayEvent } from '../../src/relay/client.ts';
import {
  decodeResponse,
  DELIVERY_WINDOW,
  ID_LENGTH,
  KEY,
  type RelayCommand,
  type RelayError,
  type RelayResponse,
} from '../../src/relay/protocol.ts';
import type { RelayLimits } from '../../src/relay/server.ts';
import { bytes, connect, crypto, eventLog, newQueue, startRelay, text, untilEvent, type Queue, type TestClient, type TestRelay } from '../helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

const EMPTY = new Uint8Array(0);

interface Ctx {
  relay: TestRelay;
  /** A new connected client, closed when the test ends. */
  open(): Promise<TestClient>;
  /** Resolves once the relay holds `n` connections, re-checked as each one closes. */
  connections(n: number): Promise<void>;
}

/** Runs `fn` against a fresh relay; closes every client and stops the relay afterwards. */
async function withRelay(
  opts: { limits?: Partial<RelayLimits>; now?: () => number },
  fn: (ctx: Ctx) => Promise<void>,
): Promise<void> {
  const { log, events } = eventLog();
  const relay = await startRelay({ ...opts, log });
  const clients: TestClient[] = [];
  try {
    await fn({
      relay,
      connections: (n) => untilEvent(events, 'connection_closed', () => relay.server.connections === n),
      open: async () => {
        const c = await connect(relay.address);
        clients.push(c);
        return c;
      },
    });
  } finally {
    for (const c of clients) c.close();
    await relay.stop();
  }
}

/** Asserts that `p` rejects with a relay ERR carrying `error`. */
const rejectsWith = (p: Promise<unknown>, error: RelayError) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RelayCommandError, `expected RelayCommandError ${error}, got ${String(e)}`);
    assert.equal(e.error, error);
    return true;
  });

/** Sends raw command bytes and decodes the response. */
async function raw(c: TestClient, entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array): Promise<RelayResponse> {
  const r = decodeResponse(await c.conn.request(entityId, command, authKey));
  assert.ok(r.ok, 'response decodes');
  return r.value;
}

async function rawError(c: TestClient, entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array) {
  const r = await raw(c, entityId, command, authKey);
  assert.equal(r.type, 'ERR', `expected ERR, got ${r.type}`);
  return r.type === 'ERR' ? r.error : undefined;
}

async function next<T extends RelayEvent['type']>(c: TestClient, type: T): Promise<Extract<RelayEvent, { type: T }>> {
  const e = await c.nextEvent(type);
  assert.equal(e.type, type);
  return e as Extract<RelayEvent, { type: T }>;
}

/** Waits until every event sent to `c` so far has arrived (a PING's PONG comes after them). */
const settle = (c: TestClient) => c.ping();

const ofType = (c: TestClient, type: RelayEvent['type']) => c.events.filter((e) => e.type === type);

const key = (): KeyPair => crypto.x25519KeyPair();
const randomId = () => crypto.randomBytes(ID_LENGTH);

/** A sender/recipient client, and a queue whose NMSGs go to connection `a` through its service. */
async function serviceQueue(connectClient: () => Promise<TestClient>) {
  const r = await connectClient();
  const service = key();
  const q = await newQueue(r, true);
  const a = await connectClient();
  await a.subscribeService(service);
  await a.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
  return { r, service, q, a };
}

function ntfOf(q: Queue) {
  assert.ok(q.ntf, 'queue has notifier credentials');
  return q.ntf;
}

function open(q: Queue, msg: { msgId: Uint8Array; sealed: Uint8Array }) {
  const m = openMessage(crypto, q.rcvDhSecret, msg);
  assert.ok(m, 'MSG opens with the queue secret');
  return m;
}

describe('NEW', () => {
  test('creates a queue without notifier credentials', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      assert.equal(q.rcvId.length, ID_LENGTH);
      assert.equal(q.sndId.length, ID_LENGTH);
      assert.ok(!equalBytes(q.rcvId, q.sndId));
      assert.equal(q.ntf, undefined);
      // The queue works end to end and the MSG opens with X25519(rcvDh, srvDhKey).
      await c.send(q.sndId, bytes('hello'));
      const m = await c.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
      assert.equal(text(open(q, m).body), 'hello');
    }));

  test('creates a queue with notifier credentials in the same call', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const n = await connectClient();
      const q = await newQueue(c, true);
      const ntf = ntfOf(q);
      assert.equal(ntf.notifierId.length, ID_LENGTH);
      assert.ok(!equalBytes(ntf.notifierId, q.rcvId) && !equalBytes(ntf.notifierId, q.sndId));
      await n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await c.send(q.sndId, bytes('hi'), { notify: true });
      const nmsg = await next(n, 'NMSG');
      assert.ok(equalBytes(nmsg.entityId, ntf.notifierId));
      assert.ok(openMeta(crypto, ntf.rcvNtfDhSecret, nmsg), 'meta opens with the notifier DH secret');
    }));

  test('HAS_ENTITY, NO_AUTH, AUTH with a wrong key, KEY for a DH key of small order', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const rcvAuth = key();
      const cmd = (over: Partial<Extract<RelayCommand, { type: 'NEW' }>> = {}): RelayCommand => ({
        type: 'NEW',
        rcvAuthKey: rcvAuth.publicKey,
        rcvDhKey: key().publicKey,
        ...over,
      });
      await rejectsWith(c.command(randomId(), cmd(), rcvAuth.privateKey), 'HAS_ENTITY');
      await rejectsWith(c.command(EMPTY, cmd()), 'NO_AUTH');
      await rejectsWith(c.command(EMPTY, cmd(), key().privateKey), 'AUTH');
      // A low-order (all-zero) DH key would give a secret its sender knows: refused.
      await rejectsWith(c.command(EMPTY, cmd({ rcvDhKey: new Uint8Array(KEY) }), rcvAuth.privateKey), 'KEY');
      await rejectsWith(
        c.command(EMPTY, cmd({ ntf: { ntfAuthKey: key().publicKey, rcvNtfDhKey: new Uint8Array(KEY) } }), rcvAuth.privateKey),
        'KEY',
      );
      // The same command, correctly authorized, succeeds.
      const r = await c.command(EMPTY, cmd(), rcvAuth.privateKey);
      assert.equal(r.type, 'IDS');
    }));
});

describe('SUB', () => {
  test('OK, then the waiting message is delivered as MSG', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const s = await connectClient();
      const q = await newQueue(r);
      await s.send(q.sndId, bytes('first'));
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const msg = await next(r, 'MSG');
      assert.ok(equalBytes(msg.entityId, q.rcvId));
      assert.equal(text(open(q, msg).body), 'first');
      // A message sent while subscribed (after the ACK) is pushed too.
      await r.ack(q.rcvId, q.rcvAuth.privateKey, msg.msgId);
      await s.send(q.sndId, bytes('second'));
      assert.equal(text(open(q, await next(r, 'MSG')).body), 'second');
    }));

  test('a repeated SUB delivers the unacknowledged message again', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      await r.send(q.sndId, bytes('again'));
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const first = await next(r, 'MSG');
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const second = await next(r, 'MSG');
      assert.ok(equalBytes(first.msgId, second.msgId));
      assert.equal(text(open(q, second).body), 'again');
    }));

  test('SUB from a second connection sends END to the first, which gets nothing more', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r1 = await connectClient();
      const r2 = await connectClient();
      const q = await newQueue(r1);
      await r1.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await r2.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const end = await next(r1, 'END');
      assert.ok(equalBytes(end.entityId, q.rcvId));
      await r2.send(q.sndId, bytes('to r2'));
      assert.equal(text(open(q, await next(r2, 'MSG')).body), 'to r2');
      await settle(r1);
      assert.equal(ofType(r1, 'MSG').length, 0);
      // r1 is no longer subscribed, so GET is allowed there again.
      const m = await r1.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
    }));

  test('NO_ENTITY, NO_AUTH, AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await rejectsWith(c.command(EMPTY, { type: 'SUB' }, q.rcvAuth.privateKey), 'NO_ENTITY');
      await rejectsWith(c.command(q.rcvId, { type: 'SUB' }), 'NO_AUTH');
      await rejectsWith(c.subscribe(q.rcvId, key().privateKey), 'AUTH');
      await rejectsWith(c.subscribe(randomId(), q.rcvAuth.privateKey), 'AUTH');
      // The sender ID is not a recipient ID.
      await rejectsWith(c.subscribe(q.sndId, q.rcvAuth.privateKey), 'AUTH');
    }));
});

describe('GET', () => {
  test('OK when empty, MSG when a message waits (the same one until ACK)', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      assert.equal(await c.get(q.rcvId, q.rcvAuth.privateKey), undefined);
      await c.send(q.sndId, bytes('one'), { notify: true });
      await c.send(q.sndId, bytes('two'));
      const a = await c.get(q.rcvId, q.rcvAuth.privateKey);
      const b = await c.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(a && b);
      assert.ok(equalBytes(a.msgId, b.msgId));
      const m = open(q, a);
      assert.equal(text(m.body), 'one');
      assert.equal(m.notify, true);
      assert.ok(Math.abs(m.ts - Date.now()) < 60_000, 'timestamp is the relay clock');
      await c.ack(q.rcvId, q.rcvAuth.privateKey, a.msgId);
      const d = await c.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(d);
      assert.equal(open(q, d).notify, false);
      assert.equal(text(open(q, d).body), 'two');
      await c.ack(q.rcvId, q.rcvAuth.privateKey, d.msgId);
      assert.equal(await c.get(q.rcvId, q.rcvAuth.privateKey), undefined);
    }));

  test('PROHIBITED when subscribed on the same connection; allowed on another', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const other = await connectClient();
      const q = await newQueue(r);
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await rejectsWith(r.get(q.rcvId, q.rcvAuth.privateKey), 'PROHIBITED');
      assert.equal(await other.get(q.rcvId, q.rcvAuth.privateKey), undefined);
    }));

  test('AUTH for a wrong key or unknown ID', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await rejectsWith(c.get(q.rcvId, key().privateKey), 'AUTH');
      await rejectsWith(c.get(randomId(), q.rcvAuth.privateKey), 'AUTH');
    }));
});

describe('ACK', () => {
  test('a subscriber gets DELIVERY_WINDOW messages ahead of its ACKs; each ACK lets one more through', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      const total = DELIVERY_WINDOW + 3;
      for (let i = 0; i < total; i++) await r.send(q.sndId, bytes(`m${i}`));
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      const got: string[] = [];
      const firstWindow: Array<Extract<RelayEvent, { type: 'MSG' }>> = [];
      for (let i = 0; i < DELIVERY_WINDOW; i++) firstWindow.push(await next(r, 'MSG'));
      await settle(r);
      assert.equal(ofType(r, 'MSG').length, 0, 'no more than the window before an ACK');
      for (const msg of firstWindow) got.push(text(open(q, msg).body));
      // An ACK of a message that is not the oldest deletes nothing and frees nothing.
      await rejectsWith(r.ack(q.rcvId, q.rcvAuth.privateKey, firstWindow[1]!.msgId), 'NO_MSG');
      await settle(r);
      assert.equal(ofType(r, 'MSG').length, 0);
      for (let i = 0; i < 3; i++) {
        await r.ack(q.rcvId, q.rcvAuth.privateKey, firstWindow[i]!.msgId);
        const msg = await next(r, 'MSG');
        await settle(r);
        assert.equal(ofType(r, 'MSG').length, 0, 'one more per ACK');
        got.push(text(open(q, msg).body));
      }
      assert.deepEqual(got, Array.from({ length: total }, (_, i) => `m${i}`));
    }));

  test('an ACK from another connection (after GET there) releases the subscriber: the next MSG follows', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const sub = await connectClient();
      const other = await connectClient();
      const q = await newQueue(sub);
      const k = q.rcvAuth.privateKey;
      for (const b of ['m1', 'm2']) await other.send(q.sndId, bytes(b));
      await sub.subscribe(q.rcvId, k);
      const first = await next(sub, 'MSG');
      const viaGet = await other.get(q.rcvId, k);
      assert.ok(viaGet && equalBytes(viaGet.msgId, first.msgId));
      await other.ack(q.rcvId, k, viaGet.msgId);
      const second = await next(sub, 'MSG');
      assert.equal(text(open(q, second).body), 'm2');
    }));

  test('NO_MSG for a wrong msgId, on an empty queue, and for a second ACK', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      const k = q.rcvAuth.privateKey;
      await rejectsWith(c.ack(q.rcvId, k, crypto.randomBytes(12)), 'NO_MSG');
      await c.send(q.sndId, bytes('a'));
      await c.send(q.sndId, bytes('b'));
      const a = await c.get(q.rcvId, k);
      assert.ok(a);
      await rejectsWith(c.ack(q.rcvId, k, crypto.randomBytes(12)), 'NO_MSG');
      // The wrong ACK deleted nothing.
      const again = await c.get(q.rcvId, k);
      assert.ok(again && equalBytes(again.msgId, a.msgId));
      await c.ack(q.rcvId, k, a.msgId);
      await rejectsWith(c.ack(q.rcvId, k, a.msgId), 'NO_MSG');
      const b = await c.get(q.rcvId, k);
      assert.ok(b);
      assert.equal(text(open(q, b).body), 'b');
      // ACK needs the recipient key.
      await rejectsWith(c.ack(q.rcvId, key().privateKey, b.msgId), 'AUTH');
    }));
});

describe('KEY', () => {
  test('secures the queue: only SENDs with the sender key are accepted afterwards', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const s = await connectClient();
      const q = await newQueue(r);
      const snd = key();
      // Unsecured: unauthenticated SEND is OK, an authenticated one is not.
      await s.send(q.sndId, bytes('before'));
      await rejectsWith(s.send(q.sndId, bytes('x'), { sndAuthKey: snd.privateKey }), 'AUTH');
      await r.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
      await rejectsWith(s.send(q.sndId, bytes('unauthenticated')), 'AUTH');
      await rejectsWith(s.send(q.sndId, bytes('wrong key')), 'AUTH');
      await rejectsWith(s.send(q.sndId, bytes('wrong key'), { sndAuthKey: key().privateKey }), 'AUTH');
      await s.send(q.sndId, bytes('after'), { sndAuthKey: snd.privateKey });
      const bodies: string[] = [];
      for (;;) {
        const m = await r.get(q.rcvId, q.rcvAuth.privateKey);
        if (!m) break;
        bodies.push(text(open(q, m).body));
        await r.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      }
      assert.deepEqual(bodies, ['before', 'after']);
    }));

  test('KEY again: the same key OK, a different key AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      const snd = key();
      await r.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
      await r.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
      await rejectsWith(r.secure(q.rcvId, q.rcvAuth.privateKey, key().publicKey), 'AUTH');
      // The original sender key still works.
      await r.send(q.sndId, bytes('x'), { sndAuthKey: snd.privateKey });
      await rejectsWith(r.secure(q.rcvId, key().privateKey, snd.publicKey), 'AUTH');
    }));
});

describe('NKEY', () => {
  test('NID for a queue without a notifier; the new notifier works', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const n = await connectClient();
      const q = await newQueue(r);
      const auth = key();
      const dh = key();
      const nid = await r.enableNotifications(q.rcvId, q.rcvAuth.privateKey, auth.publicKey, dh.publicKey);
      assert.equal(nid.notifierId.length, ID_LENGTH);
      assert.ok(!equalBytes(nid.notifierId, q.rcvId) && !equalBytes(nid.notifierId, q.sndId));
      await n.subscribeNotifier(nid.notifierId, auth.privateKey);
      await r.send(q.sndId, bytes('x'), { notify: true });
      const nmsg = await next(n, 'NMSG');
      const secret = sharedKey(crypto, dh.privateKey, nid.srvNtfDhKey, 'relay notifier')!;
      assert.ok(openMeta(crypto, secret, nmsg));
    }));

  test('replacing the notifier: DELD to the previous subscriber, old ID gone, old pending NMSG dropped', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const n1 = await connectClient();
      const n2 = await connectClient();
      const q = await newQueue(r, true);
      const old = ntfOf(q);
      await n1.subscribeNotifier(old.notifierId, old.auth.privateKey);
      const auth = key();
      const nid = await r.enableNotifications(q.rcvId, q.rcvAuth.privateKey, auth.publicKey, key().publicKey);
      assert.ok(!equalBytes(nid.notifierId, old.notifierId));
      const deld = await next(n1, 'DELD');
      assert.ok(equalBytes(deld.entityId, old.notifierId));
      await rejectsWith(n2.subscribeNotifier(old.notifierId, old.auth.privateKey), 'AUTH');
      // n1 no longer receives NMSGs; with nobody subscribed to the new notifier, one is kept.
      await r.send(q.sndId, bytes('x'), { notify: true });
      await settle(n1);
      assert.equal(ofType(n1, 'NMSG').length, 0);
      // The kept NMSG was sealed for the replaced notifier's DH key: replacing again drops it.
      const nid2 = await r.enableNotifications(q.rcvId, q.rcvAuth.privateKey, auth.publicKey, key().publicKey);
      await rejectsWith(n2.subscribeNotifier(nid.notifierId, auth.privateKey), 'AUTH');
      await n2.subscribeNotifier(nid2.notifierId, auth.privateKey);
      await settle(n2);
      assert.equal(ofType(n2, 'NMSG').length, 0);
    }));

  test('KEY for a DH key of small order, AUTH for a wrong key', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      await rejectsWith(r.enableNotifications(q.rcvId, q.rcvAuth.privateKey, key().publicKey, new Uint8Array(KEY)), 'KEY');
      await rejectsWith(r.enableNotifications(q.rcvId, key().privateKey, key().publicKey, key().publicKey), 'AUTH');
    }));
});

describe('NDEL', () => {
  test('OK; DELD to the notifier subscriber; NSUB afterwards AUTH; no more NMSG', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const n = await connectClient();
      const q = await newQueue(r, true);
      const ntf = ntfOf(q);
      await n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await r.disableNotifications(q.rcvId, q.rcvAuth.privateKey);
      const deld = await next(n, 'DELD');
      assert.ok(equalBytes(deld.entityId, ntf.notifierId));
      await rejectsWith(n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey), 'AUTH');
      await r.send(q.sndId, bytes('x'), { notify: true });
      await settle(n);
      assert.equal(ofType(n, 'NMSG').length, 0);
      // Idempotent: NDEL without a notifier is OK. The queue itself still works.
      await r.disableNotifications(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(await r.get(q.rcvId, q.rcvAuth.privateKey));
      await rejectsWith(r.disableNotifications(q.rcvId, key().privateKey), 'AUTH');
    }));
});

describe('OFF', () => {
  test('SEND gets AUTH afterwards; the recipient can still GET and ACK', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const s = await connectClient();
      const q = await newQueue(r);
      const snd = key();
      await r.secure(q.rcvId, q.rcvAuth.privateKey, snd.publicKey);
      await s.send(q.sndId, bytes('kept'), { sndAuthKey: snd.privateKey });
      await r.suspend(q.rcvId, q.rcvAuth.privateKey);
      await rejectsWith(s.send(q.sndId, bytes('late'), { sndAuthKey: snd.privateKey }), 'AUTH');
      await rejectsWith(s.send(q.sndId, bytes('late')), 'AUTH');
      const m = await r.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
      assert.equal(text(open(q, m).body), 'kept');
      await r.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      assert.equal(await r.get(q.rcvId, q.rcvAuth.privateKey), undefined);
      await rejectsWith(r.suspend(q.rcvId, key().privateKey), 'AUTH');
    }));

  test('an unsecured suspended queue refuses SEND too', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      await r.suspend(q.rcvId, q.rcvAuth.privateKey);
      await rejectsWith(r.send(q.sndId, bytes('x')), 'AUTH');
      assert.equal(await r.get(q.rcvId, q.rcvAuth.privateKey), undefined);
    }));
});

describe('DEL', () => {
  test('OK; then SUB AUTH, subscribers DELD, sender AUTH, notifier AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const owner = await connectClient();
      const sub = await connectClient();
      const n = await connectClient();
      const s = await connectClient();
      const q = await newQueue(owner, true);
      const ntf = ntfOf(q);
      await s.send(q.sndId, bytes('never read'));
      await sub.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await next(sub, 'MSG');
      await n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await owner.deleteQueue(q.rcvId, q.rcvAuth.privateKey);
      const ndeld = await next(n, 'DELD');
      assert.ok(equalBytes(ndeld.entityId, ntf.notifierId));
      const rdeld = await next(sub, 'DELD');
      assert.ok(equalBytes(rdeld.entityId, q.rcvId));
      await rejectsWith(owner.subscribe(q.rcvId, q.rcvAuth.privateKey), 'AUTH');
      await rejectsWith(owner.get(q.rcvId, q.rcvAuth.privateKey), 'AUTH');
      await rejectsWith(owner.deleteQueue(q.rcvId, q.rcvAuth.privateKey), 'AUTH');
      await rejectsWith(s.send(q.sndId, bytes('x')), 'AUTH');
      await rejectsWith(n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey), 'AUTH');
    }));

  test('DEL by the subscribed connection itself; AUTH with a wrong key', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await rejectsWith(r.deleteQueue(q.rcvId, key().privateKey), 'AUTH');
      await r.deleteQueue(q.rcvId, q.rcvAuth.privateKey);
      await settle(r);
      assert.equal(ofType(r, 'DELD').length, 0, 'no DELD to the connection that deleted');
      await rejectsWith(r.send(q.sndId, bytes('x')), 'AUTH');
    }));
});

describe('SEND', () => {
  test('notify: NMSG to the subscribed notifier, meta opens to the MSG msgId and ts', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const n = await connectClient();
      const s = await connectClient();
      const q = await newQueue(r, true);
      const ntf = ntfOf(q);
      await n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      await s.send(q.sndId, bytes('ping me'), { notify: true });
      const msg = await next(r, 'MSG');
      const nmsg = await next(n, 'NMSG');
      assert.ok(equalBytes(nmsg.entityId, ntf.notifierId));
      const m = open(q, msg);
      assert.equal(m.notify, true);
      const meta = openMeta(crypto, ntf.rcvNtfDhSecret, nmsg);
      assert.ok(meta, 'meta opens');
      assert.ok(equalBytes(meta.msgId, msg.msgId));
      assert.equal(meta.ts, m.ts);
      // The meta is not readable with the queue's message secret.
      assert.equal(openMeta(crypto, q.rcvDhSecret, nmsg), undefined);
      // Without the notify flag there is no NMSG.
      await r.ack(q.rcvId, q.rcvAuth.privateKey, msg.msgId);
      await s.send(q.sndId, bytes('quiet'));
      assert.equal(open(q, await next(r, 'MSG')).notify, false);
      await settle(n);
      assert.equal(ofType(n, 'NMSG').length, 0);
    }));

  test('LARGE_MSG over limits.maxMessageBytes', () =>
    withRelay({ limits: { maxMessageBytes: 100 } }, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await c.send(q.sndId, new Uint8Array(100).fill(7));
      await rejectsWith(c.send(q.sndId, new Uint8Array(101)), 'LARGE_MSG');
      const m = await c.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
      assert.equal(open(q, m).body.length, 100);
    }));

  test('default limit: the largest message fits a block both ways; one byte more is LARGE_MSG', () =>
    withRelay({}, async ({ relay, open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r);
      const max = relay.server.limits.maxMessageBytes;
      const body = crypto.randomBytes(max);
      await r.send(q.sndId, body);
      await rejectsWith(r.send(q.sndId, new Uint8Array(max + 1)), 'LARGE_MSG');
      const viaGet = await r.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(viaGet && equalBytes(open(q, viaGet).body, body));
      await r.subscribe(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(equalBytes(open(q, await next(r, 'MSG')).body, body));
    }));

  test('a body larger than a block is refused by the client, not a crash; the connection stays usable', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await assert.rejects(c.send(q.sndId, new Uint8Array(16_370)), RangeError);
      await c.send(q.sndId, bytes('small'));
      assert.ok(await c.get(q.rcvId, q.rcvAuth.privateKey));
    }));

  test('QUOTA at limits.queueQuota, until a message is acknowledged', () =>
    withRelay({ limits: { queueQuota: 3 } }, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      for (let i = 0; i < 3; i++) await c.send(q.sndId, bytes(`m${i}`));
      await rejectsWith(c.send(q.sndId, bytes('over')), 'QUOTA');
      const m = await c.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
      await c.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      await c.send(q.sndId, bytes('m3'));
      await rejectsWith(c.send(q.sndId, bytes('over')), 'QUOTA');
    }));

  test('NO_ENTITY without a sender ID; AUTH for an unknown one', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await rejectsWith(c.send(EMPTY, bytes('x')), 'NO_ENTITY');
      await rejectsWith(c.send(randomId(), bytes('x')), 'AUTH');
      // The recipient ID is not a sender ID.
      await rejectsWith(c.send(q.rcvId, bytes('x')), 'AUTH');
    }));
});

describe('NSUB', () => {
  test('OK; END to the previous notifier subscriber, NMSGs go to the new one', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const n1 = await connectClient();
      const n2 = await connectClient();
      const q = await newQueue(r, true);
      const ntf = ntfOf(q);
      await n1.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await n2.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      const end = await next(n1, 'END');
      assert.ok(equalBytes(end.entityId, ntf.notifierId));
      await r.send(q.sndId, bytes('x'), { notify: true });
      await next(n2, 'NMSG');
      await settle(n1);
      assert.equal(ofType(n1, 'NMSG').length, 0);
    }));

  test('while no notifier is subscribed, only the latest NMSG is kept and handed over on NSUB', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r, true);
      const ntf = ntfOf(q);
      for (const b of ['a', 'b', 'c']) await r.send(q.sndId, bytes(b), { notify: true });
      // The last message's ID.
      let last: Uint8Array | undefined;
      for (;;) {
        const m = await r.get(q.rcvId, q.rcvAuth.privateKey);
        if (!m) break;
        last = m.msgId;
        await r.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      }
      assert.ok(last);
      const n = await connectClient();
      await n.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      const nmsg = await next(n, 'NMSG');
      const meta = openMeta(crypto, ntf.rcvNtfDhSecret, nmsg);
      assert.ok(meta && equalBytes(meta.msgId, last), 'the kept NMSG is the latest');
      await settle(n);
      assert.equal(ofType(n, 'NMSG').length, 0, 'only one NMSG kept');
      // Kept until acknowledged: a later subscriber gets it again, and nothing after a NACK.
      const n2 = await connectClient();
      await n2.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      const again = await next(n2, 'NMSG');
      assert.ok(equalBytes(again.nonce, nmsg.nonce), 'the unacknowledged NMSG is sent again');
      await n2.acknowledgeNotification(ntf.notifierId, again.nonce);
      const n3 = await connectClient();
      await n3.subscribeNotifier(ntf.notifierId, ntf.auth.privateKey);
      await settle(n3);
      assert.equal(ofType(n3, 'NMSG').length, 0, 'an acknowledged NMSG is forgotten');
    }));

  test('a kept NMSG expires after pendingNotificationTtlMs', () => {
    let now = 1_700_000_000_000;
    return withRelay({ now: () => now, limits: { pendingNotificationTtlMs: 1000 } }, async ({ relay, open: connectClient }) => {
      const r = await connectClient();
      const q1 = await newQueue(r, true);
      const q2 = await newQueue(r, true);
      await r.send(q1.sndId, bytes('old'), { notify: true });
      now += 600;
      await r.send(q2.sndId, bytes('newer'), { notify: true });
      now += 401; // q1's NMSG is 1001 ms old, q2's 401 ms
      relay.server.expire();
      const n = await connectClient();
      await n.subscribeNotifier(ntfOf(q1).notifierId, ntfOf(q1).auth.privateKey);
      await n.subscribeNotifier(ntfOf(q2).notifierId, ntfOf(q2).auth.privateKey);
      await settle(n);
      const got = ofType(n, 'NMSG');
      assert.equal(got.length, 1, 'only the unexpired NMSG is delivered');
      assert.ok(equalBytes(got[0]!.entityId, ntfOf(q2).notifierId));
      // Messages themselves are untouched by notification expiry.
      assert.ok(await r.get(q1.rcvId, q1.rcvAuth.privateKey));
    });
  });

  test('NO_ENTITY, NO_AUTH, AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r, true);
      const ntf = ntfOf(q);
      await rejectsWith(r.command(EMPTY, { type: 'NSUB' }, ntf.auth.privateKey), 'NO_ENTITY');
      await rejectsWith(r.command(ntf.notifierId, { type: 'NSUB' }), 'NO_AUTH');
      await rejectsWith(r.subscribeNotifier(ntf.notifierId, key().privateKey), 'AUTH');
      await rejectsWith(r.subscribeNotifier(randomId(), ntf.auth.privateKey), 'AUTH');
      // Other IDs of the same queue are not notifier IDs; the recipient key is not the notifier key.
      await rejectsWith(r.subscribeNotifier(q.rcvId, ntf.auth.privateKey), 'AUTH');
      await rejectsWith(r.subscribeNotifier(ntf.notifierId, q.rcvAuth.privateKey), 'AUTH');
    }));
});

describe('NSUBS', () => {
  test('a service subscription moves to a new connection with SOKS, ENDS to the old one, NMSGs without NSUB', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const service = key();
      const qs = [await newQueue(r, true), await newQueue(r, true)];
      const loner = await newQueue(r, true); // subscribed individually elsewhere, not part of the service
      const a = await connectClient();
      assert.equal(await a.subscribeService(service), 0);
      for (const q of qs) await a.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      const other = await connectClient();
      await other.subscribeNotifier(ntfOf(loner).notifierId, ntfOf(loner).auth.privateKey);
      // While a holds the service, its queues notify a.
      await r.send(qs[0]!.sndId, bytes('x'), { notify: true });
      const x = await next(a, 'NMSG');
      assert.ok(equalBytes(x.entityId, ntfOf(qs[0]!).notifierId));
      await a.acknowledgeNotification(x.entityId, x.nonce);

      const b = await connectClient();
      assert.equal(await b.subscribeService(service), 2);
      const ends = await next(a, 'ENDS');
      assert.equal(ends.count, 2);
      assert.equal(ends.entityId.length, 0);

      for (const q of [...qs, loner]) await r.send(q.sndId, bytes('y'), { notify: true });
      const got = [await next(b, 'NMSG'), await next(b, 'NMSG')];
      for (const q of qs) {
        const e = got.find((g) => equalBytes(g.entityId, ntfOf(q).notifierId));
        assert.ok(e, 'NMSG for each service queue');
        assert.ok(openMeta(crypto, ntfOf(q).rcvNtfDhSecret, e));
      }
      assert.ok(equalBytes((await next(other, 'NMSG')).entityId, ntfOf(loner).notifierId));
      await settle(a);
      await settle(b);
      assert.equal(ofType(a, 'NMSG').length, 0, 'the old service connection gets nothing');
      assert.equal(ofType(b, 'NMSG').length, 0, 'the loner does not notify the service');
    }));

  test('NMSGs kept while the service is away are handed over on NSUBS', () =>
    withRelay({}, async ({ open: connectClient, connections }) => {
      const { r, service, q, a } = await serviceQueue(connectClient);
      a.close();
      await connections(1);
      await r.send(q.sndId, bytes('while away'), { notify: true });
      const b = await connectClient();
      assert.equal(await b.subscribeService(service), 1);
      const nmsg = await next(b, 'NMSG');
      assert.ok(equalBytes(nmsg.entityId, ntfOf(q).notifierId));
    }));

  test('NSUBS with another key on the same connection releases the first service: its NMSGs are kept', () =>
    withRelay({}, async ({ open: connectClient, connections }) => {
      const { r, service: x, q, a } = await serviceQueue(connectClient);
      assert.equal(await a.subscribeService(key()), 0);
      a.close();
      await connections(1);
      await r.send(q.sndId, bytes('while away'), { notify: true });
      const b = await connectClient();
      assert.equal(await b.subscribeService(x), 1);
      const nmsg = await next(b, 'NMSG');
      assert.ok(equalBytes(nmsg.entityId, ntfOf(q).notifierId));
    }));

  test('an individual NSUB elsewhere takes a queue out of the service', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const { service, q, a } = await serviceQueue(connectClient);
      const plain = await connectClient();
      await plain.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      assert.ok(equalBytes((await next(a, 'END')).entityId, ntfOf(q).notifierId));
      const b = await connectClient();
      assert.equal(await b.subscribeService(service), 0);
    }));

  test('HAS_ENTITY, NO_AUTH, AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const service = key();
      const cmd: RelayCommand = { type: 'NSUBS', serviceKey: service.publicKey };
      await rejectsWith(c.command(randomId(), cmd, service.privateKey), 'HAS_ENTITY');
      await rejectsWith(c.command(EMPTY, cmd), 'NO_AUTH');
      await rejectsWith(c.command(EMPTY, cmd, key().privateKey), 'AUTH');
    }));
});

describe('NACK', () => {
  test('an NMSG written into a connection that died is sent again to the next subscriber until acknowledged', () =>
    withRelay({}, async ({ relay, open: connectClient }) => {
      const { r, service, q, a } = await serviceQueue(connectClient);
      await r.send(q.sndId, bytes('m'), { notify: true });
      const first = await next(a, 'NMSG');
      a.close(); // never acknowledged
      const b = await connectClient();
      assert.equal(await b.subscribeService(service), 1);
      const again = await next(b, 'NMSG');
      assert.ok(equalBytes(again.nonce, first.nonce) && equalBytes(again.sealedMeta, first.sealedMeta));
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 1);
      await b.acknowledgeNotification(again.entityId, again.nonce);
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 0, 'NACK forgets it');
    }));

  test('a NACK of a superseded NMSG keeps the newer one', () =>
    withRelay({}, async ({ relay, open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r, true);
      const n = await connectClient();
      await n.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      await r.send(q.sndId, bytes('1'), { notify: true });
      await r.send(q.sndId, bytes('2'), { notify: true });
      const one = await next(n, 'NMSG');
      const two = await next(n, 'NMSG');
      await n.acknowledgeNotification(one.entityId, one.nonce);
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 1, 'the newer NMSG is still kept');
      await n.acknowledgeNotification(two.entityId, two.nonce);
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 0);
    }));

  test('only the connection holding the subscription may NACK; no auth, an entity', () =>
    withRelay({}, async ({ relay, open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r, true);
      const n = await connectClient();
      await n.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      await r.send(q.sndId, bytes('m'), { notify: true });
      const nmsg = await next(n, 'NMSG');
      const stranger = await connectClient();
      await rejectsWith(stranger.acknowledgeNotification(ntfOf(q).notifierId, nmsg.nonce), 'AUTH');
      await rejectsWith(stranger.acknowledgeNotification(randomId(), nmsg.nonce), 'AUTH');
      await rejectsWith(n.command(EMPTY, { type: 'NACK', nonce: nmsg.nonce }), 'NO_ENTITY');
      await rejectsWith(n.command(ntfOf(q).notifierId, { type: 'NACK', nonce: nmsg.nonce }, key().privateKey), 'HAS_AUTH');
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 1, 'nothing was acknowledged');
    }));
});

describe('NUNS', () => {
  test('a service connection stops getting one queue\'s NMSGs; they are kept for the next subscriber', () =>
    withRelay({}, async ({ relay, open: connectClient }) => {
      const r = await connectClient();
      const service = key();
      const [q1, q2] = [await newQueue(r, true), await newQueue(r, true)];
      const a = await connectClient();
      await a.subscribeService(service);
      for (const q of [q1, q2]) await a.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      await r.send(q1.sndId, bytes('before'), { notify: true });
      await next(a, 'NMSG');
      await a.unsubscribeNotifier(ntfOf(q1).notifierId);
      assert.equal(relay.server.opts.store.counts().pendingNotifications, 0, 'its kept NMSG is dropped');
      await r.send(q1.sndId, bytes('after'), { notify: true });
      await r.send(q2.sndId, bytes('other'), { notify: true });
      const got = await next(a, 'NMSG');
      assert.ok(equalBytes(got.entityId, ntfOf(q2).notifierId), 'the other queue still notifies');
      await settle(a);
      assert.equal(ofType(a, 'NMSG').length, 0);
      // The relay no longer counts the queue for the service.
      const b = await connectClient();
      assert.equal(await b.subscribeService(service), 1);
      await rejectsWith(b.unsubscribeNotifier(ntfOf(q1).notifierId), 'AUTH');
    }));

  test('an individual NSUB ends; a stranger cannot end it', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const r = await connectClient();
      const q = await newQueue(r, true);
      const n = await connectClient();
      await n.subscribeNotifier(ntfOf(q).notifierId, ntfOf(q).auth.privateKey);
      const stranger = await connectClient();
      await rejectsWith(stranger.unsubscribeNotifier(ntfOf(q).notifierId), 'AUTH');
      await n.unsubscribeNotifier(ntfOf(q).notifierId);
      await r.send(q.sndId, bytes('m'), { notify: true });
      await settle(n);
      assert.equal(ofType(n, 'NMSG').length, 0);
      await rejectsWith(n.unsubscribeNotifier(ntfOf(q).notifierId), 'AUTH');
    }));
});

describe('PING', () => {
  test('PONG; HAS_ENTITY; HAS_AUTH', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      await c.ping();
      await rejectsWith(c.command(randomId(), { type: 'PING' }), 'HAS_ENTITY');
      await rejectsWith(c.command(EMPTY, { type: 'PING' }, key().privateKey), 'HAS_AUTH');
    }));
});

describe('malformed input', () => {
  test('an unknown command tag is UNKNOWN', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      assert.equal(await rawError(c, EMPTY, new Encoder().tag('NOPE').done()), 'UNKNOWN');
      assert.equal(await rawError(c, q.rcvId, new Encoder().tag('FETCH').done(), q.rcvAuth.privateKey), 'UNKNOWN');
      // A response tag is not a command.
      assert.equal(await rawError(c, EMPTY, new Encoder().tag('PONG').done()), 'UNKNOWN');
    }));

  test('malformed fields are SYNTAX, and the connection stays usable', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      const k = q.rcvAuth.privateKey;
      const cases: Array<[string, Uint8Array, Uint8Array, Uint8Array | undefined]> = [
        ['KEY with a 31-byte key', q.rcvId, new Encoder().tag('KEY').short(new Uint8Array(31)).done(), k],
        ['ACK with an 11-byte msgId', q.rcvId, new Encoder().tag('ACK').short(new Uint8Array(11)).done(), k],
        ['NKEY missing its DH key', q.rcvId, new Encoder().tag('NKEY').short(new Uint8Array(KEY)).done(), k],
        ['SEND with unknown flags', q.sndId, new Encoder().tag('SEND').u8(2).long(bytes('x')).done(), undefined],
        ['SEND with a truncated body', q.sndId, new Encoder().tag('SEND').u8(0).u16(10).raw(bytes('abc')).done(), undefined],
        ['NEW with bool = 2', EMPTY, new Encoder().tag('NEW').short(new Uint8Array(KEY)).short(new Uint8Array(KEY)).u8(2).done(), k],
        ['PING with trailing bytes', EMPTY, new Encoder().tag('PING').u8(0).done(), undefined],
        ['GET with trailing bytes', q.rcvId, new Encoder().tag('GET').u8(1).done(), k],
        ['a non-printable tag', EMPTY, new Encoder().short(Uint8Array.of(0x50, 0x01)).done(), undefined],
      ];
      for (const [what, entity, cmd, auth] of cases) assert.equal(await rawError(c, entity, cmd, auth), 'SYNTAX', what);
      // Nothing above changed the queue.
      await c.send(q.sndId, bytes('still fine'));
      const m = await c.get(q.rcvId, k);
      assert.ok(m && text(open(q, m).body) === 'still fine');
    }));

  test('an undecodable transmission gets SYNTAX (as an event when its corrId cannot be read)', () =>
    withRelay({}, async ({ open: connectClient }) => {
      const c = await connectClient();
      // A 5-byte authenticator is invalid; empty corrId so the reply comes back as an event.
      const bad = new Encoder().short(new Uint8Array(5)).short(EMPTY).short(EMPTY).tag('PING').done();
      c.conn.sendRaw(bad);
      const e = await next(c, 'ERR');
      assert.equal(e.error, 'SYNTAX');
      await c.ping();
    }));
});

describe('message TTL', () => {
  test('messages older than messageTtlMs are deleted by expire()', () => {
    let now = 1_700_000_000_000;
    return withRelay({ now: () => now, limits: { messageTtlMs: 1000 } }, async ({ relay, open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      const k = q.rcvAuth.privateKey;
      await c.send(q.sndId, bytes('old'));
      now += 600;
      await c.send(q.sndId, bytes('young'));
      now += 400; // 'old' is exactly 1000 ms old: kept
      relay.server.expire();
      let m = await c.get(q.rcvId, k);
      assert.ok(m && text(open(q, m).body) === 'old');
      now += 1; // 1001 ms: expired
      relay.server.expire();
      m = await c.get(q.rcvId, k);
      assert.ok(m && text(open(q, m).body) === 'young');
      assert.equal(relay.store.counts().messages, 1);
      now += 600;
      relay.server.expire();
      assert.equal(await c.get(q.rcvId, k), undefined);
      assert.equal(relay.store.counts().messages, 0);
      // The expired message's ID cannot be acknowledged any more.
      await rejectsWith(c.ack(q.rcvId, k, m.msgId), 'NO_MSG');
    });
  });

  test('expired messages leave the window: the next ones are delivered without an ACK', () => {
    let now = 1_700_000_000_000;
    return withRelay({ now: () => now, limits: { messageTtlMs: 1000 } }, async ({ relay, open: connectClient }) => {
      const c = await connectClient();
      const q = await newQueue(c);
      await c.send(q.sndId, bytes('old'));
      now += 600;
      for (let i = 0; i < DELIVERY_WINDOW; i++) await c.send(q.sndId, bytes(`young${i}`));
      await c.subscribe(q.rcvId, q.rcvAuth.privateKey);
      assert.equal(text(open(q, await next(c, 'MSG')).body), 'old');
      for (let i = 0; i < DELIVERY_WINDOW - 1; i++) await next(c, 'MSG');
      await settle(c);
      assert.equal(ofType(c, 'MSG').length, 0, 'the window is full');
      now += 500; // 'old' expires, the young ones do not
      relay.server.expire();
      assert.equal(text(open(q, await next(c, 'MSG')).body), `young${DELIVERY_WINDOW - 1}`);
    });
  });
});

describe('limits', () => {
  test('a connection that sends nothing for idleTimeoutMs is closed (4007); one that PINGs when quiet stays', () =>
    withRelay({ limits: { idleTimeoutMs: 400 } }, async ({ relay }) => {
      let onClose!: (why: string) => void;
      const closed = new Promise<string>((r) => (onClose = r));
      const silent = await connect(relay.address, { keepalive: false, onClose });
      const pinging = await connect(relay.address, { keepalive: { intervalMs: 50, timeoutMs: 1000 } });
      try {
        assert.match(await closed, /4007/);
        assert.ok(pinging.connected, 'a client that probes its quiet link keeps it');
        await pinging.ping();
      } finally {
        silent.close();
        pinging.close();
      }
    }));

  test('BUSY beyond maxPending replies in one block; the connection then recovers', () =>
    withRelay({ limits: { maxPending: 4 } }, async ({ open: connectClient }) => {
      const c = await connectClient();
      // Eight PINGs in one tick go out in one block: four are answered, four get BUSY.
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => c.ping()));
      const busy = results.filter(
        (r) => r.status === 'rejected' && r.reason instanceof RelayCommandError && r.reason.error === 'BUSY',
      ).length;
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(ok, 4);
      assert.equal(busy, 4);
      await c.ping();
    }));

  test('a connection far over maxPending is closed', () =>
    withRelay({ limits: { maxPending: 4 } }, async ({ open: connectClient }) => {
      const c = await connectClient();
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => c.ping()));
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.status === 'rejected' && r.reason instanceof ConnectionError, String(r.status === 'rejected' && r.reason));
      }
      assert.equal(c.conn.connected, false);
    }));

  test('maxConnections: a connection over the limit is refused with ConnectionError', () =>
    withRelay({ limits: { maxConnections: 1 } }, async ({ open: connectClient, connections }) => {
      const first = await connectClient();
      await assert.rejects(connectClient(), ConnectionError);
      await first.ping();
      first.close();
      await connections(0);
      const again = await connectClient();
      await again.ping();
    }));
});
