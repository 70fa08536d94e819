// Who may NEW: the creation password (missing, wrong, right; never logged),
// and the rate limits per connection and per address, refilled by the relay's
// clock; each refusal counted by reason.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAddress, formatAddress } from '../../src/core/address.ts';
import { loadRelayConfig } from '../../src/relay/config.ts';
import { RelayCommandError } from '../../src/relay/client.ts';
import { decodeCommand, encodeCommand, type RelayCommand } from '../../src/relay/protocol.ts';
import type { CreationPolicy } from '../../src/server/creation.ts';
import { ConfigError } from '../../src/server/config.ts';
import { bytes, connect, crypto, newQueue, startRelay, tmpDir, type TestClient, type TestRelay , capturedLog } from '../helpers.ts';

const PASSWORD = 'open-Sesame_42';
const PLENTY = { burst: 1000, perMinute: 1000 };

/** A relay on a clock the test moves; `open(password?)` connects with or without a password in the address. */
async function withRelay(
  creation: Partial<CreationPolicy>,
  fn: (r: { relay: TestRelay; open: (password?: string) => Promise<TestClient>; tick: (ms: number) => void; logs: () => string }) => Promise<void>,
): Promise<void> {
  let t = 1_000_000;
  const { log, text: logs } = capturedLog();
  const relay = await startRelay({ creation, now: () => t, log });
  const clients: TestClient[] = [];
  const open = async (password?: string) => {
    const a = parseAddress(relay.address);
    assert.ok(a.ok);
    const c = await connect(formatAddress({ ...a.value, ...(password !== undefined ? { password } : {}) }));
    clients.push(c);
    return c;
  };
  try {
    await fn({ relay, open, tick: (ms) => (t += ms), logs });
  } finally {
    for (const c of clients) c.close();
    await relay.stop();
  }
}

const errorOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof RelayCommandError ? e.error : Promise.reject(e)),
  );

/** NEW `n` times in a row on `c`: 'ok' or the error of each. */
async function creations(c: TestClient, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await errorOf(newQueue(c)));
  return out;
}

async function refused(relay: TestRelay): Promise<Record<string, number>> {
  const values = (await relay.server.metrics.creationsRefused.get()).values;
  return Object.fromEntries(values.map((v) => [v.labels.reason, v.value]));
}

describe('creation password', () => {
  test('NEW without it or with a wrong one is PASSWORD; with it, IDS; the password is never logged', () =>
    withRelay({ password: PASSWORD, perConnection: PLENTY, perAddress: PLENTY }, async ({ relay, open, logs }) => {
      assert.equal(await errorOf(newQueue(await open())), 'PASSWORD');
      assert.equal(await errorOf(newQueue(await open('open-sesame_42'))), 'PASSWORD', 'case matters');
      assert.equal(await errorOf(newQueue(await open(PASSWORD + 'x'))), 'PASSWORD', 'a longer one is wrong too');
      const right = await open(PASSWORD);
      const q = await newQueue(right, true);
      // The queue works, and the password is needed for NEW only.
      const sender = await open();
      await sender.send(q.sndId, bytes('hi'));
      assert.ok(await right.get(q.rcvId, q.rcvAuth.privateKey));
      assert.deepEqual(await refused(relay), { password: 3 });
      assert.ok(logs().length > 0, 'the relay logged');
      assert.ok(!logs().includes(PASSWORD) && !logs().toLowerCase().includes(PASSWORD.toLowerCase()), 'no password in the logs');
    }));

  test('a relay without a password takes NEW with or without one', () =>
    withRelay({}, async ({ relay, open }) => {
      assert.equal(await errorOf(newQueue(await open())), 'ok');
      assert.equal(await errorOf(newQueue(await open('anything'))), 'ok');
      assert.deepEqual(await refused(relay), {});
    }));
});

describe('creation rate limits', () => {
  test('per connection: the burst, then RATE until the clock refills it; another connection has its own', () =>
    withRelay({ perConnection: { burst: 3, perMinute: 2 }, perAddress: PLENTY }, async ({ relay, open, tick }) => {
      const a = await open();
      assert.deepEqual(await creations(a, 4), ['ok', 'ok', 'ok', 'RATE']);
      assert.deepEqual(await creations(await open(), 3), ['ok', 'ok', 'ok'], 'a fresh connection');
      tick(29_999);
      assert.deepEqual(await creations(a, 1), ['RATE'], 'not a whole token yet');
      tick(1);
      assert.deepEqual(await creations(a, 2), ['ok', 'RATE']);
      tick(3_600_000);
      assert.deepEqual(await creations(a, 4), ['ok', 'ok', 'ok', 'RATE'], 'refilled up to the burst only');
      assert.deepEqual(await refused(relay), { rate_connection: 4 });
    }));

  test('per address: shared by all connections from it, refilled by the clock', () =>
    withRelay({ perConnection: PLENTY, perAddress: { burst: 4, perMinute: 1 } }, async ({ relay, open, tick }) => {
      const [a, b] = [await open(), await open()];
      assert.deepEqual([...(await creations(a, 2)), ...(await creations(b, 2))], ['ok', 'ok', 'ok', 'ok']);
      assert.deepEqual(await creations(await open(), 1), ['RATE'], 'a new connection from the same address');
      assert.deepEqual(await creations(a, 1), ['RATE']);
      tick(60_000);
      assert.deepEqual(await creations(b, 2), ['ok', 'RATE']);
      assert.deepEqual(await refused(relay), { rate_address: 3 });
    }));

  test('the limits come before the password: guessing is no faster than creating', () =>
    withRelay({ password: PASSWORD, perConnection: { burst: 2, perMinute: 1 }, perAddress: PLENTY }, async ({ relay, open }) => {
      const guesser = await open('guess');
      assert.deepEqual(await creations(guesser, 3), ['PASSWORD', 'PASSWORD', 'RATE']);
      const right = await open(PASSWORD);
      assert.deepEqual(await creations(right, 3), ['ok', 'ok', 'RATE']);
      assert.deepEqual(await refused(relay), { password: 2, rate_connection: 2 });
    }));

  test('the defaults let a messenger add twenty contacts at once on one connection', () =>
    withRelay({}, async ({ open }) => {
      const results = await creations(await open(), 20);
      assert.deepEqual(results, Array(20).fill('ok'));
    }));
});

describe('NEW encoding', () => {
  const keys = { rcvAuthKey: crypto.randomBytes(32), rcvDhKey: crypto.randomBytes(32) };
  const password = bytes(PASSWORD);

  test('the password is an optional trailing short, after the notifier keys', () => {
    const ntf = { ntfAuthKey: crypto.randomBytes(32), rcvNtfDhKey: crypto.randomBytes(32) };
    for (const c of [
      { type: 'NEW', ...keys },
      { type: 'NEW', ...keys, password },
      { type: 'NEW', ...keys, ntf, password },
    ] satisfies RelayCommand[]) {
      const b = encodeCommand(c);
      assert.deepEqual(decodeCommand(b), { ok: true, value: c });
    }
    const plain = encodeCommand({ type: 'NEW', ...keys });
    const withPassword = encodeCommand({ type: 'NEW', ...keys, password });
    assert.deepEqual(withPassword.subarray(plain.length), Uint8Array.of(password.length, ...password));
  });

  test('an empty password and bytes after the password are errors', () => {
    const plain = encodeCommand({ type: 'NEW', ...keys });
    assert.equal(decodeCommand(Uint8Array.of(...plain, 0)).ok, false);
    const withPassword = encodeCommand({ type: 'NEW', ...keys, password });
    assert.equal(decodeCommand(Uint8Array.of(...withPassword, 1)).ok, false);
    assert.equal(decodeCommand(withPassword.subarray(0, -1)).ok, false);
  });
});

describe('relay.json creation', () => {
  test('defaults, the file and the env', () => {
    const dir = tmpDir();
    const d = loadRelayConfig(dir, {}).creation;
    assert.equal(d.password, undefined);
    assert.deepEqual(d, { perConnectionBurst: 20, perConnectionPerHour: 300, perAddressBurst: 50, perAddressPerHour: 600 });
    const c = loadRelayConfig(dir, { HUSH_RELAY_CREATION_PASSWORD: PASSWORD, HUSH_RELAY_CREATION_PER_ADDRESS_PER_HOUR: '60' }).creation;
    assert.equal(c.password, PASSWORD);
    assert.equal(c.perAddressPerHour, 60);
  });

  test('a password that cannot go in an address is refused, without echoing it', () => {
    const bad = 'has spaces@and:colons';
    assert.throws(
      () => loadRelayConfig(tmpDir(), { HUSH_RELAY_CREATION_PASSWORD: bad }),
      (e: Error) => e instanceof ConfigError && /creation\.password/.test(e.message) && !e.message.includes(bad),
    );
  });
});
