// Every NTF command over a real in-process notification server (and an
// in-process relay for subscriptions): the happy path and each error.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { Encoder } from '../../src/core/encoding.ts';
import type { NtfClient } from '../../src/ntf/client.ts';
import { encodeCommand, type NtfCommand, type NtfResponse } from '../../src/ntf/protocol.ts';
import { openPush } from '../../src/ntf/payload.ts';
import { PUSH_DATA_SIZE } from '../../src/push/device.ts';
import { openMeta } from '../../src/relay/client.ts';
import { bytes, connect, crypto, journalStore, newQueue, SMALL_ORDER_KEYS, startRelay, tmpDir, type TestClient } from '../helpers.ts';
import {
  CaptureProvider,
  device,
  forDevice,
  hex,
  raw,
  rejectsWith,
  sameBytes,
  startNtf,
  TestClock,
  untilSub,
  withNtf,
  type Device,
  type TestNtf,
} from './helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

const EMPTY = new Uint8Array(0);
const MIN = 60_000;

const kp = () => crypto.x25519KeyPair();
const cmd = (c: NtfCommand) => encodeCommand(c);

async function rawError(c: NtfClient, entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array) {
  const r: NtfResponse = await raw(c, entityId, command, authKey);
  assert.equal(r.type, 'ERR', `expected ERR, got ${r.type}`);
  return r.type === 'ERR' ? r.error : undefined;
}

/** Verification pushes sent to a device token since attempt index `from`, opened with `secret`. */
function verificationCodes(p: CaptureProvider, dev: Device['device'], secret: Uint8Array, from = 0): Uint8Array[] {
  return p.attempts.slice(from).flatMap((a) => {
    if (!forDevice(dev)(a.req) || a.req.kind !== 'verification') return [];
    const c = openPush(crypto, secret, a.req.data);
    assert.equal(c?.kind, 'verification');
    return c?.kind === 'verification' ? [c.code] : [];
  });
}

const tokenTotal = (t: TestNtf) => Object.values(t.ntf.store.counts().tokens).reduce((a, b) => a + b, 0);

describe('TNEW', () => {
  test('IDTKN; the verification push opens to a 32-byte code; REGISTERED, then CONFIRMED once delivered', async () => {
    await withNtf({}, async ({ ntf }) => {
      const p = ntf.provider;
      p.hold();
      const c = await ntf.client();
      const dev = { provider: 'test' as const, token: bytes('tnew-device') };
      const auth = kp();
      const dh = kp();
      const { tokenId, srvDhKey } = await c.registerToken(dev, auth, dh.publicKey);
      assert.equal(tokenId.length, 24);
      assert.equal(srvDhKey.length, 32);
      await p.waitFor('the verification push', () => p.attempts.length === 1);
      const req = p.attempts[0]!.req;
      assert.equal(req.kind, 'verification');
      assert.equal(req.device.provider, 'test');
      assert.ok(sameBytes(req.device.token, dev.token), 'pushed to the registered device token');
      assert.equal(req.data.length, PUSH_DATA_SIZE);
      const secret = sharedKey(crypto, dh.privateKey, srvDhKey, 'ntf token')!;
      const v = openPush(crypto, secret, req.data);
      assert.equal(v?.kind, 'verification');
      assert.equal(v.kind === 'verification' && v.code.length, 32);
      assert.equal(openPush(crypto, crypto.randomBytes(32), req.data), undefined, 'another secret does not open it');
      // the push is still with the provider: REGISTERED
      assert.deepEqual(await c.checkToken(tokenId, auth.privateKey), { status: 'REGISTERED' });
      p.release();
      await ntf.ntf.dispatcher.idle();
      assert.deepEqual(await c.checkToken(tokenId, auth.privateKey), { status: 'CONFIRMED' });
      await c.verifyToken(tokenId, auth.privateKey, v.kind === 'verification' ? v.code : EMPTY);
      assert.deepEqual(await c.checkToken(tokenId, auth.privateKey), { status: 'ACTIVE' });
    });
  });

  test('TVFY before the provider accepted the push: ACTIVE, and the late delivery does not demote it', async () => {
    await withNtf({}, async ({ ntf }) => {
      const p = ntf.provider;
      p.hold();
      const d = await device(ntf, { verify: false });
      assert.deepEqual(await d.check(), { status: 'REGISTERED' });
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      p.release();
      await ntf.ntf.dispatcher.idle(); // the delivery settled
      assert.equal(p.attempts.filter((a) => a.result?.outcome === 'delivered').length, 1);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test('a repeated TNEW is idempotent: same token ID and server key, the same code pushed again', async () => {
    await withNtf({}, async ({ ntf }) => {
      const p = ntf.provider;
      const d = await device(ntf, { verify: false });
      await ntf.ntf.dispatcher.idle();
      assert.deepEqual(await d.check(), { status: 'CONFIRMED' });
      const from = p.attempts.length;
      const again = await d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey);
      assert.deepEqual(again.tokenId, d.tokenId);
      assert.deepEqual(again.srvDhKey, d.srvDhKey);
      await p.waitFor('a second verification push', () => verificationCodes(p, d.device, d.secret, from).length === 1);
      assert.deepEqual(verificationCodes(p, d.device, d.secret, from)[0], d.code, 'the same code');
      assert.equal(tokenTotal(ntf), 1, 'no second token');
      // once ACTIVE, a repeat still answers the same IDs and leaves it ACTIVE
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      const third = await d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey);
      assert.deepEqual(third.tokenId, d.tokenId);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      // the same device token with another auth key is another token
      const other = await d.client.registerToken(d.device, kp(), kp().publicKey);
      assert.ok(!sameBytes(other.tokenId, d.tokenId));
      assert.equal(tokenTotal(ntf), 2);
    });
  });

  test('a repeated TNEW with another tknDhKey is AUTH', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf);
      await rejectsWith(d.client.registerToken(d.device, d.tknAuth, kp().publicKey), 'AUTH');
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      assert.equal(tokenTotal(ntf), 1);
    });
  });

  test('a repeated TNEW after INVALID pushes a new code and makes the token REGISTERED', async () => {
    await withNtf({}, async ({ ntf }) => {
      const p = ntf.provider;
      p.respond = () => ({ outcome: 'invalid', reason: 'BAD' });
      const d = await device(ntf, { verify: false });
      await ntf.ntf.dispatcher.idle();
      assert.deepEqual(await d.check(), { status: 'INVALID', reason: 'BAD' });
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code), 'AUTH');
      p.respond = () => ({ outcome: 'delivered' });
      p.hold();
      const from = p.attempts.length;
      const again = await d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey);
      assert.deepEqual(again.tokenId, d.tokenId);
      assert.deepEqual(await d.check(), { status: 'REGISTERED' });
      await p.waitFor('the new verification push', () => verificationCodes(p, d.device, d.secret, from).length === 1);
      const code = verificationCodes(p, d.device, d.secret, from)[0]!;
      assert.ok(!sameBytes(code, d.code), 'a new code');
      p.release();
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code), 'AUTH');
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, code);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test('NO_PROVIDER for a provider the server is not configured for', async () => {
    await withNtf({}, async ({ ntf }) => {
      const c = await ntf.client();
      for (const provider of ['fcm', 'apns', 'apns-sandbox', 'webpush'] as const)
        await rejectsWith(c.registerToken({ provider, token: bytes('t') }, kp(), kp().publicKey), 'NO_PROVIDER');
      assert.equal(tokenTotal(ntf), 0);
      assert.equal(ntf.provider.attempts.length, 0);
    });
  });

  test('HAS_ENTITY, NO_AUTH, and AUTH for an authenticator of another key', async () => {
    await withNtf({}, async ({ ntf }) => {
      const c = await ntf.client();
      const auth = kp();
      const tnew = cmd({ type: 'TNEW', device: { provider: 'test', token: bytes('x') }, tknAuthKey: auth.publicKey, tknDhKey: kp().publicKey });
      assert.equal(await rawError(c, crypto.randomBytes(24), tnew, auth.privateKey), 'HAS_ENTITY');
      assert.equal(await rawError(c, EMPTY, tnew), 'NO_AUTH');
      assert.equal(await rawError(c, EMPTY, tnew, kp().privateKey), 'AUTH');
      assert.equal(tokenTotal(ntf), 0, 'no token made by a refused TNEW');
      assert.equal((await raw(c, EMPTY, tnew, auth.privateKey)).type, 'IDTKN');
    });
  });

  test('SYNTAX for malformed fields', async () => {
    await withNtf({}, async ({ ntf }) => {
      const c = await ntf.client();
      const auth = kp();
      // a 31-byte DH key
      const bad = new Encoder(128).tag('TNEW').tag('test').long(bytes('x')).short(auth.publicKey).short(new Uint8Array(31)).done();
      assert.equal(await rawError(c, EMPTY, bad, auth.privateKey), 'SYNTAX');
      // an empty device token
      const empty = new Encoder(128).tag('TNEW').tag('test').long(EMPTY).short(auth.publicKey).short(kp().publicKey).done();
      assert.equal(await rawError(c, EMPTY, empty, auth.privateKey), 'SYNTAX');
      assert.equal(tokenTotal(ntf), 0);
    });
  });

  test('KEY for a token key or DH key of small order, and no token is made', async () => {
    await withNtf({}, async ({ ntf }) => {
      const c = await ntf.client();
      const auth = kp();
      const tnew = (tknAuthKey: Uint8Array, tknDhKey: Uint8Array) => cmd({ type: 'TNEW', device: { provider: 'test', token: bytes('z') }, tknAuthKey, tknDhKey });
      for (const weak of SMALL_ORDER_KEYS) {
        assert.equal(await rawError(c, EMPTY, tnew(auth.publicKey, weak), auth.privateKey), 'KEY');
        assert.equal(await rawError(c, EMPTY, tnew(weak, kp().publicKey), auth.privateKey), 'KEY');
      }
      assert.equal(tokenTotal(ntf), 0);
      assert.equal(ntf.provider.attempts.length, 0, 'no verification push');
    });
  });
});

describe('TVFY, TCHK', () => {
  test('TVFY with the pushed code: ACTIVE; a wrong code or another token\'s code: AUTH', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf, { verify: false });
      const e = await device(ntf, { verify: false });
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, crypto.randomBytes(32)), 'AUTH');
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, e.code), 'AUTH');
      assert.notEqual((await d.check()).status, 'ACTIVE');
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      // again from ACTIVE: OK
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      // a 31-byte code is SYNTAX
      assert.equal(await rawError(d.client, d.tokenId, new Encoder(64).tag('TVFY').short(new Uint8Array(31)).done(), d.tknAuth.privateKey), 'SYNTAX');
      assert.notEqual((await e.check()).status, 'ACTIVE');
    });
  });

  test('TCHK: the status; an unknown token ID and a wrong key are both AUTH; NO_ENTITY, NO_AUTH', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf);
      const e = await device(ntf);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      await rejectsWith(d.client.checkToken(crypto.randomBytes(24), d.tknAuth.privateKey), 'AUTH');
      await rejectsWith(d.client.checkToken(d.tokenId, e.tknAuth.privateKey), 'AUTH');
      assert.equal(await rawError(d.client, EMPTY, cmd({ type: 'TCHK' }), d.tknAuth.privateKey), 'NO_ENTITY');
      assert.equal(await rawError(d.client, d.tokenId, cmd({ type: 'TCHK' })), 'NO_AUTH');
    });
  });
});

describe('TRPL', () => {
  test('REGISTERED, a new code pushed to the new device token, the old code refused, TVFY again: ACTIVE', async () => {
    await withNtf({}, async ({ ntf }) => {
      const p = ntf.provider;
      const d = await device(ntf);
      const newDev = { provider: 'test' as const, token: bytes('the-new-device-token') };
      p.hold();
      const from = p.attempts.length;
      await d.client.replaceToken(d.tokenId, d.tknAuth.privateKey, newDev);
      assert.deepEqual(await d.check(), { status: 'REGISTERED' });
      await p.waitFor('the verification push to the new token', () => verificationCodes(p, newDev, d.secret, from).length === 1);
      assert.equal(verificationCodes(p, d.device, d.secret, from).length, 0, 'nothing pushed to the old device token');
      const code = verificationCodes(p, newDev, d.secret, from)[0]!;
      assert.ok(!sameBytes(code, d.code), 'a new code');
      p.release();
      await ntf.ntf.dispatcher.idle();
      assert.deepEqual(await d.check(), { status: 'CONFIRMED' });
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code), 'AUTH');
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, code);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test('TRPL to an unconfigured provider is NO_PROVIDER and changes nothing', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf);
      const from = ntf.provider.attempts.length;
      await rejectsWith(d.client.replaceToken(d.tokenId, d.tknAuth.privateKey, { provider: 'fcm', token: bytes('f') }), 'NO_PROVIDER');
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      await ntf.ntf.dispatcher.idle();
      assert.equal(ntf.provider.attempts.length, from);
    });
  });

  test('an "invalid" answer about the old device token does not invalidate the replaced one', async () => {
    // A push to the old device token is in flight when the OS rotates the token
    // (TRPL); the provider then rejects the OLD token. That says nothing about the new one.
    await withNtf({}, async (ctx) => {
      const { ntf } = ctx;
      const p = ntf.provider;
      const d = await device(ntf);
      const q = await ctx.queue();
      await ctx.subscribe(d, q);
      p.hold();
      const from = p.attempts.length;
      await ctx.rc.send(q.sndId, bytes('m'), { notify: true });
      await p.waitFor('the message push in flight', () => p.attempts.slice(from).some((a) => a.req.kind === 'message'));
      const newDev = { provider: 'test' as const, token: bytes('rotated-token') };
      await d.client.replaceToken(d.tokenId, d.tknAuth.privateKey, newDev);
      p.respond = (req) => (forDevice(d.device)(req) ? { outcome: 'invalid', reason: 'UNREGISTERED' } : { outcome: 'delivered' });
      p.release();
      await ntf.ntf.dispatcher.idle(); // every answer settled
      assert.ok(p.attempts.some((a) => forDevice(d.device)(a.req) && a.result?.outcome === 'invalid'), 'the old device token was refused');
      const code = verificationCodes(p, newDev, d.secret, from)[0]!;
      assert.ok(code);
      assert.notEqual((await d.check()).status, 'INVALID');
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, code);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test('a push queued with the old provider is not sent there after a TRPL to another provider', async () => {
    const testP = new CaptureProvider(['test']);
    const fcmP = new CaptureProvider(['fcm']);
    await withNtf({ providers: [testP, fcmP], dispatch: { concurrency: 1 } }, async ({ ntf }) => {
      // a real provider calls a token of another provider's kind invalid
      testP.respond = (req) => (req.device.provider === 'test' ? { outcome: 'delivered' } : { outcome: 'invalid', reason: 'BAD' });
      const d = await device(ntf);
      const blocker = await device(ntf);
      testP.hold();
      // the blocker's repeated TNEW takes the one in-flight slot; then d's repeated TNEW waits in the queue
      await blocker.client.registerToken(blocker.device, blocker.tknAuth, blocker.tknDh.publicKey);
      await testP.waitFor('the blocker in flight', () => testP.pending === 1);
      await d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey);
      const fcmDev = { provider: 'fcm' as const, token: bytes('fcm-token') };
      await d.client.replaceToken(d.tokenId, d.tknAuth.privateKey, fcmDev);
      await fcmP.waitFor('the verification push with fcm', () => verificationCodes(fcmP, fcmDev, d.secret).length === 1);
      const from = testP.attempts.length;
      testP.release();
      await ntf.ntf.dispatcher.idle(); // the blocker answered, and d's queued push taken from the queue
      assert.equal(testP.attempts.slice(from).filter((a) => a.req.device.provider === 'fcm').length, 0, 'no fcm token sent to the test provider');
      assert.notEqual((await d.check()).status, 'INVALID');
      await d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, verificationCodes(fcmP, fcmDev, d.secret)[0]!);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });
});

describe('TDEL', () => {
  test('deletes the token and its subscriptions', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const control = await device(ctx.ntf);
      const q = await ctx.queue();
      const qc = await ctx.queue();
      const subId = await ctx.subscribe(d, q);
      await ctx.subscribe(control, qc);
      await d.client.deleteToken(d.tokenId, d.tknAuth.privateKey);
      await rejectsWith(d.check(), 'AUTH');
      await rejectsWith(d.subStatus(subId), 'AUTH');
      await rejectsWith(d.client.deleteSubscription(subId, d.tknAuth.privateKey), 'AUTH');
      await rejectsWith(d.client.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code), 'AUTH');
      await rejectsWith(d.client.deleteToken(d.tokenId, d.tknAuth.privateKey), 'AUTH');
      assert.equal(tokenTotal(ctx.ntf), 1);
      assert.equal([...ctx.ntf.ntf.store.subsOfToken(latin1(d.tokenId))].length, 0, 'no subscription left');
      // a notification for the deleted subscription pushes nothing; the NMSG of the
      // control queue, sent after it on the same relay connection, shows it was processed
      const from = d.provider.attempts.length;
      await ctx.rc.send(q.sndId, bytes('to deleted'), { notify: true });
      await ctx.rc.send(qc.sndId, bytes('to control'), { notify: true });
      await control.nextPush('message');
      await ctx.ntf.ntf.dispatcher.idle();
      assert.equal(d.provider.attempts.slice(from).filter((a) => forDevice(d.device)(a.req)).length, 0);
    });
  });
});

describe('TCRN', () => {
  test('QUOTA for 1..19 minutes, OK for 0 and 20 or more', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf);
      for (let m = 1; m < 20; m++) await rejectsWith(d.client.setCron(d.tokenId, d.tknAuth.privateKey, m), 'QUOTA');
      for (const m of [0, 20, 21, 60, 65535, 0]) await d.client.setCron(d.tokenId, d.tknAuth.privateKey, m);
      await rejectsWith(d.client.setCron(crypto.randomBytes(24), d.tknAuth.privateKey, 20), 'AUTH');
    });
  });

  test('check pushes: none before one interval, one at one interval, the next at two, none when off', async () => {
    const clock = new TestClock(1_700_000_000_000);
    await withNtf({ clock }, async ({ ntf }) => {
      const p = ntf.provider;
      const d = await device(ntf);
      const checks = () => p.attempts.filter((a) => forDevice(d.device)(a.req) && a.req.kind === 'check');
      const cron = async () => {
        ntf.ntf.runCron();
        await ntf.ntf.dispatcher.idle();
      };
      await d.client.setCron(d.tokenId, d.tknAuth.privateKey, 20);
      await cron();
      assert.equal(checks().length, 0, 'not at once');
      clock.advance(20 * MIN - 1);
      await cron();
      assert.equal(checks().length, 0, 'not before one interval');
      clock.advance(1);
      await cron();
      await p.waitFor('a check push', () => checks().length === 1);
      const c = await d.nextPush('check');
      assert.equal(c.kind, 'check');
      await cron();
      assert.equal(checks().length, 1, 'once per interval');
      clock.advance(20 * MIN - 1);
      await cron();
      assert.equal(checks().length, 1, 'not before the second interval');
      clock.advance(1);
      await cron();
      await p.waitFor('the second check push', () => checks().length === 2);
      // off
      await d.client.setCron(d.tokenId, d.tknAuth.privateKey, 0);
      clock.advance(120 * MIN);
      await cron();
      assert.equal(checks().length, 2, 'none once turned off');
      // a new interval counts from the TCRN
      await d.client.setCron(d.tokenId, d.tknAuth.privateKey, 30);
      clock.advance(29 * MIN);
      await cron();
      assert.equal(checks().length, 2);
      clock.advance(MIN);
      await cron();
      await p.waitFor('a check push at 30 minutes', () => checks().length === 3);
    });
  });

  test('no check pushes to tokens that are not ACTIVE', async () => {
    const clock = new TestClock(1_700_000_000_000);
    await withNtf({ clock }, async ({ ntf }) => {
      const p = ntf.provider;
      const registered = await device(ntf, { verify: false });
      const replaced = await device(ntf);
      const active = await device(ntf);
      for (const d of [registered, replaced, active]) await d.client.setCron(d.tokenId, d.tknAuth.privateKey, 20);
      await replaced.client.replaceToken(replaced.tokenId, replaced.tknAuth.privateKey, { provider: 'test', token: bytes('replaced-2') });
      const checksTo = (token: Uint8Array) => p.attempts.filter((a) => sameBytes(a.req.device.token, token) && a.req.kind === 'check').length;
      clock.advance(20 * MIN);
      ntf.ntf.runCron();
      await ntf.ntf.dispatcher.idle();
      assert.equal(checksTo(active.device.token), 1, 'the ACTIVE token\'s check push');
      assert.equal(checksTo(registered.device.token), 0);
      assert.equal(checksTo(replaced.device.token), 0);
      assert.equal(checksTo(bytes('replaced-2')), 0);
      assert.equal(p.attempts.filter((a) => a.req.kind === 'check').length, 1);
    });
  });
});

describe('SNEW', () => {
  test('IDSUB; a repeat is idempotent; another token or another key is AUTH', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const e = await device(ctx.ntf);
      const q = await ctx.queue();
      const a = q.ntf!.auth.privateKey;
      const subId = await d.subscribe(ctx.relay.address, q.ntf!.notifierId, a);
      assert.equal(subId.length, 24);
      assert.deepEqual(await d.subscribe(ctx.relay.address, q.ntf!.notifierId, a), subId);
      await rejectsWith(e.subscribe(ctx.relay.address, q.ntf!.notifierId, a), 'AUTH');
      await rejectsWith(d.subscribe(ctx.relay.address, q.ntf!.notifierId, kp().privateKey), 'AUTH');
      assert.equal(ctx.ntf.ntf.store.counts().subscriptions.PENDING + ctx.ntf.ntf.store.counts().subscriptions.ACTIVE, 1);
      await untilSub(d, subId, 'ACTIVE');
    });
  });

  test('SYNTAX for a relay address that does not parse, or carries a creation password', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      const fp = ctx.relay.address.slice('hush+ws://'.length, 'hush+ws://'.length + 43);
      for (const bad of ['not-an-address', 'hush+ws://short@127.0.0.1:1', `http://${fp}@127.0.0.1:1`, `hush+ws://${fp}@127.0.0.1`, `hush+ws://${fp}@127.0.0.1:99999`, ctx.relay.address.replace('@', ':secret@')])
        await rejectsWith(d.subscribe(bad, q.ntf!.notifierId, q.ntf!.auth.privateKey), 'SYNTAX');
      // a relay address with a non-ASCII byte does not even decode
      const nonAscii = new Encoder(128).tag('SNEW').short(Uint8Array.of(0x68, 0xff)).short(q.ntf!.notifierId).short(q.ntf!.auth.privateKey).done();
      assert.equal(await rawError(d.client, d.tokenId, nonAscii, d.tknAuth.privateKey), 'SYNTAX');
      assert.equal([...ctx.ntf.ntf.store.relays()].length, 0);
    });
  });

  test('AUTH while the token is REGISTERED or CONFIRMED; allowed when INVALID or EXPIRED', async () => {
    await withNtf({}, async (ctx) => {
      const p = ctx.ntf.provider;
      p.hold();
      const registered = await device(ctx.ntf, { verify: false });
      const q = await ctx.queue();
      const snew = (d: Device) => d.subscribe(ctx.relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      assert.deepEqual(await registered.check(), { status: 'REGISTERED' });
      await rejectsWith(snew(registered), 'AUTH');
      p.release();
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(await registered.check(), { status: 'CONFIRMED' });
      await rejectsWith(snew(registered), 'AUTH');

      p.respond = () => ({ outcome: 'invalid', reason: 'TOPIC' });
      const invalid = await device(ctx.ntf, { verify: false });
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(await invalid.check(), { status: 'INVALID', reason: 'TOPIC' });
      assert.equal((await snew(invalid)).length, 24);

      p.respond = () => ({ outcome: 'delivered' });
      const expired = await device(ctx.ntf);
      ctx.ntf.ntf.store.setTokenStatus(latin1(expired.tokenId), { status: 'EXPIRED' }, Date.now());
      const q2 = await ctx.queue();
      assert.equal((await expired.subscribe(ctx.relay.address, q2.ntf!.notifierId, q2.ntf!.auth.privateKey)).length, 24);
    });
  });
});

const latin1 = (b: Uint8Array) => Buffer.from(b).toString('latin1');

describe('SCHK', () => {
  test('NEW/PENDING, then ACTIVE once subscribed at the relay; the push carries its NMSG', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      const subId = await d.subscribe(ctx.relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      assert.ok(['NEW', 'PENDING'].includes(await d.subStatus(subId)));
      await untilSub(d, subId, 'ACTIVE');
      await ctx.rc.send(q.sndId, bytes('m'), { notify: true });
      const push = await d.nextPush('message');
      assert.equal(push.entries.length, 1);
      assert.deepEqual(push.entries[0]!.notifierId, q.ntf!.notifierId);
      const msg = await ctx.rc.get(q.rcvId, q.rcvAuth.privateKey);
      assert.deepEqual(openMeta(crypto, q.ntf!.rcvNtfDhSecret, push.entries[0]!)?.msgId, msg?.msgId);
    });
  });

  test('AUTH when the relay refuses the notifier key', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      const subId = await d.subscribe(ctx.relay.address, q.ntf!.notifierId, kp().privateKey);
      await untilSub(d, subId, 'AUTH');
      // an unknown notifier ID, too
      const subId2 = await d.subscribe(ctx.relay.address, crypto.randomBytes(24), kp().privateKey);
      await untilSub(d, subId2, 'AUTH');
    });
  });

  test('INACTIVE while the relay is down, ACTIVE again after it is back', async () => {
    const dir = tmpDir('hush-ntf-relay-');
    const identity = nodeCrypto.ed25519KeyPair();
    let relay = await startRelay({ store: journalStore(dir), identity });
    const port = Number(relay.address.split(':').at(-1));
    let ntf: TestNtf | undefined;
    const clients: TestClient[] = [];
    try {
      ntf = await startNtf();
      const d = await device(ntf);
      const rc = await connect(relay.address);
      clients.push(rc);
      const q = await newQueue(rc, true);
      const subId = await d.subscribe(relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      await untilSub(d, subId, 'ACTIVE');
      rc.close();
      await relay.stop();
      await untilSub(d, subId, 'INACTIVE');
      assert.equal(ntf.ntf.store.sub(latin1(subId))?.status, 'ACTIVE', 'INACTIVE is reported, not stored');
      relay = await startRelay({ store: journalStore(dir), identity, port });
      await untilSub(d, subId, 'ACTIVE', 10_000);
      const rc2 = await connect(relay.address);
      clients.push(rc2);
      await rc2.send(q.sndId, bytes('after'), { notify: true });
      const push = await d.nextPush('message');
      const msg = await rc2.get(q.rcvId, q.rcvAuth.privateKey);
      assert.deepEqual(openMeta(crypto, q.ntf!.rcvNtfDhSecret, push.entries.at(-1)!)?.msgId, msg?.msgId);
    } finally {
      for (const c of clients) c.close();
      await ntf?.stop();
      await relay.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('END when another notifier NSUBs the queue at the relay', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      const subId = await ctx.subscribe(d, q);
      const other = await ctx.relayClient();
      await other.subscribeNotifier(q.ntf!.notifierId, q.ntf!.auth.privateKey);
      await untilSub(d, subId, 'END');
      // the NMSGs now go to the other notifier, and the device gets no push
      // a control queue's NMSG, sent after it on the same relay link, shows the server had it if it came
      const qc = await ctx.queue();
      await ctx.subscribe(d, qc);
      const from = d.provider.attempts.length;
      await ctx.rc.send(q.sndId, bytes('m'), { notify: true });
      await other.nextEvent('NMSG');
      await ctx.rc.send(qc.sndId, bytes('control'), { notify: true });
      const push = await d.nextPush('message');
      await ctx.ntf.ntf.dispatcher.idle();
      assert.equal(d.provider.attempts.length, from + 1, 'one push: the control queue\'s');
      assert.deepEqual(push.entries.map((e) => hex(e.notifierId)), [hex(qc.ntf!.notifierId)]);
      assert.equal(await d.subStatus(subId), 'END');
    });
  });

  test('DELETED after the recipient NDELs, and after it DELs the queue', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q1 = await ctx.queue();
      const q2 = await ctx.queue();
      const s1 = await ctx.subscribe(d, q1);
      const s2 = await ctx.subscribe(d, q2);
      await ctx.rc.disableNotifications(q1.rcvId, q1.rcvAuth.privateKey);
      await untilSub(d, s1, 'DELETED');
      assert.equal(await d.subStatus(s2), 'ACTIVE');
      await ctx.rc.deleteQueue(q2.rcvId, q2.rcvAuth.privateKey);
      await untilSub(d, s2, 'DELETED');
    });
  });
});

describe('SDEL', () => {
  test('deletes the subscription: SCHK and SDEL then AUTH, and its NMSGs push nothing', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const e = await device(ctx.ntf);
      const q1 = await ctx.queue();
      const q2 = await ctx.queue();
      const s1 = await ctx.subscribe(d, q1);
      await ctx.subscribe(d, q2);
      await rejectsWith(e.client.deleteSubscription(s1, e.tknAuth.privateKey), 'AUTH');
      await d.client.deleteSubscription(s1, d.tknAuth.privateKey);
      await rejectsWith(d.subStatus(s1), 'AUTH');
      await rejectsWith(d.client.deleteSubscription(s1, d.tknAuth.privateKey), 'AUTH');
      const from = d.provider.attempts.length;
      await ctx.rc.send(q1.sndId, bytes('m1'), { notify: true });
      await ctx.rc.send(q2.sndId, bytes('m2'), { notify: true });
      const push = await d.nextPush('message');
      assert.deepEqual(push.entries.map((x) => Buffer.from(x.notifierId).toString('hex')), [Buffer.from(q2.ntf!.notifierId).toString('hex')]);
      await ctx.ntf.ntf.dispatcher.idle();
      assert.equal(d.provider.attempts.slice(from).length, 1, 'one push, for the remaining subscription');
    });
  });
});

describe('PING, unknown entities, unknown commands', () => {
  test('PING: PONG; with an entity HAS_ENTITY; with an authenticator HAS_AUTH', async () => {
    await withNtf({}, async ({ ntf }) => {
      const c = await ntf.client();
      await c.ping();
      assert.equal(await rawError(c, crypto.randomBytes(24), cmd({ type: 'PING' })), 'HAS_ENTITY');
      assert.equal(await rawError(c, EMPTY, cmd({ type: 'PING' }), kp().privateKey), 'HAS_AUTH');
    });
  });

  test('an unknown ID and a wrong key are both AUTH, for every token and subscription command', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const e = await device(ctx.ntf);
      const q = await ctx.queue();
      const subId = await ctx.subscribe(d, q);
      const q2 = await ctx.queue();
      const tokenCommands: NtfCommand[] = [
        { type: 'TVFY', code: d.code },
        { type: 'TCHK' },
        { type: 'TRPL', device: { provider: 'test', token: bytes('r') } },
        { type: 'TCRN', minutes: 20 },
        { type: 'SNEW', relay: ctx.relay.address, notifierId: q2.ntf!.notifierId, ntfAuthKey: q2.ntf!.auth.privateKey },
        { type: 'TDEL' },
      ];
      for (const c of tokenCommands) {
        assert.equal(await rawError(d.client, crypto.randomBytes(24), cmd(c), d.tknAuth.privateKey), 'AUTH', `${c.type}: unknown ID`);
        assert.equal(await rawError(d.client, d.tokenId, cmd(c), e.tknAuth.privateKey), 'AUTH', `${c.type}: wrong key`);
        assert.equal(await rawError(d.client, d.tokenId, cmd(c), kp().privateKey), 'AUTH', `${c.type}: random key`);
        assert.equal(await rawError(d.client, EMPTY, cmd(c), d.tknAuth.privateKey), 'NO_ENTITY', `${c.type}: no entity`);
        assert.equal(await rawError(d.client, d.tokenId, cmd(c)), 'NO_AUTH', `${c.type}: no authenticator`);
      }
      for (const c of [{ type: 'SCHK' }, { type: 'SDEL' }] as NtfCommand[]) {
        assert.equal(await rawError(d.client, crypto.randomBytes(24), cmd(c), d.tknAuth.privateKey), 'AUTH', `${c.type}: unknown ID`);
        assert.equal(await rawError(d.client, subId, cmd(c), e.tknAuth.privateKey), 'AUTH', `${c.type}: wrong key`);
        // a token ID is not a subscription ID
        assert.equal(await rawError(d.client, d.tokenId, cmd(c), d.tknAuth.privateKey), 'AUTH', `${c.type}: a token ID`);
      }
      // nothing changed
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      assert.equal(await d.subStatus(subId), 'ACTIVE');
      assert.equal(ctx.ntf.ntf.store.token(latin1(d.tokenId))?.cronMinutes, 0);
    });
  });

  test('an unknown command is UNKNOWN; a known one with trailing bytes is SYNTAX', async () => {
    await withNtf({}, async ({ ntf }) => {
      const d = await device(ntf);
      assert.equal(await rawError(d.client, EMPTY, new Encoder(8).tag('NOPE').done()), 'UNKNOWN');
      assert.equal(await rawError(d.client, d.tokenId, new Encoder(8).tag('NSUB').done(), d.tknAuth.privateKey), 'UNKNOWN');
      assert.equal(await rawError(d.client, d.tokenId, new Encoder(8).tag('TCHK').u8(0).done(), d.tknAuth.privateKey), 'SYNTAX');
      await d.client.ping();
    });
  });
});
