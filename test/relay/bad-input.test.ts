// Bad input over the real wire: a raw `ws` socket speaks (or breaks) the
// handshake and the block protocol by hand against an in-process relay. Every
// case checks how the server answers or closes, and that it keeps serving a
// healthy client and the sessions that did nothing wrong.
import type { EventEmitter } from 'node:events';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import WebSocket from 'ws';
import { BlockCipher, decodeBlock, encodeBlock } from '../../src/core/block.ts';
import { parseAddress, webSocketUrl, type ServerAddress } from '../../src/core/address.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { concat, Encoder } from '../../src/core/encoding.ts';
import { sharedKey } from '../../src/core/keys.ts';
import {
  decodeServerHello,
  deriveBlockKeys,
  encodeClientHello,
  verifyServerHello,
  type ServerHello,
} from '../../src/core/handshake.ts';
import {
  authenticator,
  decodeTransmission,
  encodeTransmission,
  signedPart,
  type Transmission,
} from '../../src/core/transmission.ts';
import { ConnectionError } from '../../src/core/client.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { RelayClient, openMessage } from '../../src/relay/client.ts';
import {
  decodeResponse,
  encodeCommand,
  RELAY_BLOCK_SIZE,
  RELAY_PROTOCOL,
  RELAY_VERSIONS,
  type RelayCommand,
  type RelayResponse,
} from '../../src/relay/protocol.ts';
import { CLOSE } from '../../src/server/protocol-server.ts';
import { bytes, connect, crypto, eventLog, newQueue, SMALL_ORDER_KEYS, startRelay, text, untilEvent, type TestClient, type TestRelay } from '../helpers.ts';

const BLOCK = RELAY_BLOCK_SIZE;
const CONTENT = BLOCK - 16;
const EMPTY = new Uint8Array(0);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** Deterministic filler, so fast-check counterexamples replay exactly. */
const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 7 + 1) & 0xff);

interface Closed {
  code: number;
  reason: string;
}

/** A hand-driven connection: raw frames, or the protocol spoken step by step. */
class Raw {
  private readonly frames: Uint8Array[] = [];
  private waiters: Array<() => void> = [];
  closeInfo: Closed | undefined;
  readonly closed: Promise<Closed>;
  hello!: ServerHello;
  private send!: BlockCipher;
  private recv!: BlockCipher;
  private nextCorr = 1;
  /** Transmissions received and not yet taken. */
  readonly inbox: Transmission[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.binaryType = 'nodebuffer';
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      assert.ok(isBinary, 'the server only sends binary frames');
      this.frames.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code: number, reason: Buffer) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      }),
    );
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  static async open(address: string): Promise<Raw> {
    const a = parseAddress(address);
    assert.ok(a.ok);
    const raw = new Raw(new WebSocket(webSocketUrl(a.value), { perMessageDeflate: false }));
    await new Promise<void>((resolve, reject) => {
      raw.ws.once('open', () => resolve());
      raw.ws.once('error', reject);
    });
    return raw;
  }

  /** The next frame from the server; undefined once the connection is closed. */
  async frame(timeoutMs = 3000): Promise<Uint8Array | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.closeInfo) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame from the server');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Reads and checks the server hello (the first frame). */
  async serverHello(): Promise<ServerHello> {
    const f = await this.frame();
    assert.ok(f, 'no server hello');
    assert.equal(f.length, BLOCK);
    const items = decodeBlock(f);
    assert.ok(items.ok && items.value.length === 1);
    const h = decodeServerHello(items.value[0]!);
    assert.ok(h.ok);
    assert.equal(h.value.protocol, RELAY_PROTOCOL);
    assert.ok(verifyServerHello(nodeCrypto, h.value));
    this.hello = h.value;
    return h.value;
  }

  /** Completes the handshake; the client hello fields can be overridden to break it. */
  async handshake(over: { version?: number; fingerprint?: Uint8Array; clientKey?: Uint8Array } = {}): Promise<this> {
    const h = await this.serverHello();
    const eph = nodeCrypto.x25519KeyPair();
    const hello = encodeClientHello({
      version: over.version ?? RELAY_VERSIONS[1],
      fingerprint: over.fingerprint ?? nodeCrypto.sha256(h.identityKey),
      clientKey: over.clientKey ?? eph.publicKey,
    });
    this.ws.send(encodeBlock([hello], BLOCK));
    const keys = deriveBlockKeys(nodeCrypto, eph.privateKey, h.sessionKey, h.sessionId, over.version ?? RELAY_VERSIONS[1])!;
    this.send = new BlockCipher(nodeCrypto, keys.clientToServer, BLOCK);
    this.recv = new BlockCipher(nodeCrypto, keys.serverToClient, BLOCK);
    return this;
  }

  /** Seals block content with the next counter; returns the frame (to send, or to replay). */
  seal(content: Uint8Array): Uint8Array {
    return this.send.seal(content);
  }

  /** Sends transmissions in one sealed block; returns the frame sent. */
  sendItems(items: Uint8Array[]): Uint8Array {
    const frame = this.seal(encodeBlock(items, CONTENT));
    this.ws.send(frame);
    return frame;
  }

  /** A transmission with a fresh corrId; authenticated with `authKey` (an X25519 private key) if given. */
  transmission(entityId: Uint8Array, c: RelayCommand | Uint8Array, authKey?: Uint8Array): { corrId: Uint8Array; bytes: Uint8Array } {
    const corrId = new Encoder().u32(0xc0ffee).u32(this.nextCorr++).done();
    const signed = signedPart(corrId, entityId, c instanceof Uint8Array ? c : encodeCommand(c));
    const auth = authKey ? authenticator(nodeCrypto, this.authSecret(authKey), this.hello.sessionId, signed) : EMPTY;
    return { corrId, bytes: encodeTransmission(auth, signed) };
  }

  /** The key derived from X25519(entity key, this session's key): the HMAC key of authenticators on this session. */
  authSecret(privateKey: Uint8Array): Uint8Array {
    return sharedKey(nodeCrypto, privateKey, this.hello.sessionKey, 'auth', { version: RELAY_VERSIONS[1] })!;
  }

  /** Reads blocks until the transmission answering `corrId` arrives; undefined if the server closed first. */
  async answer(corrId: Uint8Array, timeoutMs = 3000): Promise<Transmission | undefined> {
    for (;;) {
      const i = this.inbox.findIndex((t) => hex(t.corrId) === hex(corrId));
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      const f = await this.frame(timeoutMs);
      if (!f) return undefined;
      const content = this.recv.open(f);
      assert.ok(content, 'server block does not open');
      const items = decodeBlock(content);
      assert.ok(items.ok, 'server block does not decode');
      for (const item of items.value) {
        const t = decodeTransmission(item);
        assert.ok(t.ok, 'server transmission does not decode');
        this.inbox.push(t.value);
      }
    }
  }

  /** Sends one command and returns the decoded response. */
  async request(entityId: Uint8Array, c: RelayCommand | Uint8Array, authKey?: Uint8Array): Promise<RelayResponse> {
    const t = this.transmission(entityId, c, authKey);
    this.sendItems([t.bytes]);
    return this.response(t.corrId);
  }

  async response(corrId: Uint8Array): Promise<RelayResponse> {
    const t = await this.answer(corrId);
    assert.ok(t, `connection closed before the answer: ${JSON.stringify(this.closeInfo)}`);
    const r = decodeResponse(t.command);
    assert.ok(r.ok, 'response does not decode');
    return r.value;
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
  }
}

async function closedWith(raw: Raw, code: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const c = await Promise.race([
    raw.closed,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not closed (expected ${code})`)), 3000))),
  ]).finally(() => clearTimeout(timer));
  assert.equal(c.code, code, `closed with ${c.code} ${c.reason}, expected ${code}`);
}

const err = (error: string): RelayResponse => ({ type: 'ERR', error }) as RelayResponse;

let relay: TestRelay;
/** The relay's log events: `connection_closed` as each connection goes. */
let relayEvents: EventEmitter;
/** A well-behaved session that stays connected through every bad case. */
let bystander: TestClient;
let bystanderQueue: Awaited<ReturnType<typeof newQueue>>;
const raws: Raw[] = [];

async function rawSession(): Promise<Raw> {
  const r = await Raw.open(relay.address);
  raws.push(r);
  return r;
}

before(async () => {
  const { log, events } = eventLog();
  relayEvents = events;
  relay = await startRelay({ log });
  bystander = await connect(relay.address);
  bystanderQueue = await newQueue(bystander);
  await bystander.subscribe(bystanderQueue.rcvId, bystanderQueue.rcvAuth.privateKey);
});

after(async () => {
  for (const r of raws) r.close();
  bystander.close();
  await relay.stop();
});

/**
 * The server still works: a new client creates a queue, sends and receives;
 * the bystander session is unaffected; no session or handshake is leaked.
 */
async function healthy(): Promise<void> {
  const a = await connect(relay.address);
  const b = await connect(relay.address);
  try {
    const q = await newQueue(a);
    await a.subscribe(q.rcvId, q.rcvAuth.privateKey);
    await b.send(q.sndId, bytes('still here'));
    const m = await a.nextEvent('MSG');
    assert.equal(m.type, 'MSG');
    const plain = openMessage(crypto, q.rcvDhSecret, m as Extract<RelayResponse, { type: 'MSG' }>);
    assert.ok(plain);
    assert.equal(text(plain.body), 'still here');
    await a.ack(q.rcvId, q.rcvAuth.privateKey, plain.msgId);
    // The bystander's connection and subscription survived.
    await bystander.ping();
    await b.send(bystanderQueue.sndId, bytes('bystander'));
    const bm = await bystander.nextEvent('MSG');
    const bp = openMessage(crypto, bystanderQueue.rcvDhSecret, bm as Extract<RelayResponse, { type: 'MSG' }>);
    assert.equal(text(bp!.body), 'bystander');
    await bystander.ack(bystanderQueue.rcvId, bystanderQueue.rcvAuth.privateKey, bp!.msgId);
  } finally {
    a.close();
    b.close();
  }
  // Every bad connection is gone from the server's count: only the bystander remains.
  for (const r of raws.splice(0)) r.close();
  await untilEvent(relayEvents, 'connection_closed', () => relay.server.connections === 1, 3000);
}

// ---- before the handshake ----

test('random bytes instead of a client hello: closed with PROTOCOL', async () => {
  for (const junk of [pattern(1, 1), pattern(100, 2), pattern(BLOCK - 1, 3), pattern(BLOCK, 4), EMPTY]) {
    const raw = await rawSession();
    await raw.serverHello();
    raw.ws.send(junk);
    await closedWith(raw, CLOSE.PROTOCOL);
  }
  // A well-framed block whose one item is not a client hello.
  const raw = await rawSession();
  await raw.serverHello();
  raw.ws.send(encodeBlock([pattern(66, 5)], BLOCK));
  await closedWith(raw, CLOSE.PROTOCOL);
  // Two items, the first a valid hello.
  const two = await rawSession();
  const h = await two.serverHello();
  const ch = encodeClientHello({ version: 1, fingerprint: nodeCrypto.sha256(h.identityKey), clientKey: nodeCrypto.x25519KeyPair().publicKey });
  two.ws.send(encodeBlock([ch, ch], BLOCK));
  await closedWith(two, CLOSE.PROTOCOL);
  await healthy();
});

test('a text frame: closed with PROTOCOL, before and after the handshake', async () => {
  const before = await rawSession();
  await before.serverHello();
  before.ws.send('hello');
  await closedWith(before, CLOSE.PROTOCOL);
  const afterHs = await rawSession();
  await afterHs.handshake();
  assert.deepEqual(await afterHs.request(EMPTY, { type: 'PING' }), { type: 'PONG' });
  afterHs.ws.send('x'.repeat(100));
  await closedWith(afterHs, CLOSE.PROTOCOL);
  await healthy();
});

test('a truncated block: closed with PROTOCOL, before and after the handshake', async () => {
  const before = await rawSession();
  const h = await before.serverHello();
  const ch = encodeClientHello({ version: 1, fingerprint: nodeCrypto.sha256(h.identityKey), clientKey: nodeCrypto.x25519KeyPair().publicKey });
  before.ws.send(encodeBlock([ch], BLOCK).subarray(0, BLOCK - 1));
  await closedWith(before, CLOSE.PROTOCOL);

  const afterHs = await rawSession();
  await afterHs.handshake();
  const t = afterHs.transmission(EMPTY, { type: 'PING' });
  afterHs.ws.send(afterHs.seal(encodeBlock([t.bytes], CONTENT)).subarray(0, BLOCK - 1));
  await closedWith(afterHs, CLOSE.PROTOCOL);
  assert.equal(await afterHs.answer(t.corrId), undefined, 'no answer to a truncated block');
  await healthy();
});

test('an oversized frame (> block size): closed by ws maxPayload with 1009', async () => {
  const before = await rawSession();
  await before.serverHello();
  before.ws.send(new Uint8Array(BLOCK + 1));
  await closedWith(before, 1009);
  const afterHs = await rawSession();
  await afterHs.handshake();
  afterHs.ws.send(pattern(BLOCK * 4, 9));
  await closedWith(afterHs, 1009);
  await healthy();
});

test('an unsupported version in the client hello: closed with VERSION', async () => {
  for (const version of [0, RELAY_VERSIONS[1] + 1, 0xffff]) {
    const raw = await rawSession();
    await raw.handshake({ version });
    await closedWith(raw, CLOSE.VERSION);
  }
  await healthy();
});

test('a wrong fingerprint in the client hello: closed with IDENTITY', async () => {
  const raw = await rawSession();
  await raw.handshake({ fingerprint: nodeCrypto.randomBytes(32) });
  await closedWith(raw, CLOSE.IDENTITY);
  // The fingerprint of the identity key itself, not hashed: still wrong.
  const raw2 = await rawSession();
  await raw2.handshake({ fingerprint: relay.server.opts.identity.publicKey });
  await closedWith(raw2, CLOSE.IDENTITY);
  await healthy();
});

test('a client key of small order: closed with PROTOCOL, bad client key', async () => {
  for (const clientKey of SMALL_ORDER_KEYS) {
    const raw = await rawSession();
    await raw.handshake({ clientKey });
    await closedWith(raw, CLOSE.PROTOCOL);
    assert.equal(raw.closeInfo?.reason, 'bad client key');
  }
  await healthy();
});

test('a client whose address pins another fingerprint refuses the server', async () => {
  const a = parseAddress(relay.address);
  assert.ok(a.ok);
  const fp = a.value.fingerprint.slice();
  fp[0]! ^= 1;
  const wrong: ServerAddress = { ...a.value, fingerprint: fp };
  await assert.rejects(
    RelayClient.connect(wrong, { webSocket: nodeWebSocket(), timeoutMs: 3000 }),
    (e: unknown) => e instanceof ConnectionError && /identity does not match/.test(e.message),
  );
  // Another server's identity under this server's host and port.
  const other = nodeCrypto.ed25519KeyPair();
  await assert.rejects(
    RelayClient.connect({ ...a.value, fingerprint: nodeCrypto.sha256(other.publicKey) }, { webSocket: nodeWebSocket(), timeoutMs: 3000 }),
    ConnectionError,
  );
  await healthy();
});

// ---- after the handshake ----

test('garbage transmissions in a good block: ERR SYNTAX each, and the connection keeps working', async () => {
  const raw = await rawSession();
  await raw.handshake();
  const corr = (n: number) => Uint8Array.of(0xee, n);
  const garbage = [
    EMPTY, // no authenticator length
    Uint8Array.of(5, 1, 2, 3, 4, 5, 0, 0, 1), // authenticator of 5 bytes
    concat(Uint8Array.of(32), new Uint8Array(10)), // authenticator cut short
    concat(Uint8Array.of(0, 2), corr(1), Uint8Array.of(40), new Uint8Array(40), Uint8Array.of(1)), // entityId too long
    concat(Uint8Array.of(0, 2), corr(2), Uint8Array.of(0)), // empty command
    concat(Uint8Array.of(0, 25), new Uint8Array(25), Uint8Array.of(0, 1)), // corrId too long
    concat(Uint8Array.of(0, 2), corr(3), Uint8Array.of(9, 1)), // entityId cut short
  ];
  const ping = raw.transmission(EMPTY, { type: 'PING' });
  raw.sendItems([...garbage, ping.bytes]);
  assert.deepEqual(await raw.response(ping.corrId), { type: 'PONG' });
  // Everything before the PONG: one SYNTAX per garbage item, in order, with the corrId when it could be read.
  const answers = raw.inbox.splice(0);
  assert.equal(answers.length, garbage.length);
  for (const a of answers) assert.deepEqual(decodeResponse(a.command), { ok: true, value: err('SYNTAX') });
  assert.deepEqual(
    answers.map((a) => hex(a.corrId)),
    ['', '', '', hex(corr(1)), hex(corr(2)), '', hex(corr(3))],
  );
  // Well-formed transmissions with malformed commands.
  const malformed: Uint8Array[] = [
    new Encoder().tag('SEND').u8(2).long(bytes('x')).done(), // unknown flag
    new Encoder().tag('SEND').u8(0).u16(10).done(), // body cut short
    new Encoder().tag('NEW').short(new Uint8Array(31)).short(new Uint8Array(32)).bool(false).done(), // short key
    new Encoder().tag('PING').u8(0).done(), // trailing byte
    new Encoder().tag('ACK').short(new Uint8Array(12)).bool(true).done(),
    Uint8Array.of(3, 0x50, 0x0a, 0x47), // tag with a control character
    Uint8Array.of(0xff), // tag length past the end
  ];
  for (const m of malformed) assert.deepEqual(await raw.request(bystanderQueue.rcvId, m), err('SYNTAX'), hex(m));
  assert.deepEqual(await raw.request(EMPTY, { type: 'PING' }), { type: 'PONG' });
  await healthy();
});

test('an unknown command: ERR UNKNOWN', async () => {
  const raw = await rawSession();
  await raw.handshake();
  for (const tag of ['FOO', 'ping', 'NEWS', 'X', 'IDS', 'OK', 'ERR'])
    assert.deepEqual(await raw.request(EMPTY, new Encoder().tag(tag).done()), err('UNKNOWN'), tag);
  // With fields after the unknown tag, still UNKNOWN, not SYNTAX.
  assert.deepEqual(await raw.request(EMPTY, new Encoder().tag('FOO').raw(pattern(50, 1)).done()), err('UNKNOWN'));
  assert.deepEqual(await raw.request(EMPTY, { type: 'PING' }), { type: 'PONG' });
  await healthy();
});

test('a forged authenticator (random 32 bytes): ERR AUTH, known or unknown entity', async () => {
  const owner = await connect(relay.address);
  const q = await newQueue(owner);
  await owner.secure(q.rcvId, q.rcvAuth.privateKey, crypto.x25519KeyPair().publicKey);
  owner.close();
  const raw = await rawSession();
  await raw.handshake();
  const forged = (entityId: Uint8Array, c: RelayCommand) => {
    const corrId = nodeCrypto.randomBytes(8);
    return { corrId, bytes: encodeTransmission(nodeCrypto.randomBytes(32), signedPart(corrId, entityId, encodeCommand(c))) };
  };
  const cases: Array<[Uint8Array, RelayCommand]> = [
    [q.rcvId, { type: 'SUB' }],
    [q.rcvId, { type: 'GET' }],
    [q.rcvId, { type: 'DEL' }],
    [q.rcvId, { type: 'KEY', sndAuthKey: nodeCrypto.randomBytes(32) }],
    [q.sndId, { type: 'SEND', notify: false, body: bytes('forged') }],
    [nodeCrypto.randomBytes(24), { type: 'SUB' }], // unknown: answered alike
    [nodeCrypto.randomBytes(24), { type: 'SEND', notify: false, body: bytes('x') }],
    [nodeCrypto.randomBytes(24), { type: 'NSUB' }],
    [EMPTY, { type: 'NEW', rcvAuthKey: nodeCrypto.x25519KeyPair().publicKey, rcvDhKey: nodeCrypto.x25519KeyPair().publicKey }],
    [EMPTY, { type: 'NSUBS', serviceKey: nodeCrypto.x25519KeyPair().publicKey }],
  ];
  for (const [entityId, c] of cases) {
    const t = forged(entityId, c);
    raw.sendItems([t.bytes]);
    assert.deepEqual(await raw.response(t.corrId), err('AUTH'), c.type);
  }
  // Nothing happened to the queue: it still exists and holds no message.
  const check = await connect(relay.address);
  assert.equal(await check.get(q.rcvId, q.rcvAuth.privateKey), undefined);
  check.close();
  await healthy();
});

test('public keys of small order: ERR KEY at NEW (each of its keys), KEY, NKEY and NSUBS, and nothing is made', async () => {
  const c = await connect(relay.address);
  try {
    const q = await newQueue(c);
    const good = () => crypto.x25519KeyPair();
    const queuesBefore = relay.store.counts().queues;
    for (const weak of SMALL_ORDER_KEYS) {
      const auth = good();
      const newWith = (keys: { rcvAuthKey?: Uint8Array; rcvDhKey?: Uint8Array; ntfAuthKey?: Uint8Array; rcvNtfDhKey?: Uint8Array }) =>
        c.command(
          EMPTY,
          {
            type: 'NEW',
            rcvAuthKey: keys.rcvAuthKey ?? auth.publicKey,
            rcvDhKey: keys.rcvDhKey ?? good().publicKey,
            ntf: { ntfAuthKey: keys.ntfAuthKey ?? good().publicKey, rcvNtfDhKey: keys.rcvNtfDhKey ?? good().publicKey },
          },
          auth.privateKey,
        );
      for (const field of ['rcvAuthKey', 'rcvDhKey', 'ntfAuthKey', 'rcvNtfDhKey'])
        await assert.rejects(newWith({ [field]: weak }), (e: unknown) => (e as { error?: string }).error === 'KEY', `NEW with a weak ${field}`);
      await assert.rejects(c.secure(q.rcvId, q.rcvAuth.privateKey, weak), (e: unknown) => (e as { error?: string }).error === 'KEY', 'KEY');
      for (const [ntfAuthKey, rcvNtfDhKey] of [[weak, good().publicKey], [good().publicKey, weak]] as const)
        await assert.rejects(
          c.enableNotifications(q.rcvId, q.rcvAuth.privateKey, ntfAuthKey, rcvNtfDhKey),
          (e: unknown) => (e as { error?: string }).error === 'KEY',
          'NKEY',
        );
      assert.deepEqual(await c.command(EMPTY, { type: 'NSUBS', serviceKey: weak }, good().privateKey).catch((e: { error?: string }) => e.error), 'KEY', 'NSUBS');
    }
    // The queue stayed unsecured, without a notifier: a SEND without a key still goes in.
    await c.send(q.sndId, bytes('unsecured'));
    assert.ok(await c.get(q.rcvId, q.rcvAuth.privateKey));
    assert.equal(relay.store.counts().queues, queuesBefore, 'no queue was made');
  } finally {
    c.close();
  }
  await healthy();
});

test('an authenticated transmission replayed on another session: ERR AUTH', async () => {
  const owner = await connect(relay.address);
  const q = await newQueue(owner);
  const sndAuth = crypto.x25519KeyPair();
  await owner.secure(q.rcvId, q.rcvAuth.privateKey, sndAuth.publicKey);
  owner.close();

  const a = await rawSession();
  await a.handshake();
  const b = await rawSession();
  await b.handshake();
  assert.notEqual(hex(a.hello.sessionId), hex(b.hello.sessionId));

  // Captured on session A: a SEND under the sender key and a GET under the recipient key.
  const send = a.transmission(q.sndId, { type: 'SEND', notify: false, body: bytes('once') }, sndAuth.privateKey);
  const get = a.transmission(q.rcvId, { type: 'GET' }, q.rcvAuth.privateKey);
  a.sendItems([send.bytes]);
  assert.deepEqual(await a.response(send.corrId), { type: 'OK' });

  // The same bytes on session B, alone and together.
  b.sendItems([send.bytes]);
  assert.deepEqual(await b.response(send.corrId), err('AUTH'));
  b.sendItems([get.bytes]);
  assert.deepEqual(await b.response(get.corrId), err('AUTH'));
  // SUB captured on A, replayed on B, must not move the subscription.
  const sub = a.transmission(q.rcvId, { type: 'SUB' }, q.rcvAuth.privateKey);
  b.sendItems([sub.bytes]);
  assert.deepEqual(await b.response(sub.corrId), err('AUTH'));

  // On A they are valid: exactly one message was stored.
  a.sendItems([get.bytes]);
  const r = await a.response(get.corrId);
  assert.equal(r.type, 'MSG');
  const m = openMessage(crypto, q.rcvDhSecret, r as Extract<RelayResponse, { type: 'MSG' }>);
  assert.equal(text(m!.body), 'once');
  assert.deepEqual(await a.request(q.rcvId, { type: 'ACK', msgId: m!.msgId }, q.rcvAuth.privateKey), { type: 'OK' });
  assert.deepEqual(await a.request(q.rcvId, { type: 'GET' }, q.rcvAuth.privateKey), { type: 'OK' }, 'queue empty');
  // B keeps working with its own authenticators.
  assert.deepEqual(await b.request(q.sndId, { type: 'SEND', notify: false, body: bytes('b') }, sndAuth.privateKey), { type: 'OK' });
  await healthy();
});

test('a block replayed on the same session: that connection is closed, others are unaffected', async () => {
  const victim = await rawSession();
  await victim.handshake();
  const other = await rawSession();
  await other.handshake();
  const t = victim.transmission(EMPTY, { type: 'PING' });
  const frame = victim.sendItems([t.bytes]);
  assert.deepEqual(await victim.response(t.corrId), { type: 'PONG' });
  victim.ws.send(frame);
  await closedWith(victim, CLOSE.PROTOCOL);
  // A block sealed out of order (a counter skipped) is refused the same way.
  const skipper = await rawSession();
  await skipper.handshake();
  skipper.seal(encodeBlock([skipper.transmission(EMPTY, { type: 'PING' }).bytes], CONTENT)); // never sent
  const s = skipper.transmission(EMPTY, { type: 'PING' });
  skipper.sendItems([s.bytes]);
  await closedWith(skipper, CLOSE.PROTOCOL);
  assert.equal(await skipper.answer(s.corrId), undefined);
  // A frame of the right size that is not sealed under this session's key.
  const stranger = await rawSession();
  await stranger.handshake();
  stranger.ws.send(pattern(BLOCK, 77));
  await closedWith(stranger, CLOSE.PROTOCOL);
  // The session that did nothing wrong.
  assert.deepEqual(await other.request(EMPTY, { type: 'PING' }), { type: 'PONG' });
  assert.equal(other.closeInfo, undefined);
  await healthy();
});

test('commands sent after the server closed the session are not executed', async () => {
  // The server closes on the text frame; the sealed SEND right behind it
  // reaches the server while the socket is closing and must be ignored.
  const owner = await connect(relay.address);
  try {
    const q = await newQueue(owner);
    const raw = await rawSession();
    await raw.handshake();
    raw.ws.send('not a block');
    raw.sendItems([raw.transmission(q.sndId, { type: 'SEND', notify: false, body: bytes('late') }).bytes]);
    await closedWith(raw, CLOSE.PROTOCOL);
    await relay.server.drain();
    assert.equal(await owner.get(q.rcvId, q.rcvAuth.privateKey), undefined, 'a command of a closed session was executed');
  } finally {
    owner.close();
  }
  await healthy();
});

// ---- random input after a proper handshake ----

type Frame =
  | { kind: 'raw'; length: number; seed: number }
  | { kind: 'text'; s: string }
  | { kind: 'sealedJunk'; seed: number }
  | { kind: 'items'; items: Uint8Array[] }
  | { kind: 'commands'; items: Array<{ auth: Uint8Array; corrId: Uint8Array; entityId: Uint8Array; command: Uint8Array }> }
  | { kind: 'replay' }
  | { kind: 'skip' };

const COMMAND_TAGS = ['NEW', 'SUB', 'GET', 'ACK', 'KEY', 'NKEY', 'NDEL', 'OFF', 'DEL', 'SEND', 'NSUB', 'NSUBS', 'PING', 'ZAP'];

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), length: fc.oneof(fc.nat(64), fc.constantFrom(BLOCK - 1, BLOCK, BLOCK + 1)), seed: fc.nat(255) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('text' as const), s: fc.string({ maxLength: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sealedJunk' as const), seed: fc.nat(255) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('items' as const), items: fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 8 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('commands' as const),
      items: fc.array(
        fc.record({
          auth: fc.oneof(fc.constant(EMPTY), fc.uint8Array({ minLength: 32, maxLength: 32 })),
          corrId: fc.uint8Array({ maxLength: 24 }),
          entityId: fc.oneof(fc.constant(EMPTY), fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.uint8Array({ maxLength: 32 })),
          command: fc
            .tuple(fc.constantFrom(...COMMAND_TAGS), fc.uint8Array({ maxLength: 100 }))
            .map(([tag, rest]) => concat(new Encoder().tag(tag).done(), rest)),
        }),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'replay' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'skip' as const }) },
);

const FINAL_CORR = Uint8Array.of(0xf1, 0x4a, 0x1c, 0x0e, 0x77, 0x3d, 0x9b, 0x26);

test('property: random frames after the handshake never crash the server; other clients keep working', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(frameArb, { minLength: 1, maxLength: 5 }), async (frames) => {
      const raw = await rawSession();
      await raw.handshake();
      let fatal = false;
      let answers = 0;
      let last: Uint8Array | undefined;
      for (const f of frames) {
        if (raw.closeInfo) break;
        switch (f.kind) {
          case 'raw':
            raw.ws.send(pattern(f.length, f.seed));
            fatal = true;
            break;
          case 'text':
            raw.ws.send(f.s);
            fatal = true;
            break;
          case 'sealedJunk': {
            const content = pattern(CONTENT, f.seed);
            fatal ||= !decodeBlock(content).ok;
            raw.ws.send((last = raw.seal(content)));
            break;
          }
          case 'items':
            last = raw.sendItems(f.items);
            answers += f.items.length;
            break;
          case 'commands':
            last = raw.sendItems(f.items.map((t) => encodeTransmission(t.auth, signedPart(t.corrId, t.entityId, t.command))));
            answers += f.items.length;
            break;
          case 'replay':
            if (last) {
              raw.ws.send(last);
              fatal = true;
            }
            break;
          case 'skip':
            raw.seal(new Uint8Array(CONTENT));
            fatal = true;
            break;
        }
        if (fatal) break; // what follows a fatal frame is undefined (and tested above)
      }
      const ping = encodeTransmission(EMPTY, signedPart(FINAL_CORR, EMPTY, encodeCommand({ type: 'PING' })));
      if (!raw.closeInfo) raw.sendItems([ping]);
      const t = await raw.answer(FINAL_CORR);
      if (fatal) {
        assert.equal(t, undefined, 'a fatal frame did not close the connection');
        const c = await raw.closed;
        assert.ok(c.code === CLOSE.PROTOCOL || c.code === 1009, `closed with ${c.code}`);
      } else {
        assert.ok(t, `closed unexpectedly: ${JSON.stringify(raw.closeInfo)}`);
        assert.deepEqual(decodeResponse(t.command), { ok: true, value: { type: 'PONG' } });
        // Exactly one answer per transmission sent, before the PONG.
        assert.equal(raw.inbox.length, answers);
        for (const a of raw.inbox) assert.ok(decodeResponse(a.command).ok);
      }
      raw.close();
      await bystander.ping();
    }),
    { numRuns: 200 },
  );
  await healthy();
});
