// The notification server's privacy properties (DESIGN.md): its store never
// holds a queue's recipient or sender ID (nor anything else of the recipient's:
// message IDs, bodies, DH secrets), its logs hold no device tokens, IDs or keys,
// and every push carries data of one fixed length whatever its kind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { openPush } from '../../src/ntf/payload.ts';
import { PUSH_DATA_SIZE, type PushKind } from '../../src/push/device.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import { encodeNtfRecord, type NtfRecord } from '../../src/ntf/store/records.ts';
import type { NtfStore } from '../../src/ntf/store/store.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { encodeCommand, ID_LENGTH, type NtfCommand } from '../../src/ntf/protocol.ts';
import { countingCrypto } from '../crypto-count.ts';
import { bytes, crypto, tmpDir, type Queue , capturedLog } from '../helpers.ts';
import { CaptureProvider, device, forDevice, hex, raw, received, RECONNECT_MAX_MS, TestClock, until, untilSub, withNtf, type Device } from './helpers.ts';

interface Secret {
  name: string;
  bytes: Uint8Array;
}

/** Every way a byte string could end up in a file or a log line. */
function encodings(b: Uint8Array): Array<{ form: string; bytes: Buffer }> {
  const buf = Buffer.from(b);
  const l1 = buf.toString('latin1');
  const out: Array<{ form: string; bytes: Buffer }> = [
    { form: 'raw', bytes: buf },
    { form: 'hex', bytes: Buffer.from(buf.toString('hex')) },
    { form: 'HEX', bytes: Buffer.from(buf.toString('hex').toUpperCase()) },
    { form: 'latin1 as utf8', bytes: Buffer.from(l1, 'utf8') },
    { form: 'latin1 JSON-escaped', bytes: Buffer.from(JSON.stringify(l1).slice(1, -1)) },
    { form: 'byte list', bytes: Buffer.from([...buf].join(',')) },
    { form: 'Uint8Array JSON', bytes: Buffer.from([...buf].map((v, i) => `"${i}":${v}`).join(',')) },
  ];
  // base64 and base64url, at the three alignments a value can have inside a longer encoded blob
  for (let shift = 0; shift < 3; shift++) {
    const enc = Buffer.concat([Buffer.alloc(shift), buf]);
    const start = [0, 2, 3][shift]!;
    for (const kind of ['base64', 'base64url'] as const) {
      const s = enc.toString(kind).replace(/=+$/, '');
      out.push({ form: `${kind}@${shift}`, bytes: Buffer.from(s.slice(start, s.length - 2)) });
    }
  }
  return out;
}

/** Names of the secrets (and the form) found in `hay`. */
function find(hay: Buffer, secrets: Secret[]): string[] {
  const hits: string[] = [];
  for (const s of secrets) for (const e of encodings(s.bytes)) if (e.bytes.length >= 8 && hay.includes(e.bytes)) hits.push(`${s.name} (${e.form})`);
  return hits;
}

const latin1Bytes = (s: string) => Buffer.from(s, 'latin1');

interface Outcome {
  /** Never in the NTF server's store or logs: the recipient's side of each queue. */
  recipientSecrets: Secret[];
  /** Never in the logs: device tokens, token/subscription/notifier IDs, keys, codes. */
  logSecrets: Secret[];
  /** Must be in the store (so the search is shown to work on it). */
  stored: Secret[];
  log: string;
  pushes: Map<PushKind, Uint8Array[]>;
}

/**
 * A busy life of an NTF server: tokens verified, replaced, invalidated, a failing
 * provider, periodic pushes, subscriptions ending in every terminal status, an
 * unreachable relay, refused commands, and notify messages on many queues.
 */
async function scenario(store: NtfStore): Promise<Outcome> {
  const { log, text: logText, events } = capturedLog();
  const clock = new TestClock();
  const p = new CaptureProvider(['test']);
  const rand = () => hex(crypto.randomBytes(6));
  const tokens = { a: bytes(`device-a-${rand()}`), b: bytes(`device-b-${rand()}`), c: bytes(`device-c-${rand()}`), a2: bytes(`device-a2-${rand()}`) };
  p.respond = (req) => {
    if (req.kind === 'message' && forDevice({ provider: 'test', token: tokens.b })(req)) return { outcome: 'invalid', reason: 'UNREGISTERED' };
    // a provider whose error text carries the device token (a Web Push endpoint is one)
    if (req.kind === 'message' && forDevice({ provider: 'test', token: tokens.c })(req))
      throw new Error(`POST https://push.example/${Buffer.from(req.device.token).toString('latin1')} failed`);
    return { outcome: 'delivered' };
  };
  const out: Outcome = { recipientSecrets: [], logSecrets: [], stored: [], log: '', pushes: new Map() };
  // retry delays on the clock: c's push retry, the reconnection attempts to the dead relay
  await withNtf({ store, log, clock, clockTimers: true, providers: [p], dispatch: { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 2 } }, async (ctx) => {
    const a = await device(ctx.ntf, { token: tokens.a });
    const b = await device(ctx.ntf, { token: tokens.b });
    const c = await device(ctx.ntf, { token: tokens.c });
    const devices: Device[] = [a, b, c];
    const queues: Queue[] = [];
    const subs: Uint8Array[] = [];
    const subscribe = async (d: Device) => {
      const q = await ctx.queue();
      queues.push(q);
      subs.push(await ctx.subscribe(d, q));
      return q;
    };
    const [qa1, qa2, qa3, qb, qc] = [await subscribe(a), await subscribe(a), await subscribe(a), await subscribe(b), await subscribe(c)];
    // terminal statuses: AUTH (wrong notifier key), DELETED (NDEL), END (another notifier)
    const qAuth = await ctx.queue();
    queues.push(qAuth);
    const sAuth = await a.subscribe(ctx.relay.address, qAuth.ntf!.notifierId, crypto.x25519KeyPair().privateKey);
    subs.push(sAuth);
    await untilSub(a, sAuth, 'AUTH');
    const qDel = await subscribe(a);
    await ctx.rc.disableNotifications(qDel.rcvId, qDel.rcvAuth.privateKey);
    await untilSub(a, subs.at(-1)!, 'DELETED');
    const qEnd = await subscribe(a);
    const other = await ctx.relayClient();
    await other.subscribeNotifier(qEnd.ntf!.notifierId, qEnd.ntf!.auth.privateKey);
    await untilSub(a, subs.at(-1)!, 'END');
    // a relay that is not there: connection attempts fail and are logged
    const fp = ctx.relay.address.slice('hush+ws://'.length, 'hush+ws://'.length + 43);
    const deadNotifier = crypto.randomBytes(24);
    const deadKey = crypto.x25519KeyPair().privateKey;
    subs.push(await a.subscribe(`hush+ws://${fp}@127.0.0.1:1`, deadNotifier, deadKey));

    // messages: two notify and one quiet per queue
    const before = await received(ctx.ntf.ntf);
    for (const q of [qa1, qa2, qa3, qb, qc]) {
      await ctx.rc.send(q.sndId, bytes(`secret body 1 ${rand()}`), { notify: true });
      await ctx.rc.send(q.sndId, bytes(`secret body 2 ${rand()}`));
      await ctx.rc.send(q.sndId, bytes(`secret body 3 ${rand()}`), { notify: true });
    }
    await until('10 NMSGs', async () => (await received(ctx.ntf.ntf)) - before === 10);
    await ctx.ntf.ntf.dispatcher.idle(); // every push answered; c's retry waits for the clock
    assert.equal((await b.check()).status, 'INVALID');
    clock.advance(2); // maxBackoffMs: c's retry (the dead relay's reconnection waits longer)
    await ctx.ntf.ntf.dispatcher.idle();
    assert.ok(p.attempts.filter((x) => forDevice(c.device)(x.req) && x.req.kind === 'message').length >= 2, 'c\'s push failed twice');
    await a.nextPush('message');
    // periodic check push
    await a.client.setCron(a.tokenId, a.tknAuth.privateKey, 20);
    clock.advance(20 * 60_000);
    ctx.ntf.ntf.runCron();
    await a.nextPush('check');
    // TRPL and verify again
    const a2 = { provider: 'test' as const, token: tokens.a2 };
    const from = p.attempts.length;
    await a.client.replaceToken(a.tokenId, a.tknAuth.privateKey, a2);
    await p.waitFor('the verification to a2', () => p.attempts.slice(from).some((x) => forDevice(a2)(x.req)));
    const v = a.open(p.attempts.slice(from).find((x) => forDevice(a2)(x.req))!.req.data);
    assert.ok(v.kind === 'verification');
    await a.client.verifyToken(a.tokenId, a.tknAuth.privateKey, v.code);
    // refused commands
    await a.client.verifyToken(a.tokenId, a.tknAuth.privateKey, crypto.randomBytes(32)).catch(() => {});
    await a.client.checkToken(crypto.randomBytes(24), a.tknAuth.privateKey).catch(() => {});
    await a.client.checkSubscription(subs[0]!, b.tknAuth.privateKey).catch(() => {});
    await a.subscribe('not an address', crypto.randomBytes(24), deadKey).catch(() => {});
    // a few reconnection attempts to the dead relay, each failing (and logged) and scheduling the next
    for (let i = 0; i < 3; i++) {
      await clock.untilPending('a reconnection to the dead relay scheduled');
      clock.advance(RECONNECT_MAX_MS);
    }
    await clock.untilPending('the last reconnection attempt failed');
    assert.ok(events('relay_connect_failed').length >= 4, 'the failed attempts are logged');

    // what the recipients hold, and what GET returns: never at the NTF server
    for (const [i, q] of queues.entries()) {
      const rs = out.recipientSecrets;
      rs.push({ name: `q${i} rcvId`, bytes: q.rcvId }, { name: `q${i} sndId`, bytes: q.sndId });
      rs.push({ name: `q${i} rcvDhSecret`, bytes: q.rcvDhSecret }, { name: `q${i} rcvAuth`, bytes: q.rcvAuth.privateKey });
      rs.push({ name: `q${i} rcvAuth pub`, bytes: q.rcvAuth.publicKey }, { name: `q${i} rcvDh`, bytes: q.rcvDh.privateKey });
      rs.push({ name: `q${i} rcvNtfDhSecret`, bytes: q.ntf!.rcvNtfDhSecret }, { name: `q${i} rcvNtfDh`, bytes: q.ntf!.dh.privateKey });
      for (;;) {
        const m = await ctx.rc.get(q.rcvId, q.rcvAuth.privateKey);
        if (!m) break;
        rs.push({ name: `q${i} msgId`, bytes: m.msgId });
        const plain = crypto.open(q.rcvDhSecret, m.msgId, m.sealed)!;
        rs.push({ name: `q${i} body`, bytes: plain.subarray(9) });
        await ctx.rc.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      }
      out.logSecrets.push({ name: `q${i} notifierId`, bytes: q.ntf!.notifierId }, { name: `q${i} ntfAuthKey`, bytes: q.ntf!.auth.privateKey });
      out.logSecrets.push({ name: `q${i} ntfAuthKey pub`, bytes: q.ntf!.auth.publicKey });
    }
    assert.ok(out.recipientSecrets.filter((s) => s.name.endsWith('msgId')).length >= 15, 'the messages were there to find');
    for (const [i, d] of devices.entries()) {
      const ls = out.logSecrets;
      ls.push({ name: `d${i} device token`, bytes: d.device.token }, { name: `d${i} tokenId`, bytes: d.tokenId });
      ls.push({ name: `d${i} tknAuth`, bytes: d.tknAuth.privateKey }, { name: `d${i} tknAuth pub`, bytes: d.tknAuth.publicKey });
      ls.push({ name: `d${i} tknDh`, bytes: d.tknDh.privateKey }, { name: `d${i} tknDh pub`, bytes: d.tknDh.publicKey });
      ls.push({ name: `d${i} srvDhKey`, bytes: d.srvDhKey }, { name: `d${i} tknDhSecret`, bytes: d.secret }, { name: `d${i} code`, bytes: d.code });
    }
    out.logSecrets.push({ name: 'a2 device token', bytes: tokens.a2 }, { name: 'a code after TRPL', bytes: v.code });
    out.logSecrets.push({ name: 'dead notifierId', bytes: deadNotifier }, { name: 'dead ntfAuthKey', bytes: deadKey });
    for (const [i, s] of subs.entries()) out.logSecrets.push({ name: `sub${i} subId`, bytes: s });
    out.logSecrets.push({ name: 'service key', bytes: ctx.ntf.serviceKey.privateKey }, { name: 'service key pub', bytes: ctx.ntf.serviceKey.publicKey });
    out.logSecrets.push({ name: 'identity key', bytes: ctx.ntf.identity.privateKey });
    out.stored.push({ name: 'qa1 notifierId', bytes: qa1.ntf!.notifierId }, { name: 'a tokenId', bytes: a.tokenId }, { name: 'a2 device token', bytes: tokens.a2 });
  });
  for (const x of p.attempts) {
    const list = out.pushes.get(x.req.kind) ?? [];
    list.push(x.req.data);
    out.pushes.set(x.req.kind, list);
  }
  out.log = logText();
  return out;
}

describe('privacy', () => {
  test('the journal holds no recipient or sender ID, message ID or body of any queue', async () => {
    const dir = tmpDir('hush-ntf-privacy-');
    try {
      const o = await scenario(openJournalNtfStore(dir).store);
      const file = fs.readFileSync(path.join(dir, 'ntf.journal'));
      assert.ok(file.length > 1000, 'the journal was written');
      assert.deepEqual(find(file, o.stored).filter((h) => h.endsWith('(raw)')).length, o.stored.length, 'the search finds what the journal does hold');
      assert.deepEqual(find(file, o.recipientSecrets), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('MemoryNtfStore records hold no recipient or sender ID, message ID or body of any queue', async () => {
    const store = new MemoryNtfStore();
    const records: NtfRecord[] = [];
    store.attach({ append: (r) => records.push(structuredClone(r)), flush() {}, close() {}, failure: () => undefined });
    const o = await scenario(store);
    assert.ok(records.length > 50);
    const all = Buffer.concat([...records, ...store.liveRecords()].flatMap((r) => [Buffer.from(encodeNtfRecord(r)), latin1Bytes(JSON.stringify(r, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v)))]));
    assert.equal(find(all, o.stored).filter((h) => h.endsWith('(raw)')).length, o.stored.length, 'the search finds what the records do hold');
    assert.deepEqual(find(all, o.recipientSecrets), []);
  });

  test('the logs (at trace) hold no device tokens, IDs or keys', async () => {
    const o = await scenario(new MemoryNtfStore());
    const log = Buffer.from(o.log, 'utf8');
    for (const event of ['ntf_started', 'relay_connected', 'relay_connect_failed', 'token_invalid', 'push_failed'])
      assert.ok(o.log.includes(`"event":"${event}"`), `the log has ${event}`);
    assert.deepEqual(find(log, [...o.logSecrets, ...o.recipientSecrets]), []);
  });

  test('verification, message and check pushes carry data of one length', async () => {
    const o = await scenario(new MemoryNtfStore());
    const kinds: PushKind[] = ['verification', 'message', 'check'];
    for (const k of kinds) assert.ok((o.pushes.get(k) ?? []).length > 0, `a ${k} push was sent`);
    const lengths = new Set(kinds.flatMap((k) => o.pushes.get(k)!.map((d) => d.length)));
    assert.deepEqual([...lengths], [PUSH_DATA_SIZE]);
  });

  test('one-entry and sixteen-entry message pushes have the same length, and equal content seals differently', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const queues: Queue[] = [];
      for (let i = 0; i < 16; i++) {
        const q = await ctx.queue();
        await ctx.subscribe(d, q);
        queues.push(q);
      }
      await ctx.rc.send(queues[0]!.sndId, bytes('one'), { notify: true });
      const one = await ctx.ntf.provider.next((r) => r.kind === 'message');
      for (const q of queues.slice(1)) await ctx.rc.send(q.sndId, bytes('many'), { notify: true });
      await until('a sixteen-entry push', () => ctx.ntf.provider.delivered.some((r) => r.kind === 'message' && (openPush(crypto, d.secret, r.data) as { entries?: unknown[] }).entries?.length === 16));
      const sixteen = ctx.ntf.provider.delivered.find((r) => r.kind === 'message' && (openPush(crypto, d.secret, r.data) as { entries?: unknown[] }).entries?.length === 16)!;
      assert.equal(one.data.length, PUSH_DATA_SIZE);
      assert.equal(sixteen.data.length, PUSH_DATA_SIZE);
      // the verification push was pushed again by a repeated TNEW: same code, different bytes
      const from = ctx.ntf.provider.attempts.length;
      await d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey);
      await ctx.ntf.provider.waitFor('the repeated verification push', () => ctx.ntf.provider.attempts.length > from);
      const first = ctx.ntf.provider.attempts.find((a) => a.req.kind === 'verification')!.req.data;
      const again = ctx.ntf.provider.attempts[from]!.req.data;
      assert.deepEqual(d.open(first), d.open(again));
      assert.ok(!Buffer.from(first).equals(Buffer.from(again)), 'a fresh nonce each time');
    });
  });
});

describe('constant-time AUTH', () => {
  // As at the relay (test/relay/privacy.test.ts): on fresh sessions, with no
  // warm-up, an unknown token or subscription ID costs the server the same
  // X25519, HMAC and HKDF calls as an existing one with a wrong key.
  test('unknown token and subscription IDs cost what existing ones with a wrong key cost', async () => {
    const counting = countingCrypto(nodeCrypto);
    await withNtf({ crypto: counting }, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      const subId = await ctx.subscribe(d, q);
      const wrong = crypto.x25519KeyPair().privateKey;
      const commands: Array<[NtfCommand, Uint8Array]> = [
        [{ type: 'TVFY', code: d.code }, d.tokenId],
        [{ type: 'TCHK' }, d.tokenId],
        [{ type: 'TRPL', device: { provider: 'test', token: bytes('other device') } }, d.tokenId],
        [{ type: 'TDEL' }, d.tokenId],
        [{ type: 'TCRN', minutes: 30 }, d.tokenId],
        [{ type: 'SNEW', relay: ctx.relay.address, notifierId: crypto.randomBytes(24), ntfAuthKey: wrong }, d.tokenId],
        [{ type: 'SCHK' }, subId],
        [{ type: 'SDEL' }, subId],
      ];
      /** What a fresh session costs the server: its handshake and one AUTH-failing command per ID. */
      const cost = async (command: NtfCommand, ids: Uint8Array[]) => {
        const before = { ...counting.counts };
        const c = await ctx.ntf.client();
        for (const id of ids) assert.deepEqual(await raw(c, id, encodeCommand(command), wrong), { type: 'ERR', error: 'AUTH' });
        c.close();
        return counting.since(before);
      };
      const randomId = () => crypto.randomBytes(ID_LENGTH);
      for (const [command, real] of commands) {
        const a = randomId();
        const unknown = await cost(command, [a, randomId()]);
        assert.ok(unknown.x25519 >= 3 && unknown.hmac >= 2, `${command.type}: the commands did the work (${JSON.stringify(unknown)})`);
        assert.deepEqual(await cost(command, [a, real]), unknown, `${command.type}: [unknown, existing] vs [unknown, unknown]`);
        assert.deepEqual(await cost(command, [real, a]), unknown, `${command.type}: [existing, unknown] vs [unknown, unknown]`);
        const many = Array.from({ length: 6 }, randomId);
        const warm = await cost(command, [...many, randomId(), ...many]);
        assert.deepEqual(await cost(command, [...many, real, ...many]), warm, `${command.type}: on a warm session`);
      }
      // Two subscriptions of one token cost what two unknown subscription IDs cost (no shared-key shortcut).
      const subId2 = await ctx.subscribe(d, await ctx.queue());
      assert.deepEqual(await cost({ type: 'SCHK' }, [subId, subId2]), await cost({ type: 'SCHK' }, [randomId(), randomId()]), 'two subscriptions of one token');
      // The wrong-key commands changed nothing.
      await untilSub(d, subId, 'ACTIVE');
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test("the session that made a token verifies its next command without another X25519; another session pays one", async () => {
    const counting = countingCrypto(nodeCrypto);
    await withNtf({ crypto: counting }, async (ctx) => {
      const c = await ctx.ntf.client();
      const d = await device(ctx.ntf, { client: c, verify: false });
      const before = { ...counting.counts };
      await c.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      assert.equal(counting.since(before).x25519, 0, 'TVFY on the TNEW session');
      const other = await ctx.ntf.client();
      const before2 = { ...counting.counts };
      assert.deepEqual(await other.checkToken(d.tokenId, d.tknAuth.privateKey), { status: 'ACTIVE' });
      assert.equal(counting.since(before2).x25519, 2, 'a fresh session: its handshake and one key agreement');
      other.close();
    });
  });
});
