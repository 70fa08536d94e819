// What an anonymous client may make the notification server create, send or
// keep: the TNEW password (never logged), TNEW and SNEW rates per connection and
// per address, the cap on subscriptions per token, verification pushes per
// device token, and the expiry of tokens that are not ACTIVE — all on the
// server's clock, moved by the test; each refusal counted by command and reason.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type pino from 'pino';
import { formatAddress, parseAddress } from '../../src/core/address.ts';
import { NtfCommandError, type NtfClient } from '../../src/ntf/client.ts';
import { loadNtfConfig, ntfConfigSchema, ntfCreation } from '../../src/ntf/config.ts';
import { DEFAULT_NTF_CREATION, type NtfCreation } from '../../src/ntf/creation.ts';
import { decodeCommand, encodeCommand, type NtfCommand } from '../../src/ntf/protocol.ts';
import type { DeviceToken } from '../../src/push/device.ts';
import { apnsToken } from '../../src/sdk/device.ts';
import { crypto , capturedLog } from '../helpers.ts';
import { freePort } from '../process.ts';
import { Phone, startStack } from '../sdk/helpers.ts';
import { device, MANY_CREATIONS, relayCommands, startNtf, TestClock, until, withNtf, type Device, type TestNtf } from './helpers.ts';

const PASSWORD = 'open-Sesame_42';
const PLENTY = { burst: 100_000, perMinute: 100_000 };
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Limits out of the way but for those a test sets. */
const only = (o: Partial<NtfCreation>): Partial<NtfCreation> => ({ ...MANY_CREATIONS, verificationPushes: PLENTY, ...o });

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof NtfCommandError ? e.error : Promise.reject(e)),
  );

const newDevice = (): DeviceToken => ({ provider: 'test', token: crypto.randomBytes(16) });

/** TNEW for `dev` with fresh keys: 'ok' or the error. */
const tnew = (c: NtfClient, dev: DeviceToken = newDevice()) => errorOf(c.registerToken(dev, crypto.x25519KeyPair(), crypto.x25519KeyPair().publicKey));

async function refusals(t: TestNtf): Promise<Record<string, number>> {
  const values = (await t.ntf.metrics.refusals.get()).values;
  return Object.fromEntries(values.map((v) => [`${v.labels.command} ${v.labels.reason}`, v.value]));
}

/** The server's address with `password` in it. */
function withPassword(address: string, password: string): string {
  const a = parseAddress(address);
  assert.ok(a.ok);
  return formatAddress({ ...a.value, password });
}

/** A relay address nobody listens at: SNEW takes it, the server's link to it just keeps retrying. */
const deadRelay = async () => formatAddress({ fingerprint: crypto.randomBytes(32), host: '127.0.0.1', port: await freePort(), tls: false });

/** SNEW for `d`'s token of a new queue, on `c` (default: the device's connection): 'ok' or the error. */
const snew = (d: Device, relay: string, c = d.client) =>
  errorOf(c.createSubscription(d.tokenId, d.tknAuth.privateKey, relay, crypto.randomBytes(24), crypto.randomBytes(32)));

async function withServer(creation: Partial<NtfCreation>, fn: (t: TestNtf, clock: TestClock) => Promise<void>, log?: pino.Logger) {
  const clock = new TestClock();
  const t = await startNtf({ creation, clock, ...(log ? { log } : {}) });
  try {
    await fn(t, clock);
  } finally {
    await t.stop();
  }
}

describe('creation password', () => {
  test('TNEW without it or with a wrong one is PASSWORD, nothing made or pushed; with it, IDTKN; never logged', async () => {
    const { log, text: logs } = capturedLog();
    await withServer(
      only({ tokens: { password: PASSWORD, perConnection: PLENTY, perAddress: PLENTY } }),
      async (t) => {
        assert.equal(await tnew(await t.client()), 'PASSWORD');
        assert.equal(await tnew(await t.client(withPassword(t.address, 'open-sesame_42'))), 'PASSWORD', 'case matters');
        assert.equal(await tnew(await t.client(withPassword(t.address, `${PASSWORD}x`))), 'PASSWORD');
        assert.equal(Object.values(t.ntf.store.counts().tokens).reduce((a, b) => a + b), 0);
        assert.equal(t.provider.attempts.length, 0, 'no verification push');
        // With it: the whole life of a token; only TNEW needs it.
        const c = await t.client(withPassword(t.address, PASSWORD));
        const d = await device(t, { client: c });
        assert.equal(await snew(d, await deadRelay()), 'ok');
        assert.deepEqual(await refusals(t), { 'TNEW password': 3 });
      },
      log,
    );
    assert.ok(logs().length > 0, 'the server logged');
    for (const secret of [PASSWORD, 'open-sesame_42']) assert.ok(!logs().includes(secret), 'no password in the log');
  });

  test('TNEW carries the password as an optional trailing field; empty is refused', () => {
    const base: NtfCommand = { type: 'TNEW', device: newDevice(), tknAuthKey: crypto.randomBytes(32), tknDhKey: crypto.randomBytes(32) };
    const withIt = { ...base, password: new TextEncoder().encode(PASSWORD) };
    assert.deepEqual(decodeCommand(encodeCommand(withIt)), { ok: true, value: withIt });
    assert.deepEqual(decodeCommand(encodeCommand(base)), { ok: true, value: base });
    const empty = encodeCommand(base);
    const padded = new Uint8Array(empty.length + 1); // short(""): a zero length byte
    padded.set(empty);
    assert.equal(decodeCommand(padded).ok, false);
  });
});

test('the SDK sends the password its ntfServer address carries; a new password for the same server keeps the token', async (t) => {
  const stack = await startStack(t, { ntf: { creation: { tokens: { ...DEFAULT_NTF_CREATION.tokens, password: PASSWORD } } } });
  const eve = await Phone.create(t, stack, 'Eve');
  assert.equal(await errorOf(eve.client.registerDevice(apnsToken(eve.token))), 'PASSWORD');
  const bob = await Phone.create(t, stack, 'Bob', { ntfServer: withPassword(stack.ntf.address, PASSWORD) });
  // As Phone.register(), with the device token as a plain Uint8Array (what the store keeps as given).
  const token = apnsToken(bob.token.toString('hex'));
  await bob.client.registerDevice(token);
  await bob.client.handlePush((await bob.nextPush('the verification push')).payload);
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE');
  const tokens = () => stack.ntf.ntf.store.counts().tokens;
  const before = tokens();
  // The app is given the address with another password (the operator changed it): TNEW would be refused now.
  await bob.reopen({ ntfServer: withPassword(stack.ntf.address, 'changed-password') });
  await bob.client.registerDevice(token);
  await bob.client.checkNotifications();
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE');
  assert.deepEqual(tokens(), before, 'the same token, not deleted and made again');
});

describe('TNEW rate limits', () => {
  test('per connection: its burst, then RATE until the clock refills it; other connections go on', () =>
    withServer(only({ tokens: { perConnection: { burst: 3, perMinute: 1 }, perAddress: PLENTY } }), async (t, clock) => {
      const c = await t.client();
      assert.deepEqual([await tnew(c), await tnew(c), await tnew(c), await tnew(c)], ['ok', 'ok', 'ok', 'RATE']);
      assert.equal(await tnew(await t.client()), 'ok', 'a new connection has its own budget');
      clock.advance(MIN - 1);
      assert.equal(await tnew(c), 'RATE');
      clock.advance(1);
      assert.deepEqual([await tnew(c), await tnew(c)], ['ok', 'RATE'], 'one a minute');
      assert.deepEqual(await refusals(t), { 'TNEW rate_connection': 3 });
    }));

  test('per address: shared by every connection from it', () =>
    withServer(only({ tokens: { perConnection: PLENTY, perAddress: { burst: 4, perMinute: 2 } } }), async (t, clock) => {
      const results = [];
      for (let i = 0; i < 6; i++) results.push(await tnew(await t.client()));
      assert.deepEqual(results, ['ok', 'ok', 'ok', 'ok', 'RATE', 'RATE']);
      clock.advance(MIN);
      assert.deepEqual([await tnew(await t.client()), await tnew(await t.client()), await tnew(await t.client())], ['ok', 'ok', 'RATE']);
      assert.deepEqual(await refusals(t), { 'TNEW rate_address': 3 });
    }));
});

describe('SNEW', () => {
  test('the defaults take a reinstalled messenger subscribing 2000 contacts at once on one connection', () =>
    withServer({}, async (t) => {
      const d = await device(t);
      const relay = await deadRelay();
      const results = await Promise.all(Array.from({ length: 2000 }, () => snew(d, relay)));
      assert.deepEqual(new Set(results), new Set(['ok']));
      assert.equal(t.ntf.store.subscriptionCount(Buffer.from(d.tokenId).toString('latin1')), 2000);
    }));

  test('rates per connection and per address: RATE, checked before the token is looked up', () =>
    withServer(only({ subscriptions: { perConnection: { burst: 3, perMinute: 1 }, perAddress: { burst: 5, perMinute: 1 } } }), async (t, clock) => {
      const relay = await deadRelay();
      const d = await device(t);
      assert.deepEqual([await snew(d, relay), await snew(d, relay), await snew(d, relay), await snew(d, relay)], ['ok', 'ok', 'ok', 'RATE']);
      // Another connection from the same address: 2 of the address's 5 left. An unknown token counts too.
      const c = await t.client();
      const unknown = errorOf(c.createSubscription(crypto.randomBytes(24), crypto.randomBytes(32), relay, crypto.randomBytes(24), crypto.randomBytes(32)));
      assert.equal(await unknown, 'AUTH');
      assert.deepEqual([await snew(d, relay, c), await snew(d, relay, c)], ['ok', 'RATE']);
      clock.advance(MIN);
      assert.equal(await snew(d, relay, c), 'ok');
      assert.deepEqual(await refusals(t), { 'SNEW rate_connection': 1, 'SNEW rate_address': 1 });
    }));

  test('subscriptions per token: past the cap QUOTA; a repeated SNEW still answers; SDEL makes room', () =>
    withServer(only({ maxSubscriptionsPerToken: 3 }), async (t) => {
      const relay = await deadRelay();
      const d = await device(t);
      const n1 = crypto.randomBytes(24);
      const k1 = crypto.randomBytes(32);
      const first = await d.subscribe(relay, n1, k1);
      assert.deepEqual([await snew(d, relay), await snew(d, relay), await snew(d, relay)], ['ok', 'ok', 'QUOTA']);
      assert.deepEqual(await d.subscribe(relay, n1, k1), first, 'the same subscription, not a new one');
      assert.equal(await snew(await device(t), relay), 'ok', 'another token has its own');
      await d.client.deleteSubscription(first, d.tknAuth.privateKey);
      assert.deepEqual([await snew(d, relay), await snew(d, relay)], ['ok', 'QUOTA']);
      assert.deepEqual(await refusals(t), { 'SNEW subscriptions_per_token': 2 });
    }));
});

describe('verification pushes per device token', () => {
  test('past the limit TNEW, repeated TNEW and TRPL are RATE with no push and no change; the clock refills it', () =>
    withServer(only({ verificationPushes: { burst: 2, perMinute: 1 } }), async (t, clock) => {
      const p = t.provider;
      const d = await device(t, { verify: false }); // push 1
      const again = () => errorOf(d.client.registerToken(d.device, d.tknAuth, d.tknDh.publicKey));
      assert.equal(await again(), 'ok'); // push 2
      await until('both pushes', () => p.attempts.length === 2);
      const before = t.ntf.store.counts().tokens;
      assert.equal(await again(), 'RATE', 'a repeated TNEW');
      assert.equal(await tnew(await t.client(), d.device), 'RATE', 'a new token for the same device token');
      const other = await device(t);
      const sent = p.attempts.length;
      assert.equal(await errorOf(other.client.replaceToken(other.tokenId, other.tknAuth.privateKey, d.device)), 'RATE', 'TRPL to it');
      assert.deepEqual(await other.check(), { status: 'ACTIVE' }, 'the refused TRPL changed nothing');
      assert.deepEqual(t.ntf.store.counts().tokens, { ...before, ACTIVE: before.ACTIVE + 1 }, 'no token made');
      assert.equal(p.attempts.length, sent, 'no push');
      clock.advance(MIN);
      assert.equal(await again(), 'ok');
      await until('the third push', () => p.attempts.filter((a) => Buffer.from(a.req.device.token).equals(Buffer.from(d.device.token))).length === 3);
      assert.deepEqual(await refusals(t), { 'TNEW verification_pushes': 2, 'TRPL verification_pushes': 1 });
    }));
});

describe('token expiry', () => {
  test('never verified: deleted a day after its last status change; ACTIVE ones stay; a TNEW after that makes a new token', () =>
    withServer({}, async (t, clock) => {
      const unverified = await device(t, { verify: false });
      await until('CONFIRMED', async () => (await unverified.check()).status === 'CONFIRMED');
      const active = await device(t);
      clock.advance(DAY - 1);
      t.ntf.runCron();
      assert.equal((await unverified.check()).status, 'CONFIRMED', 'not yet');
      clock.advance(MIN);
      t.ntf.runCron();
      assert.equal(await errorOf(unverified.check()), 'AUTH', 'gone');
      assert.deepEqual(await active.check(), { status: 'ACTIVE' });
      const { tokenId } = await unverified.client.registerToken(unverified.device, unverified.tknAuth, unverified.tknDh.publicKey);
      assert.notDeepEqual(tokenId, unverified.tokenId);
      const expired = (await t.ntf.metrics.tokensExpired.get()).values;
      assert.deepEqual(expired.map((v) => [v.labels.kind, v.value]), [['unverified', 1]]);
    }));

  test('verified, then INVALID: kept 30 days for the app to come back, then deleted with its subscriptions (the relay told)', async () => {
    const clock = new TestClock();
    await withNtf({ clock }, async (ctx) => {
      const t = ctx.ntf;
      const d = await device(t);
      await ctx.subscribe(d, await ctx.queue());
      // A check push the provider answers "unregistered" (the app was removed).
      t.provider.respond = () => ({ outcome: 'invalid', reason: 'UNREGISTERED' });
      await d.client.setCron(d.tokenId, d.tknAuth.privateKey, 20);
      clock.advance(20 * MIN);
      t.ntf.runCron();
      await until('INVALID', async () => (await d.check()).status === 'INVALID');
      clock.advance(30 * DAY - 1);
      t.ntf.runCron();
      assert.equal((await d.check()).status, 'INVALID', 'not yet');
      assert.equal(await relayCommands(ctx.relay.server.metrics, 'NUNS'), 0);
      clock.advance(MIN);
      t.ntf.runCron();
      assert.equal(await errorOf(d.check()), 'AUTH', 'gone');
      assert.equal(t.ntf.store.counts().subscriptions.ACTIVE, 0);
      await until('the relay told', async () => (await relayCommands(ctx.relay.server.metrics, 'NUNS')) === 1);
      const expired = (await t.ntf.metrics.tokensExpired.get()).values;
      assert.deepEqual(expired.map((v) => [v.labels.kind, v.value]), [['inactive', 1]]);
    });
  });
});

test('ntf.json creation: the defaults are DEFAULT_NTF_CREATION; each setting, and the env variables, reach the server options', () => {
  assert.deepEqual(ntfCreation(ntfConfigSchema.parse({}).creation), DEFAULT_NTF_CREATION);
  const c = ntfConfigSchema.parse({
    creation: {
      password: PASSWORD,
      perConnectionBurst: 2,
      perConnectionPerHour: 120,
      perAddressBurst: 3,
      perAddressPerHour: 180,
      subscriptions: { perConnectionBurst: 4, perConnectionPerHour: 240, perAddressBurst: 5, perAddressPerHour: 300, maxPerToken: 6 },
      verificationPushesBurst: 7,
      verificationPushesPerHour: 6,
      unverifiedTokenHours: 8,
      inactiveTokenDays: 9,
    },
  });
  assert.deepEqual(ntfCreation(c.creation), {
    tokens: { password: PASSWORD, perConnection: { burst: 2, perMinute: 2 }, perAddress: { burst: 3, perMinute: 3 } },
    subscriptions: { perConnection: { burst: 4, perMinute: 4 }, perAddress: { burst: 5, perMinute: 5 } },
    maxSubscriptionsPerToken: 6,
    verificationPushes: { burst: 7, perMinute: 0.1 },
    unverifiedTokenMs: 8 * HOUR,
    inactiveTokenMs: 9 * DAY,
  });
  const env = ntfCreation(
    loadNtfConfig('/nonexistent/hush-ntf', {
      HUSH_NTF_CREATION_PASSWORD: PASSWORD,
      HUSH_NTF_CREATION_PER_CONNECTION_BURST: '11',
      HUSH_NTF_CREATION_PER_ADDRESS_PER_HOUR: '120',
      HUSH_NTF_MAX_SUBSCRIPTIONS_PER_TOKEN: '12',
      HUSH_NTF_UNVERIFIED_TOKEN_HOURS: '13',
      HUSH_NTF_INACTIVE_TOKEN_DAYS: '14',
    }).creation,
  );
  assert.deepEqual(env, {
    ...DEFAULT_NTF_CREATION,
    tokens: { password: PASSWORD, perConnection: { burst: 11, perMinute: 1 }, perAddress: { burst: 50, perMinute: 2 } },
    maxSubscriptionsPerToken: 12,
    unverifiedTokenMs: 13 * HOUR,
    inactiveTokenMs: 14 * DAY,
  });
  assert.equal(ntfConfigSchema.safeParse({ creation: { password: 'has space' } }).success, false);
  assert.equal(ntfConfigSchema.safeParse({ creation: { subscriptions: { password: PASSWORD } } }).success, false, 'SNEW takes no password');
});
