// NtfStore conformance: one suite run against MemoryNtfStore, the journal store
// and the PostgreSQL store. The persistent backends check every state again
// after a reopen (close, open the same directory / schema), and a random
// sequence of operations against an oracle. Then durability: what was flushed
// survives a crash, what was not is lost (for PostgreSQL: never committed),
// concurrent flushes, a failed flush retried, migrations, and a 100k load.
//
// PostgreSQL: HUSH_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test,
// one schema per store (hush_test_<run>_<n>), all dropped at the end. When the
// database cannot be reached, its tests are skipped with the reason, except
// under CI (CI=true), where they fail.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import type { TokenStatus } from '../../src/ntf/protocol.ts';
import type { DeviceToken, InvalidReason } from '../../src/push/device.ts';
import { DEFAULT_NTF_CREATION, NtfCreationLimits } from '../../src/ntf/creation.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { decodeNtfRecord, encodeNtfRecord, ntfRecordSize, type NtfRecord } from '../../src/ntf/store/records.ts';
import { LAST_PER_TOKEN, MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import { NTF_MIGRATIONS } from '../../src/ntf/store/migrations.ts';
import { migrate, openPostgresNtfStore, type PostgresLog } from '../../src/ntf/store/postgres.ts';
import type { LastNotification, NtfStore, StoredSubStatus, SubRecord, TokenRecord } from '../../src/ntf/store/store.ts';
import { tmpDir } from '../helpers.ts';

// ---- PostgreSQL: reachable or not ----

const PG_URL = process.env.HUSH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const IN_CI = process.env.CI === 'true';
const RUN = `hush_test_${randomBytes(4).toString('hex')}`;

async function probe(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (e) {
    return `PostgreSQL unreachable at ${PG_URL}: ${(e as Error).message || String(e)}`;
  } finally {
    await c.end().catch(() => {});
  }
}
const pgDown = await probe();
/** Skip PostgreSQL tests outside CI only; under CI they run, and fail. */
const pgSkip = pgDown && !IN_CI ? `${pgDown} (set HUSH_TEST_DATABASE_URL; under CI=true this fails)` : false;

if (pgDown && IN_CI) {
  test('PostgreSQL is reachable (required under CI)', () => {
    assert.fail(`${pgDown}: the PostgreSQL store tests cannot run`);
  });
}

let admin: pg.Pool | undefined;
function adminPool(): pg.Pool {
  if (pgDown) throw new Error(pgDown);
  if (!admin) {
    admin = new pg.Pool({ connectionString: PG_URL, max: 2, connectionTimeoutMillis: 5000 });
    admin.on('error', () => {});
  }
  return admin;
}
let schemas = 0;
const createdSchemas = new Set<string>();
function newSchema(): string {
  const s = `${RUN}_${++schemas}`;
  createdSchemas.add(s);
  return s;
}
async function dropSchema(s: string): Promise<void> {
  await adminPool().query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(s)} CASCADE`);
  createdSchemas.delete(s);
}
after(async () => {
  if (!admin) return;
  for (const s of [...createdSchemas]) await dropSchema(s).catch(() => {});
  await admin.end();
});
const sqlCount = async (schema: string, table: string) =>
  Number((await adminPool().query(`SELECT count(*) AS n FROM ${pg.escapeIdentifier(schema)}.${table}`)).rows[0].n);

// ---- record factories ----

const rand = (n: number) => new Uint8Array(randomBytes(n));
/** IDs are latin1 strings of random bytes: NUL and high bytes included. */
const newId = (n = 16) => randomBytes(n).toString('latin1');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const hexs = (s: string) => Buffer.from(s, 'latin1').toString('hex');
const device = (provider: DeviceToken['provider'] = 'apns'): DeviceToken => ({ provider, token: rand(32) });

function tokenRecord(o: Partial<TokenRecord> = {}): TokenRecord {
  return {
    tokenId: newId(),
    device: device(),
    tknAuthKey: rand(32),
    tknDhKey: rand(32),
    srvDhKey: rand(32),
    tknDhSecret: rand(32),
    status: { status: 'NEW' },
    code: rand(8),
    cronMinutes: 0,
    cronNextAt: 0,
    statusAt: 1000,
    verified: false,
    ...o,
  };
}

const RELAYS = ['hush://relay-a.example:5223', 'hush://relay-b.example', 'hush://fp@relay-c.example:443'];

function subRecord(tokenId: string, o: Partial<SubRecord> = {}): SubRecord {
  return { subId: newId(), tokenId, relay: RELAYS[0]!, notifierId: newId(24), ntfAuthKey: newId(32), status: 'NEW', ...o };
}

const notification = (subId: string, ts: number): LastNotification => ({ subId, nonce: rand(24), sealedMeta: rand(50 + (ts % 20)), ts });

// ---- normalized views ----

const normToken = (t: TokenRecord | undefined) =>
  t && {
    tokenId: hexs(t.tokenId),
    provider: t.device.provider,
    deviceToken: hex(t.device.token),
    tknAuthKey: hex(t.tknAuthKey),
    tknDhKey: hex(t.tknDhKey),
    srvDhKey: hex(t.srvDhKey),
    tknDhSecret: hex(t.tknDhSecret),
    status: t.status.status === 'INVALID' ? `INVALID(${t.status.reason})` : t.status.status,
    code: hex(t.code),
    cronMinutes: t.cronMinutes,
    cronNextAt: t.cronNextAt,
    statusAt: t.statusAt,
    verified: t.verified,
  };

const normSub = (s: SubRecord | undefined) =>
  s && {
    subId: hexs(s.subId),
    tokenId: hexs(s.tokenId),
    relay: s.relay,
    notifierId: hexs(s.notifierId),
    ntfAuthKey: hexs(s.ntfAuthKey),
    status: s.status,
  };

const normLast = (n: LastNotification) => ({ subId: hexs(n.subId), nonce: hex(n.nonce), sealedMeta: hex(n.sealedMeta), ts: n.ts });
const ids = (it: Iterable<{ subId: string } | { tokenId: string }>) =>
  [...it].map((x) => hexs('subId' in x ? x.subId : x.tokenId)).sort();

/** Every ID, device and relay a test used: what `dump` looks up. */
class Universe {
  readonly tokenIds = new Set<string>();
  readonly devices: Array<{ device: DeviceToken; authKey: Uint8Array }> = [];
  readonly subIds = new Set<string>();
  readonly notifiers: Array<{ relay: string; notifierId: string }> = [];
  readonly relays = new Set<string>(RELAYS);

  token(o: Partial<TokenRecord> = {}): TokenRecord {
    const t = tokenRecord(o);
    this.tokenIds.add(t.tokenId);
    this.devices.push({ device: t.device, authKey: t.tknAuthKey });
    return t;
  }
  device(authKey: Uint8Array, d: DeviceToken = device()): DeviceToken {
    this.devices.push({ device: d, authKey });
    return d;
  }
  sub(tokenId: string, o: Partial<SubRecord> = {}): SubRecord {
    const s = subRecord(tokenId, o);
    this.subIds.add(s.subId);
    this.notifiers.push({ relay: s.relay, notifierId: s.notifierId });
    this.relays.add(s.relay);
    return s;
  }
}

/** The whole state reachable through the interface for the universe's IDs. */
function dump(s: NtfStore, u: Universe) {
  const tokenIds = [...u.tokenIds];
  return {
    counts: s.counts(),
    tokens: tokenIds.map((id) => normToken(s.token(id)) ?? null),
    devices: u.devices.map(({ device, authKey }) => {
      const t = s.tokenOfDevice(device, authKey);
      return t ? hexs(t.tokenId) : null;
    }),
    cron: ids(s.cronTokens()),
    inactive: ids(s.inactiveTokens()),
    subscriptionCounts: tokenIds.map((id) => s.subscriptionCount(id)),
    subs: [...u.subIds].map((id) => normSub(s.sub(id)) ?? null),
    notifiers: u.notifiers.map(({ relay, notifierId }) => {
      const x = s.subOfNotifier(relay, notifierId);
      return x ? hexs(x.subId) : null;
    }),
    subsOfToken: tokenIds.map((id) => ids(s.subsOfToken(id))),
    subsOfRelay: [...u.relays].map((r) => ids(s.subsOfRelay(r))),
    relays: [...s.relays()].sort(),
    last: tokenIds.map((id) => s.lastNotifications(id, 1000).map(normLast)),
    pushed: tokenIds.map((id) => s.lastNotifications(id, 1000).map((n) => n.pushed)),
    pending: s.pendingPushes(),
    pendingTokens: ids([...s.pendingTokens(Infinity)].map((tokenId) => ({ tokenId }))),
    byDevice: u.devices.map(({ device }) => ids(s.tokensOfDevice(device))),
  };
}

const zeroCounts = () => ({
  tokens: { NEW: 0, REGISTERED: 0, CONFIRMED: 0, ACTIVE: 0, INVALID: 0, EXPIRED: 0 },
  subscriptions: { NEW: 0, PENDING: 0, ACTIVE: 0, END: 0, DELETED: 0, AUTH: 0 },
});

async function closeQuietly(s: NtfStore | undefined): Promise<void> {
  try {
    await s?.close();
  } catch {}
}

// ---- backends ----

interface Harness {
  store: NtfStore;
  /** Closes the store and opens its storage again (the memory store stays as it is). */
  reopen(s: NtfStore): Promise<NtfStore>;
  cleanup(): Promise<void>;
}

interface Backend {
  name: string;
  skip: string | false;
  make(): Promise<Harness>;
}

/** A PostgreSQL store on its own fresh schema; `opened` lists every store to close. */
type PgHarness = Harness & { schema: string; crash(s: NtfStore): Promise<NtfStore>; logOf(s: NtfStore): PostgresLog };

async function pgHarness(): Promise<PgHarness> {
  if (pgDown) throw new Error(pgDown); // only under CI: otherwise skipped
  const schema = newSchema();
  const logs = new Map<NtfStore, PostgresLog>();
  const open = async () => {
    const { store, log } = await openPostgresNtfStore({ url: PG_URL, schema });
    logs.set(store, log);
    return store;
  };
  return {
    schema,
    store: await open(),
    logOf: (s) => logs.get(s)!,
    async reopen(s) {
      await s.close();
      return open();
    },
    /** As after kill -9: nothing queued reaches the database. */
    async crash(s) {
      await logs.get(s)!.discard();
      return open();
    },
    async cleanup() {
      for (const log of logs.values()) await log.discard().catch(() => {});
      await dropSchema(schema);
    },
  };
}

const backends: Backend[] = [
  {
    name: 'MemoryNtfStore',
    skip: false,
    make: async () => ({ store: new MemoryNtfStore(), reopen: async (s) => s, async cleanup() {} }),
  },
  {
    name: 'journal',
    skip: false,
    async make() {
      const dir = tmpDir('hush-ntf-store-');
      return {
        store: openJournalNtfStore(dir).store,
        async reopen(s) {
          await s.close();
          const again = openJournalNtfStore(dir);
          assert.equal(again.journal.truncatedBytes, 0, 'a cleanly closed journal has no torn tail');
          return again.store;
        },
        async cleanup() {
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  { name: 'PostgreSQL', skip: pgSkip, make: pgHarness },
];

type ReopenAndCheck = (check: (s: NtfStore) => void) => Promise<NtfStore>;

/**
 * Runs `body` with a fresh store of the backend. `reopenAndCheck(check)` runs
 * `check` now, reopens, asserts the whole state is the same, and runs `check`
 * again. After the body, the final state must survive one more reopen.
 */
async function withStore(b: Backend, body: (s: NtfStore, u: Universe, reopenAndCheck: ReopenAndCheck) => Promise<void>) {
  const h = await b.make();
  const u = new Universe();
  let current = h.store;
  try {
    await body(current, u, async (check) => {
      check(current);
      const before = dump(current, u);
      current = await h.reopen(current);
      assert.deepEqual(dump(current, u), before, 'the same state after a reopen');
      check(current);
      return current;
    });
    const before = dump(current, u);
    current = await h.reopen(current);
    assert.deepEqual(dump(current, u), before, 'the final state after a reopen');
  } finally {
    await closeQuietly(current);
    await h.cleanup();
  }
}

// ---- the conformance suite ----

const INVALID_REASONS: InvalidReason[] = ['BAD', 'TOPIC', 'EXPIRED', 'UNREGISTERED'];

for (const backend of backends) {
  describe(`NtfStore conformance: ${backend.name}`, { skip: backend.skip }, () => {
    test('createToken: found by ID and by (device, auth key); a taken ID is refused', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token();
        const other = u.token({ device: { provider: 'fcm', token: rand(100) }, status: { status: 'ACTIVE' } });
        assert.equal(s0.createToken(t), true);
        assert.equal(s0.createToken(other), true);
        const taken = u.token({ tokenId: t.tokenId });
        assert.equal(s0.createToken(taken), false, 'ID taken');
        await reopenAndCheck((s) => {
          assert.deepEqual(normToken(s.token(t.tokenId)), normToken(t));
          assert.deepEqual(normToken(s.token(other.tokenId)), normToken(other));
          assert.equal(s.tokenOfDevice(t.device, t.tknAuthKey)?.tokenId, t.tokenId);
          assert.equal(s.tokenOfDevice({ provider: t.device.provider, token: new Uint8Array(t.device.token) }, new Uint8Array(t.tknAuthKey))?.tokenId, t.tokenId, 'by value, not by reference');
          assert.equal(s.tokenOfDevice(other.device, other.tknAuthKey)?.tokenId, other.tokenId);
          assert.equal(s.tokenOfDevice(t.device, other.tknAuthKey), undefined, 'another auth key');
          assert.equal(s.tokenOfDevice({ provider: 'fcm', token: t.device.token }, t.tknAuthKey), undefined, 'another provider');
          assert.equal(s.tokenOfDevice(taken.device, taken.tknAuthKey), undefined, 'the refused token is nowhere');
          assert.equal(s.token(newId()), undefined);
          assert.deepEqual([...s.cronTokens()], []);
          const c = zeroCounts();
          c.tokens.NEW = 1;
          c.tokens.ACTIVE = 1;
          assert.deepEqual(s.counts(), c);
        });
      }));

    test('setTokenStatus: every status, INVALID with its reason; counts follow', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const ts = [u.token(), u.token(), u.token(), u.token(), u.token(), u.token()];
        for (const t of ts) s0.createToken(t);
        const statuses: TokenStatus[] = [
          { status: 'REGISTERED' },
          { status: 'CONFIRMED' },
          { status: 'ACTIVE' },
          { status: 'EXPIRED' },
          { status: 'INVALID', reason: 'BAD' },
        ];
        statuses.forEach((st, i) => s0.setTokenStatus(ts[i]!.tokenId, st, 2000 + i));
        s0.setTokenStatus(ts[5]!.tokenId, { status: 'ACTIVE' }, 2010);
        s0.setTokenStatus(ts[5]!.tokenId, { status: 'INVALID', reason: 'TOPIC' }, 2011); // the later one wins
        s0.setTokenStatus(newId(), { status: 'ACTIVE' }, 2012); // an unknown token: nothing
        let s1 = await reopenAndCheck((s) => {
          statuses.forEach((st, i) => assert.deepEqual(s.token(ts[i]!.tokenId)!.status, st));
          assert.deepEqual(s.token(ts[5]!.tokenId)!.status, { status: 'INVALID', reason: 'TOPIC' });
          assert.deepEqual(s.counts().tokens, { NEW: 0, REGISTERED: 1, CONFIRMED: 1, ACTIVE: 1, INVALID: 2, EXPIRED: 1 });
        });
        for (const [i, reason] of INVALID_REASONS.entries()) s1.setTokenStatus(ts[i]!.tokenId, { status: 'INVALID', reason }, 3000 + i);
        s1.setTokenStatus(ts[5]!.tokenId, { status: 'NEW' }, 3010);
        await reopenAndCheck((s) => {
          for (const [i, reason] of INVALID_REASONS.entries()) assert.deepEqual(s.token(ts[i]!.tokenId)!.status, { status: 'INVALID', reason });
          assert.deepEqual(s.token(ts[4]!.tokenId)!.status, { status: 'INVALID', reason: 'BAD' });
          assert.deepEqual(s.token(ts[5]!.tokenId)!.status, { status: 'NEW' });
          assert.deepEqual(s.counts().tokens, { NEW: 1, REGISTERED: 0, CONFIRMED: 0, ACTIVE: 0, INVALID: 5, EXPIRED: 0 });
        });
      }));

    test('replaceDevice and renewCode: new code, status REGISTERED; the device lookup moves', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token({ status: { status: 'ACTIVE' } });
        const k = u.token({ status: { status: 'INVALID', reason: 'EXPIRED' } });
        s0.createToken(t);
        s0.createToken(k);
        const d2 = u.device(t.tknAuthKey, device('webpush'));
        const code2 = rand(8);
        s0.replaceDevice(t.tokenId, d2, code2, 4000);
        const code3 = rand(8);
        s0.renewCode(k.tokenId, code3, 4001);
        await reopenAndCheck((s) => {
          const x = s.token(t.tokenId)!;
          assert.deepEqual(x.status, { status: 'REGISTERED' });
          assert.equal(hex(x.code), hex(code2));
          assert.equal(x.device.provider, 'webpush');
          assert.equal(hex(x.device.token), hex(d2.token));
          assert.equal(s.tokenOfDevice(d2, t.tknAuthKey)?.tokenId, t.tokenId);
          assert.equal(s.tokenOfDevice(t.device, t.tknAuthKey), undefined, 'the old device is gone');
          const y = s.token(k.tokenId)!;
          assert.deepEqual(y.status, { status: 'REGISTERED' });
          assert.equal(hex(y.code), hex(code3));
          assert.equal(hex(y.device.token), hex(k.device.token), 'renewCode keeps the device');
          assert.equal(s.tokenOfDevice(k.device, k.tknAuthKey)?.tokenId, k.tokenId);
          assert.deepEqual(s.counts().tokens, { NEW: 0, REGISTERED: 2, CONFIRMED: 0, ACTIVE: 0, INVALID: 0, EXPIRED: 0 });
        });
      }));

    test('setCron: cronTokens holds the tokens with periodic pushes on', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const [a, b, c] = [u.token(), u.token(), u.token({ cronMinutes: 30, cronNextAt: 1_700_000_000_000 })];
        for (const t of [a!, b!, c!]) s0.createToken(t);
        s0.setCron(a!.tokenId, 20, 1_700_000_123_456);
        s0.setCron(b!.tokenId, 60, 5);
        s0.setCron(b!.tokenId, 0, 0); // off again
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(ids(s.cronTokens()), [hexs(a!.tokenId), hexs(c!.tokenId)].sort());
          assert.equal(s.token(a!.tokenId)!.cronMinutes, 20);
          assert.equal(s.token(a!.tokenId)!.cronNextAt, 1_700_000_123_456);
          assert.equal(s.token(b!.tokenId)!.cronMinutes, 0);
          assert.equal(s.token(c!.tokenId)!.cronNextAt, 1_700_000_000_000, 'cron set at creation');
        });
        s1.setCron(a!.tokenId, 0, 0);
        s1.setCron(c!.tokenId, 1440, 2 ** 52);
        await reopenAndCheck((s) => {
          assert.deepEqual(ids(s.cronTokens()), [hexs(c!.tokenId)]);
          assert.equal(s.token(c!.tokenId)!.cronMinutes, 1440);
          assert.equal(s.token(c!.tokenId)!.cronNextAt, 2 ** 52, 'a large time survives as a number');
        });
      }));

    test('createSub: found by ID, notifier, token and relay; a taken ID or (relay, notifierId) is refused', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t1 = u.token();
        const t2 = u.token();
        s0.createToken(t1);
        s0.createToken(t2);
        const a = u.sub(t1.tokenId, { relay: RELAYS[0]! });
        const b = u.sub(t1.tokenId, { relay: RELAYS[1]!, status: 'PENDING' });
        const c = u.sub(t2.tokenId, { relay: RELAYS[0]!, status: 'ACTIVE' });
        const sameNotifierElsewhere = u.sub(t2.tokenId, { relay: RELAYS[1]!, notifierId: a.notifierId });
        for (const x of [a, b, c, sameNotifierElsewhere]) assert.equal(s0.createSub(x), true);
        assert.equal(s0.createSub(u.sub(t2.tokenId, { subId: a.subId, relay: RELAYS[2]! })), false, 'ID taken');
        assert.equal(s0.createSub(u.sub(t2.tokenId, { relay: a.relay, notifierId: a.notifierId })), false, '(relay, notifier) taken');
        assert.equal(s0.createSub(u.sub(t1.tokenId, { relay: c.relay, notifierId: c.notifierId })), false, '... by another token too');
        await reopenAndCheck((s) => {
          for (const x of [a, b, c, sameNotifierElsewhere]) {
            assert.deepEqual(normSub(s.sub(x.subId)), normSub(x));
            assert.equal(s.subOfNotifier(x.relay, x.notifierId)?.subId, x.subId);
          }
          assert.equal(s.subOfNotifier(RELAYS[2]!, a.notifierId), undefined);
          assert.equal(s.subOfNotifier(a.relay, a.subId), undefined);
          assert.deepEqual(ids(s.subsOfToken(t1.tokenId)), [hexs(a.subId), hexs(b.subId)].sort());
          assert.deepEqual(ids(s.subsOfToken(t2.tokenId)), [hexs(c.subId), hexs(sameNotifierElsewhere.subId)].sort());
          assert.deepEqual(ids(s.subsOfToken(newId())), []);
          assert.deepEqual(ids(s.subsOfRelay(RELAYS[0]!)), [hexs(a.subId), hexs(c.subId)].sort());
          assert.deepEqual(ids(s.subsOfRelay(RELAYS[1]!)), [hexs(b.subId), hexs(sameNotifierElsewhere.subId)].sort());
          assert.deepEqual(ids(s.subsOfRelay(RELAYS[2]!)), []);
          assert.deepEqual([...s.relays()].sort(), [RELAYS[0]!, RELAYS[1]!].sort());
          assert.deepEqual(s.counts().subscriptions, { NEW: 2, PENDING: 1, ACTIVE: 1, END: 0, DELETED: 0, AUTH: 0 });
        });
      }));

    test('setSubStatus: every stored status; counts follow', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token();
        s0.createToken(t);
        const statuses: StoredSubStatus[] = ['NEW', 'PENDING', 'ACTIVE', 'END', 'DELETED', 'AUTH'];
        const subs = statuses.map(() => u.sub(t.tokenId, { relay: RELAYS[1]! }));
        for (const x of subs) s0.createSub(x);
        statuses.forEach((st, i) => s0.setSubStatus(subs[i]!.subId, st));
        s0.setSubStatus(subs[0]!.subId, 'ACTIVE');
        s0.setSubStatus(subs[0]!.subId, 'PENDING'); // the later one wins
        s0.setSubStatus(newId(), 'ACTIVE'); // unknown: nothing
        const s1 = await reopenAndCheck((s) => {
          assert.equal(s.sub(subs[0]!.subId)!.status, 'PENDING');
          statuses.slice(1).forEach((st, i) => assert.equal(s.sub(subs[i + 1]!.subId)!.status, st));
          assert.deepEqual(s.counts().subscriptions, { NEW: 0, PENDING: 2, ACTIVE: 1, END: 1, DELETED: 1, AUTH: 1 });
        });
        for (const x of subs) s1.setSubStatus(x.subId, 'ACTIVE');
        await reopenAndCheck((s) => {
          for (const x of subs) assert.equal(s.sub(x.subId)!.status, 'ACTIVE');
          assert.equal(s.subOfNotifier(subs[3]!.relay, subs[3]!.notifierId)!.status, 'ACTIVE', 'every index sees the same record');
          assert.deepEqual(s.counts().subscriptions, { NEW: 0, PENDING: 0, ACTIVE: 6, END: 0, DELETED: 0, AUTH: 0 });
        });
      }));

    test('deleteSub: gone from every index with its last notification; its (relay, notifierId) is free again', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token();
        s0.createToken(t);
        const a = u.sub(t.tokenId, { relay: RELAYS[2]! });
        const b = u.sub(t.tokenId, { relay: RELAYS[0]! });
        s0.createSub(a);
        s0.createSub(b);
        s0.setLastNotification(t.tokenId, notification(a.subId, 1));
        s0.setLastNotification(t.tokenId, notification(b.subId, 2));
        let s1 = await reopenAndCheck((s) => assert.equal(s.lastNotifications(t.tokenId, 10).length, 2));
        s1.deleteSub(a.subId);
        s1.deleteSub(newId()); // unknown: nothing
        s1 = await reopenAndCheck((s) => {
          assert.equal(s.sub(a.subId), undefined);
          assert.equal(s.subOfNotifier(a.relay, a.notifierId), undefined);
          assert.deepEqual(ids(s.subsOfToken(t.tokenId)), [hexs(b.subId)]);
          assert.deepEqual(ids(s.subsOfRelay(RELAYS[2]!)), []);
          assert.deepEqual([...s.relays()], [RELAYS[0]!], 'a relay without subscriptions is no longer listed');
          assert.deepEqual(s.lastNotifications(t.tokenId, 10).map((n) => n.subId), [b.subId]);
          assert.equal(s.counts().subscriptions.NEW, 1);
        });
        // the same (relay, notifierId), even the same subscription ID, can be used again
        const again = u.sub(t.tokenId, { subId: a.subId, relay: a.relay, notifierId: a.notifierId, status: 'PENDING' });
        assert.equal(s1.createSub(again), true);
        const reuse = u.sub(t.tokenId, { relay: b.relay, notifierId: b.notifierId });
        s1.deleteSub(b.subId);
        assert.equal(s1.createSub(reuse), true, 'deleted and taken again before one flush');
        await reopenAndCheck((s) => {
          assert.deepEqual(normSub(s.sub(a.subId)), normSub(again));
          assert.equal(s.subOfNotifier(b.relay, b.notifierId)?.subId, reuse.subId);
          assert.equal(s.sub(b.subId), undefined);
          assert.deepEqual(s.lastNotifications(t.tokenId, 10), [], 'no notification comes back with the ID');
        });
      }));

    test('deleteToken deletes its subscriptions and last notifications, and nothing of other tokens', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token({ cronMinutes: 20, cronNextAt: 99 });
        const keep = u.token();
        s0.createToken(t);
        s0.createToken(keep);
        const subs = [u.sub(t.tokenId), u.sub(t.tokenId, { relay: RELAYS[1]! })];
        const kept = u.sub(keep.tokenId);
        for (const x of [...subs, kept]) s0.createSub(x);
        s0.setLastNotification(t.tokenId, notification(subs[0]!.subId, 5));
        s0.setLastNotification(keep.tokenId, notification(kept.subId, 6));
        let s1 = await reopenAndCheck(() => {});
        s1.deleteToken(t.tokenId);
        s1.deleteToken(newId()); // unknown: nothing
        s1 = await reopenAndCheck((s) => {
          assert.equal(s.token(t.tokenId), undefined);
          assert.equal(s.tokenOfDevice(t.device, t.tknAuthKey), undefined);
          assert.deepEqual([...s.cronTokens()], []);
          for (const x of subs) {
            assert.equal(s.sub(x.subId), undefined);
            assert.equal(s.subOfNotifier(x.relay, x.notifierId), undefined);
          }
          assert.deepEqual(ids(s.subsOfToken(t.tokenId)), []);
          assert.deepEqual(s.lastNotifications(t.tokenId, 10), []);
          assert.deepEqual([...s.relays()], [RELAYS[0]!]);
          assert.deepEqual(normSub(s.sub(kept.subId)), normSub(kept));
          assert.equal(s.lastNotifications(keep.tokenId, 10).length, 1);
          const c = zeroCounts();
          c.tokens.NEW = 1;
          c.subscriptions.NEW = 1;
          assert.deepEqual(s.counts(), c);
        });
        // the same token ID again, in the same flush as a delete: the old subscriptions stay gone
        s1.createToken(t);
        const fresh = u.sub(t.tokenId, { relay: RELAYS[2]! });
        s1.createSub(fresh);
        s1.deleteToken(t.tokenId);
        const t2 = u.token({ tokenId: t.tokenId, status: { status: 'CONFIRMED' } });
        assert.equal(s1.createToken(t2), true);
        const fresh2 = u.sub(t.tokenId, { relay: fresh.relay, notifierId: fresh.notifierId });
        assert.equal(s1.createSub(fresh2), true);
        await reopenAndCheck((s) => {
          assert.deepEqual(normToken(s.token(t.tokenId)), normToken(t2));
          assert.equal(s.sub(fresh.subId), undefined);
          assert.deepEqual(ids(s.subsOfToken(t.tokenId)), [hexs(fresh2.subId)]);
          assert.deepEqual(ids(s.cronTokens()), []);
        });
      }));

    test('last notifications: the latest per subscription, the newest N oldest first, at most LAST_PER_TOKEN', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const t = u.token();
        const other = u.token();
        s0.createToken(t);
        s0.createToken(other);
        const subs = Array.from({ length: LAST_PER_TOKEN + 4 }, (_, i) => u.sub(t.tokenId, { relay: RELAYS[i % 3]! }));
        for (const x of subs) s0.createSub(x);
        const os = u.sub(other.tokenId);
        s0.createSub(os);
        // three subscriptions; the second is replaced by a newer one: it moves to the end
        const n0 = notification(subs[0]!.subId, 100);
        const n1 = notification(subs[1]!.subId, 100);
        const n2 = notification(subs[2]!.subId, 90); // arrival order, not ts, orders them
        const n1b = notification(subs[1]!.subId, 120);
        for (const n of [n0, n1, n2, n1b]) s0.setLastNotification(t.tokenId, n);
        s0.setLastNotification(other.tokenId, notification(os.subId, 1));
        s0.setLastNotification(newId(), notification(os.subId, 1)); // unknown token: nothing
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(s.lastNotifications(t.tokenId, 10).map(normLast), [n0, n2, n1b].map(normLast));
          assert.deepEqual(s.lastNotifications(t.tokenId, 2).map(normLast), [n2, n1b].map(normLast), 'the newest 2, oldest first');
          assert.deepEqual(s.lastNotifications(t.tokenId, 0), []);
          assert.equal(s.lastNotifications(other.tokenId, 10).length, 1);
          assert.deepEqual(s.lastNotifications(newId(), 10), []);
        });
        // one per subscription, more than are kept: the oldest go
        const all = subs.map((x, i) => notification(x.subId, 1000 + i));
        for (const n of all) s1.setLastNotification(t.tokenId, n);
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(s.lastNotifications(t.tokenId, 100).map(normLast), all.slice(-LAST_PER_TOKEN).map(normLast));
          assert.deepEqual(s.lastNotifications(t.tokenId, 3).map(normLast), all.slice(-3).map(normLast));
        });
        // an evicted one comes back newest; a deleted subscription takes its notification along
        const back = notification(subs[0]!.subId, 5);
        s1.setLastNotification(t.tokenId, back);
        s1.deleteSub(subs[10]!.subId);
        const expected = [...all.slice(-LAST_PER_TOKEN + 1).filter((n) => n.subId !== subs[10]!.subId), back];
        await reopenAndCheck((s) => {
          assert.deepEqual(s.lastNotifications(t.tokenId, 100).map(normLast), expected.map(normLast));
          assert.equal(s.lastNotifications(t.tokenId, 100).length, LAST_PER_TOKEN - 1);
        });
      }));

    test('pending notifications: new ones of ACTIVE tokens, until a push with the same nonce is marked or the token leaves ACTIVE; count, oldest, tokens by age', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const active = { status: 'ACTIVE' } as const;
        const a = u.token({ status: active });
        const b = u.token({ status: active });
        const reg = u.token({ status: { status: 'REGISTERED' } });
        for (const t of [a, b, reg]) s0.createToken(t);
        const [a1, a2, a3] = [0, 1, 2].map(() => u.sub(a.tokenId)) as [SubRecord, SubRecord, SubRecord];
        const b1 = u.sub(b.tokenId);
        const r1 = u.sub(reg.tokenId);
        for (const x of [a1, a2, a3, b1, r1]) s0.createSub(x);
        const na1 = notification(a1.subId, 100);
        const nb1 = notification(b1.subId, 105);
        const na2 = notification(a2.subId, 110);
        s0.setLastNotification(a.tokenId, na1);
        s0.setLastNotification(b.tokenId, nb1);
        s0.setLastNotification(a.tokenId, na2);
        s0.setLastNotification(reg.tokenId, notification(r1.subId, 90)); // not ACTIVE: no push owed
        const pushedOf = (s: NtfStore, t: TokenRecord) => s.lastNotifications(t.tokenId, 16).map((n) => n.pushed);
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(s.pendingPushes(), { count: 3, oldestTs: 100 });
          assert.deepEqual(pushedOf(s, reg), [true]);
          assert.equal(s.pendingTokens(100).size, 0, 'before: strictly older');
          assert.deepEqual([...s.pendingTokens(101)], [a.tokenId]);
          assert.deepEqual(new Set(s.pendingTokens(106)), new Set([a.tokenId, b.tokenId]));
          assert.equal(s.lastNotification(a.tokenId, a2.subId)?.ts, 110);
          assert.equal(s.lastNotification(a.tokenId, a3.subId), undefined);
        });
        // a push carried na1, and a2 with a nonce replaced since: only na1 is done
        s1.markPushed(a.tokenId, [{ subId: a1.subId, nonce: na1.nonce }, { subId: a2.subId, nonce: rand(24) }]);
        // a newer one replaces na2; a push that carried na2 does not settle it
        const na2b = notification(a2.subId, 120);
        s1.setLastNotification(a.tokenId, na2b);
        s1.markPushed(a.tokenId, [{ subId: a2.subId, nonce: na2.nonce }]);
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(pushedOf(s, a), [true, false]);
          assert.deepEqual(s.pendingPushes(), { count: 2, oldestTs: 105 });
        });
        // leaving ACTIVE ends them, and coming back does not bring them back
        s1.setTokenStatus(b.tokenId, { status: 'INVALID', reason: 'UNREGISTERED' }, 5000);
        s1.setTokenStatus(b.tokenId, active, 5001);
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(s.pendingPushes(), { count: 1, oldestTs: 120 });
          assert.deepEqual([...s.pendingTokens(Infinity)], [a.tokenId]);
        });
        // so do a new device token or code (status REGISTERED), a deleted subscription or token
        s1.setLastNotification(b.tokenId, notification(b1.subId, 130));
        s1.replaceDevice(b.tokenId, u.device(b.tknAuthKey), rand(8), 5002);
        s1.deleteSub(a2.subId);
        s1 = await reopenAndCheck((s) => assert.deepEqual(s.pendingPushes(), { count: 0, oldestTs: undefined }));
        s1.setLastNotification(a.tokenId, notification(a3.subId, 140));
        assert.equal(s1.pendingPushes().count, 1);
        s1.deleteToken(a.tokenId);
        s1 = await reopenAndCheck((s) => assert.deepEqual(s.pendingPushes(), { count: 0, oldestTs: undefined }));
        // more subscriptions than are kept: the evicted one is no longer owed a push
        const c = u.token({ status: active });
        s1.createToken(c);
        const many = Array.from({ length: LAST_PER_TOKEN + 1 }, () => u.sub(c.tokenId));
        for (const x of many) s1.createSub(x);
        many.forEach((x, i) => s1.setLastNotification(c.tokenId, notification(x.subId, 200 + i)));
        await reopenAndCheck((s) => assert.deepEqual(s.pendingPushes(), { count: LAST_PER_TOKEN, oldestTs: 201 }));
      }));

    test('tokensOfDevice: every token of a provider and device token, whatever its auth key; follows replaceDevice and deleteToken', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const d = device('apns');
        const t1 = u.token({ device: d });
        const t2 = u.token({ device: { provider: 'apns', token: d.token.slice() } });
        const t3 = u.token({ device: { provider: 'apns-sandbox', token: d.token.slice() } });
        const t4 = u.token();
        for (const t of [t1, t2, t3, t4]) assert.equal(s0.createToken(t), true);
        const of = (s: NtfStore, x: DeviceToken) => ids(s.tokensOfDevice(x));
        const d2 = u.device(t2.tknAuthKey);
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(of(s, d), ids([t1, t2]));
          assert.deepEqual(of(s, t3.device), ids([t3]));
          assert.deepEqual(of(s, t4.device), ids([t4]));
          assert.deepEqual(of(s, d2), []);
        });
        s1.replaceDevice(t2.tokenId, d2, rand(8), 5003);
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(of(s, d), ids([t1]));
          assert.deepEqual(of(s, d2), ids([t2]));
        });
        s1.deleteToken(t1.tokenId);
        await reopenAndCheck((s) => assert.deepEqual(of(s, d), []));
      }));

    test('statusAt and verified follow every status change; inactiveTokens holds the tokens not ACTIVE; subscriptionCount', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const a = u.token({ status: { status: 'REGISTERED' }, statusAt: 100 });
        const b = u.token({ status: { status: 'ACTIVE' }, statusAt: 200, verified: true });
        const c = u.token({ status: { status: 'INVALID', reason: 'BAD' }, statusAt: 300 });
        for (const t of [a, b, c]) s0.createToken(t);
        for (const x of [u.sub(a.tokenId), u.sub(a.tokenId), u.sub(b.tokenId)]) s0.createSub(x);
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(ids(s.inactiveTokens()), ids([a, c]));
          assert.deepEqual([a, b, c].map((t) => [s.token(t.tokenId)!.statusAt, s.token(t.tokenId)!.verified]), [[100, false], [200, true], [300, false]]);
          assert.deepEqual([a, b, c].map((t) => s.subscriptionCount(t.tokenId)), [2, 1, 0]);
        });
        s1.setTokenStatus(a.tokenId, { status: 'ACTIVE' }, 110); // verified from now on
        s1.setTokenStatus(a.tokenId, { status: 'INVALID', reason: 'UNREGISTERED' }, 120);
        s1.setTokenStatus(b.tokenId, { status: 'CONFIRMED' }, 210);
        s1.replaceDevice(c.tokenId, u.device(c.tknAuthKey), rand(8), 310);
        s1.deleteSub([...s1.subsOfToken(a.tokenId)][0]!.subId);
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(ids(s.inactiveTokens()), ids([a, b, c]));
          assert.deepEqual([a, b, c].map((t) => [s.token(t.tokenId)!.statusAt, s.token(t.tokenId)!.verified]), [[120, true], [210, true], [310, false]]);
          assert.deepEqual([a, b, c].map((t) => s.subscriptionCount(t.tokenId)), [1, 1, 0]);
        });
        s1.renewCode(b.tokenId, rand(8), 220);
        s1.setTokenStatus(c.tokenId, { status: 'ACTIVE' }, 320);
        s1.deleteToken(a.tokenId);
        await reopenAndCheck((s) => {
          assert.deepEqual(ids(s.inactiveTokens()), ids([b]));
          assert.deepEqual([b, c].map((t) => [s.token(t.tokenId)!.statusAt, s.token(t.tokenId)!.verified]), [[220, true], [320, true]]);
          assert.equal(s.subscriptionCount(a.tokenId), 0);
        });
      }));

    test('expiry sweep: unverified and inactive tokens past their grace go with their subscriptions; an unknown statusAt is stamped', () =>
      withStore(backend, async (s0, u, reopenAndCheck) => {
        const DAY = 86_400_000;
        const now = 1_800_000_000_000;
        const limits = new NtfCreationLimits(DEFAULT_NTF_CREATION, nodeCrypto, () => now, () => {});
        const { unverifiedTokenMs, inactiveTokenMs } = DEFAULT_NTF_CREATION;
        const old = u.token({ status: { status: 'REGISTERED' }, statusAt: now - unverifiedTokenMs });
        const young = u.token({ status: { status: 'CONFIRMED' }, statusAt: now - unverifiedTokenMs + 1 });
        const never = u.token({ status: { status: 'INVALID', reason: 'BAD' }, statusAt: now - DAY - 5 });
        const lapsed = u.token({ status: { status: 'INVALID', reason: 'UNREGISTERED' }, statusAt: now - inactiveTokenMs, verified: true });
        const resting = u.token({ status: { status: 'REGISTERED' }, statusAt: now - inactiveTokenMs + 120_000, verified: true });
        const active = u.token({ status: { status: 'ACTIVE' }, statusAt: 1, verified: true });
        const legacy = u.token({ status: { status: 'EXPIRED' }, statusAt: 0, verified: true });
        const all = [old, young, never, lapsed, resting, active, legacy];
        for (const t of all) s0.createToken(t);
        for (const t of all) s0.createSub(u.sub(t.tokenId));
        const removed: string[] = [];
        assert.deepEqual(
          limits.sweep(s0, now, (id) => (removed.push(id), s0.deleteToken(id))),
          { unverified: 2, inactive: 1 },
        );
        assert.deepEqual(limits.sweep(s0, now + 59_999, () => assert.fail('a second sweep within a minute')), { unverified: 0, inactive: 0 });
        const s1 = await reopenAndCheck((s) => {
          assert.deepEqual(ids(removed.map((tokenId) => ({ tokenId }))), ids([old, never, lapsed]));
          for (const t of [old, never, lapsed]) assert.equal(s.token(t.tokenId), undefined);
          for (const t of [young, resting, active, legacy]) assert.equal(s.subscriptionCount(t.tokenId), 1);
          assert.equal(s.counts().subscriptions.NEW, 4, 'the expired tokens took their subscriptions');
          assert.equal(s.token(legacy.tokenId)!.statusAt, now, 'stamped: counts from this sweep');
          assert.deepEqual(s.token(legacy.tokenId)!.status, { status: 'EXPIRED' });
        });
        // A minute later: young is past its day; the stamped legacy token has its full grace still.
        limits.sweep(s1, now + 60_000, (id) => s1.deleteToken(id));
        await reopenAndCheck((s) => assert.deepEqual(ids([...s.inactiveTokens()]), ids([resting, legacy])));
      }));

    for (const [seed, flushEvery] of [
      [1, 5],
      [2, 17],
      [3, 60],
    ] as const) {
      test(`random operations (seed ${seed}, a flush every ${flushEvery}): every reopened state equals the live one`, () =>
        withStore(backend, async (s0, u, reopenAndCheck) => {
          const oracle = new MemoryNtfStore();
          const ops = randomOps(u, seed, 500);
          let s = s0;
          for (const [i, op] of ops.entries()) {
            op(s);
            op(oracle);
            if (i % flushEvery === flushEvery - 1) await s.flush();
            if (i % 50 === 49) {
              s = await reopenAndCheck(() => {});
              assert.deepEqual(dump(s, u), dump(oracle, u));
            }
          }
          assert.deepEqual(dump(s, u), dump(oracle, u));
        }));
    }
  });
}

/**
 * Operations over small pools of IDs, so that IDs are taken, deleted and taken
 * again, often within one flush. Used as the NTF server would: a (device, auth
 * key) belongs to one token at most, and a notification to a subscription of the token.
 */
function randomOps(u: Universe, seed: number, n: number): Array<(s: NtfStore) => void> {
  let x = seed >>> 0;
  const rnd = () => {
    // mulberry32
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const tokenIds = Array.from({ length: 6 }, () => newId());
  const subIds = Array.from({ length: 24 }, () => newId());
  const notifierIds = Array.from({ length: 10 }, () => newId(24));
  const authKeys = [rand(32), rand(32)];
  const devices = Array.from({ length: 4 }, () => device(pick(['apns', 'fcm', 'webpush'] as const)));
  for (const id of tokenIds) u.tokenIds.add(id);
  for (const id of subIds) u.subIds.add(id);
  for (const d of devices) for (const k of authKeys) u.devices.push({ device: d, authKey: k });
  for (const r of RELAYS) for (const nid of notifierIds) u.notifiers.push({ relay: r, notifierId: nid });
  const tokenStatuses: TokenStatus[] = [
    { status: 'NEW' },
    { status: 'REGISTERED' },
    { status: 'CONFIRMED' },
    { status: 'ACTIVE' },
    { status: 'EXPIRED' },
    ...INVALID_REASONS.map((reason) => ({ status: 'INVALID' as const, reason })),
  ];
  const subStatuses: StoredSubStatus[] = ['NEW', 'PENDING', 'ACTIVE', 'END', 'DELETED', 'AUTH'];
  let ts = 0;
  const ops: Array<(s: NtfStore) => void> = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const tokenId = pick(tokenIds);
    const subId = pick(subIds);
    if (r < 0.12) {
      const t = tokenRecord({ tokenId, device: pick(devices), tknAuthKey: pick(authKeys), status: pick(tokenStatuses), cronMinutes: pick([0, 0, 20]), cronNextAt: i, statusAt: i, verified: rnd() < 0.5 });
      ops.push((s) => {
        if (!s.tokenOfDevice(t.device, t.tknAuthKey)) s.createToken(t);
      });
    } else if (r < 0.2) {
      const st = pick(tokenStatuses);
      ops.push((s) => s.setTokenStatus(tokenId, st, i));
    } else if (r < 0.25) {
      const d = pick(devices);
      const code = rand(8);
      ops.push((s) => {
        const t = s.token(tokenId);
        if (t && !s.tokenOfDevice(d, t.tknAuthKey)) s.replaceDevice(tokenId, d, code, i);
      });
    } else if (r < 0.29) {
      const code = rand(8);
      ops.push((s) => s.renewCode(tokenId, code, i));
    } else if (r < 0.34) {
      const m = pick([0, 20, 60]);
      ops.push((s) => s.setCron(tokenId, m, m ? i * 1000 : 0));
    } else if (r < 0.39) {
      ops.push((s) => s.deleteToken(tokenId));
    } else if (r < 0.58) {
      const sub = subRecord(tokenId, { subId, relay: pick(RELAYS), notifierId: pick(notifierIds), status: pick(subStatuses) });
      ops.push((s) => {
        if (s.token(tokenId)) s.createSub(sub);
      });
    } else if (r < 0.72) {
      const st = pick(subStatuses);
      ops.push((s) => s.setSubStatus(subId, st));
    } else if (r < 0.8) {
      ops.push((s) => s.deleteSub(subId));
    } else if (r < 0.86) {
      // a push accepted: some of what it carried, or a nonce replaced since
      const stale = rnd() < 0.3 ? rand(24) : undefined;
      const keep = rnd();
      ops.push((s) => {
        const sub = s.sub(subId);
        if (!sub) return;
        const sent = s.lastNotifications(sub.tokenId, 16).map((n, i) => ({ subId: n.subId, nonce: stale && i === 0 ? stale : n.nonce }));
        s.markPushed(sub.tokenId, sent.slice(Math.floor(keep * sent.length)));
      });
    } else {
      const nt = notification(subId, (ts += pick([0, 1, 5])));
      ops.push((s) => {
        const sub = s.sub(subId);
        if (sub) s.setLastNotification(sub.tokenId, nt);
      });
    }
  }
  return ops;
}

test('MemoryNtfStore loaded from records listed by token (a compacted journal) still finds the oldest pending notification', () => {
  const live = new MemoryNtfStore();
  const [a, b] = [0, 1].map(() => tokenRecord({ status: { status: 'ACTIVE' } })) as [TokenRecord, TokenRecord];
  live.createToken(a);
  live.createToken(b);
  const [sa, sb] = [subRecord(a.tokenId), subRecord(b.tokenId)];
  live.createSub(sa);
  live.createSub(sb);
  live.setLastNotification(b.tokenId, notification(sb.subId, 10));
  live.setLastNotification(a.tokenId, notification(sa.subId, 20));
  const loaded = new MemoryNtfStore();
  for (const r of live.liveRecords()) loaded.load(r); // a's records first
  assert.deepEqual(loaded.pendingPushes(), { count: 2, oldestTs: 10 });
  assert.deepEqual([...loaded.pendingTokens(15)], [b.tokenId]);
});

test('journal records written before token expiry (no statusAt, verified, at) still load: statusAt 0, verified', () => {
  const t = tokenRecord({ status: { status: 'REGISTERED' }, statusAt: 77 });
  const cut = (r: NtfRecord, n: number) => {
    const b = encodeNtfRecord(r);
    return decodeNtfRecord(b.subarray(0, b.length - n));
  };
  const tnew = cut({ t: 'TNEW', token: t }, 9);
  assert.ok(tnew.ok && tnew.value.t === 'TNEW');
  assert.deepEqual([tnew.value.token.statusAt, tnew.value.token.verified], [0, true]);
  for (const r of [
    { t: 'TSTAT', tokenId: t.tokenId, status: { status: 'INVALID', reason: 'BAD' }, at: 5 },
    { t: 'TDEV', tokenId: t.tokenId, device: device(), code: rand(8), at: 5 },
    { t: 'TCODE', tokenId: t.tokenId, code: rand(8), at: 5 },
  ] as NtfRecord[]) {
    const legacy = cut(r, 8);
    assert.ok(legacy.ok, r.t);
    assert.deepEqual(legacy.value, { ...r, at: 0 }, r.t);
    assert.deepEqual(decodeNtfRecord(encodeNtfRecord(r)), { ok: true, value: r }, `${r.t} round trip`);
  }
  const m = new MemoryNtfStore();
  m.load(tnew.value);
  assert.deepEqual([...m.inactiveTokens()].map((x) => x.statusAt), [0]);
});

test('ntfRecordSize is the encoded length of every record type', () => {
  const t = tokenRecord({ cronMinutes: 20, cronNextAt: 1234 });
  const s = subRecord(t.tokenId);
  const records: NtfRecord[] = [
    { t: 'TNEW', token: t },
    { t: 'TSTAT', tokenId: t.tokenId, status: { status: 'INVALID', reason: 'BAD' }, at: 5 },
    { t: 'TDEV', tokenId: t.tokenId, device: device('webpush'), code: rand(8), at: 5 },
    { t: 'TCODE', tokenId: t.tokenId, code: rand(8), at: 5 },
    { t: 'TCRN', tokenId: t.tokenId, minutes: 5, nextAt: 99 },
    { t: 'TDEL', tokenId: t.tokenId },
    { t: 'SNEW', sub: s },
    { t: 'SSTAT', subId: s.subId, status: 'ACTIVE' },
    { t: 'SDEL', subId: s.subId },
    { t: 'LAST', tokenId: t.tokenId, n: notification(s.subId, 7) },
    { t: 'SENT', tokenId: t.tokenId, sent: [{ subId: s.subId, nonce: rand(24) }, { subId: newId(), nonce: rand(24) }] },
  ];
  for (const r of records) assert.equal(ntfRecordSize(r), encodeNtfRecord(r).length, r.t);
});

test('a journal of several read chunks restores every token and notification intact (records own their bytes)', async (t) => {
  const dir = tmpDir('hush-ntf-store-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const s = openJournalNtfStore(dir).store;
  const tokens = Array.from({ length: 40_000 }, () => tokenRecord({ status: { status: 'ACTIVE' } })); // ~9 MB of TNEW
  const kept = tokens.map((k, i) => {
    s.createToken(k);
    const sub = subRecord(k.tokenId);
    s.createSub(sub);
    const n = notification(sub.subId, i);
    s.setLastNotification(k.tokenId, n);
    return n;
  });
  await s.close();
  const again = openJournalNtfStore(dir).store;
  try {
    assert.deepEqual(tokens.map((k) => normToken(again.token(k.tokenId))), tokens.map(normToken));
    assert.deepEqual(tokens.map((k) => again.lastNotifications(k.tokenId, 1).map(normLast)), kept.map((n) => [normLast(n)]));
  } finally {
    await again.close();
  }
});

// ---- durability of the persistent backends ----

interface Durable {
  name: string;
  skip: string | false;
  make(): Promise<Harness & { crash(s: NtfStore): Promise<NtfStore> }>;
}

const durables: Durable[] = [
  {
    name: 'journal',
    skip: false,
    async make() {
      const dir = tmpDir('hush-ntf-store-');
      const open: NtfStore[] = [];
      const openStore = () => {
        const { store } = openJournalNtfStore(dir);
        open.push(store);
        return store;
      };
      return {
        store: openStore(),
        async reopen(s) {
          await s.close();
          return openStore();
        },
        /** The old store stays open, as after kill -9; its buffered records never reach the file. */
        crash: async () => openStore(),
        async cleanup() {
          fs.rmSync(dir, { recursive: true, force: true }); // before closing: a close must not write a crashed store's buffer anywhere
          for (const s of open) await closeQuietly(s);
        },
      };
    },
  },
  { name: 'PostgreSQL', skip: pgSkip, make: pgHarness },
];

for (const d of durables) {
  describe(`NtfStore durability: ${d.name}`, { skip: d.skip }, () => {
    test('a crash keeps what was flushed and loses what was not', async () => {
      const h = await d.make();
      const u = new Universe();
      let s = h.store;
      try {
        const ops = randomOps(u, 77, 300);
        const oracle = new MemoryNtfStore();
        for (const op of ops.slice(0, 200)) {
          op(s);
          op(oracle);
        }
        await s.flush();
        const flushed = dump(oracle, u);
        for (const op of ops.slice(200)) op(s); // never flushed
        assert.notDeepEqual(dump(s, u), flushed, 'the unflushed operations changed the live state');
        s = await h.crash(s);
        assert.deepEqual(dump(s, u), flushed);
        // and the store goes on from there
        for (const op of ops.slice(200)) {
          op(s);
          op(oracle);
        }
        const live = dump(s, u);
        assert.deepEqual(live, dump(oracle, u));
        s = await h.reopen(s);
        assert.deepEqual(dump(s, u), live);
      } finally {
        await closeQuietly(s);
        await h.cleanup();
      }
    });

    test('flush is the barrier: a store opened after it sees everything', async () => {
      const h = await d.make();
      const u = new Universe();
      const s = h.store;
      const readers: NtfStore[] = [];
      try {
        const t = u.token();
        s.createToken(t);
        const x = u.sub(t.tokenId);
        s.createSub(x);
        await s.flush();
        s.setSubStatus(x.subId, 'ACTIVE');
        s.setTokenStatus(t.tokenId, { status: 'ACTIVE' }, 6000);
        await s.flush();
        const r = await h.crash(s);
        readers.push(r);
        assert.deepEqual(dump(r, u), dump(s, u));
        assert.equal(r.sub(x.subId)!.status, 'ACTIVE');
      } finally {
        for (const r of readers) await closeQuietly(r);
        await h.cleanup();
      }
    });
  });
}

// ---- PostgreSQL specifics ----

/** A test on a fresh PostgreSQL schema, dropped after it. */
const pgTest = (name: string, body: (h: PgHarness, u: Universe) => Promise<void>) =>
  test(name, async () => {
    const h = await pgHarness();
    try {
      await body(h, new Universe());
    } finally {
      await h.cleanup();
    }
  });

describe('NtfStore on PostgreSQL', { skip: pgSkip }, () => {
  pgTest('unflushed changes are not committed; flush commits them', async (h, u) => {
    const s = h.store;
    const t = u.token();
    s.createToken(t);
    const subs = Array.from({ length: 5 }, () => u.sub(t.tokenId));
    for (const x of subs) s.createSub(x);
    s.setLastNotification(t.tokenId, notification(subs[0]!.subId, 1));
    assert.equal(await sqlCount(h.schema, 'tokens'), 0);
    assert.equal(await sqlCount(h.schema, 'subscriptions'), 0);
    assert.equal(h.logOf(s).queued, 7);
    await s.flush();
    assert.equal(h.logOf(s).queued, 0);
    assert.equal(await sqlCount(h.schema, 'tokens'), 1);
    assert.equal(await sqlCount(h.schema, 'subscriptions'), 5);
    assert.equal(await sqlCount(h.schema, 'last_notifications'), 1);
    s.deleteToken(t.tokenId);
    assert.equal(await sqlCount(h.schema, 'subscriptions'), 5, 'the delete is not committed yet');
    await s.flush();
    assert.equal(await sqlCount(h.schema, 'tokens'), 0);
    assert.equal(await sqlCount(h.schema, 'subscriptions'), 0, 'deleted by cascade');
    assert.equal(await sqlCount(h.schema, 'last_notifications'), 0);
    await s.flush(); // nothing queued: nothing to do
  });

  pgTest('concurrent flushes run one at a time; each resolves after what was queued before it is committed', async (h, u) => {
    const s = h.store;
    const t = u.token();
    s.createToken(t);
    for (let i = 0; i < 3000; i++) s.createSub(u.sub(t.tokenId, { relay: RELAYS[i % 3]! }));
    const done: string[] = [];
    const log = h.logOf(s);
    const a = s.flush().then(() => done.push('a'));
    await new Promise((r) => setImmediate(r));
    assert.equal(log.queued, 0, '`a` has taken its records and is writing them');
    // queued while `a` runs: `b` waits for it, then writes these; `c` shares `b`
    const late = u.sub(t.tokenId, { status: 'ACTIVE' });
    s.createSub(late);
    s.setTokenStatus(t.tokenId, { status: 'ACTIVE' }, 6001);
    const b = s.flush().then(async () => {
      done.push('b');
      assert.equal(await sqlCount(h.schema, 'subscriptions'), 3001, 'b resolved after its records were committed');
    });
    const c = s.flush().then(() => done.push('c'));
    assert.equal(log.queued, 2);
    await Promise.all([a, b, c]);
    assert.deepEqual(done, ['a', 'b', 'c']);
    const live = dump(s, u);
    const again = await h.crash(s);
    assert.deepEqual(dump(again, u), live);
    assert.deepEqual(again.token(t.tokenId)!.status, { status: 'ACTIVE' });
  });

  pgTest('a failed flush commits nothing; its changes are written by the next flush', async (h, u) => {
    const q = pg.escapeIdentifier(h.schema);
    await adminPool().query(`
      CREATE FUNCTION ${q}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.relay = 'hush://refused.example' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON ${q}.subscriptions FOR EACH ROW EXECUTE FUNCTION ${q}.refuse();`);
    const s = h.store;
    const t = u.token();
    s.createToken(t);
    const good = u.sub(t.tokenId);
    const bad = u.sub(t.tokenId, { relay: 'hush://refused.example' });
    s.createSub(good);
    s.createSub(bad);
    s.setLastNotification(t.tokenId, notification(good.subId, 3));
    await assert.rejects(s.flush(), /refused by the test/);
    assert.equal(await sqlCount(h.schema, 'tokens'), 0, 'rolled back');
    s.deleteSub(bad.subId);
    s.setSubStatus(good.subId, 'PENDING');
    await s.flush();
    const live = dump(s, u);
    const again = await h.crash(s);
    assert.deepEqual(dump(again, u), live);
    assert.equal(again.sub(good.subId)!.status, 'PENDING');
    assert.equal(again.lastNotifications(t.tokenId, 5).length, 1);
  });

  test('migrations: applied once under concurrent opens, recorded, and a newer schema is refused', async () => {
    const schema = newSchema();
    const opened = await Promise.all([1, 2, 3].map(() => openPostgresNtfStore({ url: PG_URL, schema })));
    try {
      const q = pg.escapeIdentifier(schema);
      const versions = (await adminPool().query(`SELECT version FROM ${q}.migrations ORDER BY version`)).rows.map((r) => r.version);
      assert.deepEqual(versions, NTF_MIGRATIONS.map((_, i) => i + 1));
      const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
      try {
        assert.deepEqual(await migrate(pool, schema), [], 'nothing left to apply');
        assert.deepEqual(await migrate(pool, schema, [...NTF_MIGRATIONS, 'CREATE TABLE extra (x int)']), [NTF_MIGRATIONS.length + 1]);
        await assert.rejects(migrate(pool, schema), /newer than this server knows/);
      } finally {
        await pool.end();
      }
      await assert.rejects(openPostgresNtfStore({ url: PG_URL, schema }), /newer than this server knows/);
      await assert.rejects(openPostgresNtfStore({ url: PG_URL, schema: 'Bad-Name' }), /bad schema name/);
    } finally {
      for (const o of opened) await o.log.discard();
      await dropSchema(schema);
    }
  });

  pgTest('migration 2: notifications kept before it are owed a push if their token is ACTIVE', async (h, u) => {
    const s = h.store;
    const a = u.token({ status: { status: 'ACTIVE' } });
    const b = u.token({ status: { status: 'ACTIVE' } });
    s.createToken(a);
    s.createToken(b);
    const sa = u.sub(a.tokenId);
    const sb = u.sub(b.tokenId);
    s.createSub(sa);
    s.createSub(sb);
    const na = notification(sa.subId, 10);
    s.setLastNotification(a.tokenId, na);
    s.markPushed(a.tokenId, [na]);
    s.setLastNotification(b.tokenId, notification(sb.subId, 20));
    s.setTokenStatus(b.tokenId, { status: 'INVALID', reason: 'BAD' }, 6002);
    await s.close();
    // back to version 1: no `pushed` column
    const q = pg.escapeIdentifier(h.schema);
    await adminPool().query(`ALTER TABLE ${q}.last_notifications DROP COLUMN pushed; DELETE FROM ${q}.migrations WHERE version = 2`);
    const again = await h.reopen(s);
    assert.deepEqual(again.pendingPushes(), { count: 1, oldestTs: 10 });
    assert.deepEqual([...again.pendingTokens(Infinity)], [a.tokenId]);
    assert.equal(again.lastNotification(b.tokenId, sb.subId)?.pushed, true);
  });

  pgTest('migration 3: tokens stored before it have an unknown statusAt (0) and count as verified', async (h, u) => {
    const s = h.store;
    const a = u.token({ status: { status: 'REGISTERED' }, statusAt: 123 });
    s.createToken(a);
    await s.close();
    // back to version 2: no status_at, no verified
    const q = pg.escapeIdentifier(h.schema);
    await adminPool().query(`ALTER TABLE ${q}.tokens DROP COLUMN status_at, DROP COLUMN verified; DELETE FROM ${q}.migrations WHERE version = 3`);
    const again = await h.reopen(s);
    assert.deepEqual([again.token(a.tokenId)!.statusAt, again.token(a.tokenId)!.verified], [0, true]);
    assert.deepEqual(ids(again.inactiveTokens()), ids([a]));
  });

  pgTest('100,000 subscriptions: written in batches, all loaded again on open', async (h) => {
    const N = 100_000;
    const PER_TOKEN = 5;
    const s = h.store;
    const tokens: TokenRecord[] = [];
    const subs: SubRecord[] = [];
    const written = performance.now();
    for (let i = 0; i < N; i++) {
      if (i % PER_TOKEN === 0) {
        const t = tokenRecord({ status: { status: 'ACTIVE' } });
        tokens.push(t);
        s.createToken(t);
      }
      const x = subRecord(tokens[tokens.length - 1]!.tokenId, { relay: RELAYS[i % 3]!, status: 'ACTIVE' });
      subs.push(x);
      assert.ok(s.createSub(x));
      if (i % 4 === 0) s.setLastNotification(x.tokenId, notification(x.subId, i));
      if ((i + 1) % 20_000 === 0) await s.flush();
    }
    await s.flush();
    const writeMs = performance.now() - written;
    await s.close();

    const started = performance.now();
    const { store: again, log, loaded } = await openPostgresNtfStore({ url: PG_URL, schema: h.schema });
    const reopenMs = performance.now() - started;
    try {
      console.log(
        `PostgreSQL NTF store: wrote ${N} subscriptions (${tokens.length} tokens) in ${Math.round(writeMs)} ms; ` +
          `reopen loaded ${loaded.subscriptions} subscriptions, ${loaded.tokens} tokens, ${loaded.lastNotifications} last notifications in ${Math.round(reopenMs)} ms`,
      );
      assert.equal(loaded.subscriptions, N);
      assert.equal(loaded.tokens, N / PER_TOKEN);
      assert.equal(loaded.lastNotifications, N / 4);
      assert.equal(again.counts().subscriptions.ACTIVE, N);
      for (const x of subs) {
        const y = again.sub(x.subId);
        assert.ok(y && y.notifierId === x.notifierId && y.ntfAuthKey === x.ntfAuthKey && y.tokenId === x.tokenId && y.relay === x.relay);
        assert.equal(again.subOfNotifier(x.relay, x.notifierId), y);
      }
      for (const t of tokens.slice(0, 1000)) assert.deepEqual(normToken(again.token(t.tokenId)), normToken(t));
      assert.ok(reopenMs < 20_000, `reopen took ${Math.round(reopenMs)} ms`);
    } finally {
      await log.discard();
    }
  });
});
