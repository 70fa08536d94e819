// Two notification servers as members of one cluster on one PostgreSQL
// database (docs/ntf-cluster.md), in process, with an in-process relay: any
// command works on either member (a change one member makes is in the other's
// memory before that one answers the next command), exactly one member holds
// the relay's lease and links it, a push comes from the holder, and a push in
// flight when the holder stops is sent by the member that takes the relay.
// Then the parts on their own: the replica and the leases.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { openMeta } from '../../src/relay/client.ts';
import { NtfMetrics } from '../../src/ntf/metrics.ts';
import { openClusterMember } from '../../src/ntf/cluster/open.ts';
import type { ClusterMember } from '../../src/ntf/cluster/member.ts';
import { REAL_TIMERS } from '../../src/ntf/timers.ts';
import { CRON_DUTY, Leases, relayLease } from '../../src/ntf/cluster/leases.ts';
import { changeOrigin } from '../../src/ntf/cluster/replica.ts';
import { migrate, newPool } from '../../src/ntf/store/postgres.ts';
import type { SubRecord, TokenRecord } from '../../src/ntf/store/store.ts';
import type { Logger } from 'pino';
import { bytes, capturedLog, connect, MANY_QUEUES, newQueue, silent, startRelay, type TestRelay } from '../helpers.ts';
import { CaptureProvider, device, MANY_CREATIONS, startNtf, TestClock, until, untilSub, type TestNtf } from './helpers.ts';
import { PG_URL, pgSkip } from '../pg.ts';

const skip = await pgSkip();

const schemas: string[] = [];
after(async () => {
  if (skip) return;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(s)} CASCADE`);
  await c.end();
});

interface Member {
  ctx: TestNtf;
  member: ClusterMember;
  provider: CaptureProvider;
}

/** A member on `schema`, sharing the identity and service key of the cluster. */
async function startMember(
  schema: string,
  name: string,
  keys: { identity: ReturnType<typeof nodeCrypto.ed25519KeyPair>; serviceKey: ReturnType<typeof nodeCrypto.x25519KeyPair> },
  log: Logger = silent,
): Promise<Member> {
  const metrics = new NtfMetrics();
  const { store, member } = await openClusterMember({
    url: PG_URL,
    schema,
    id: name,
    logger: log,
    metrics,
    timers: REAL_TIMERS,
    leaseMs: 3000,
    renewMs: 250,
  });
  const provider = new CaptureProvider(['test']);
  const ctx = await startNtf({ ...keys, store, metrics, cluster: member, providers: [provider], creation: MANY_CREATIONS, log });
  return { ctx, member, provider };
}

describe('NTF cluster members on one PostgreSQL', { skip }, () => {
  test('commands on either member, one holder per relay, pushes from the holder, handed over on stop', async () => {
    const schema = `hush_cluster_${randomBytes(4).toString('hex')}`;
    schemas.push(schema);
    const keys = { identity: nodeCrypto.ed25519KeyPair(), serviceKey: nodeCrypto.x25519KeyPair() };
    const relay: TestRelay = await startRelay({ creation: MANY_QUEUES });
    const rc = await connect(relay.address);
    const logs = capturedLog();
    const a = await startMember(schema, 'a', keys, logs.log);
    const b = await startMember(schema, 'b', keys, logs.log);
    try {
      assert.equal(a.ctx.address.split('@')[0], b.ctx.address.split('@')[0], 'one identity');
      // TNEW at A (its provider sends the verification push), TVFY and TCHK at B.
      const d = await device(a.ctx, { verify: false });
      const atB = await b.ctx.client();
      await atB.verifyToken(d.tokenId, d.tknAuth.privateKey, d.code);
      assert.deepEqual(await atB.checkToken(d.tokenId, d.tknAuth.privateKey), { status: 'ACTIVE' });
      assert.deepEqual(await d.check(), { status: 'ACTIVE' }, 'A has B\'s change before it answers');

      // SNEW at B, SCHK at A: the holder of the relay subscribes it.
      const q = await newQueue(rc, true);
      const subId = await atB.createSubscription(d.tokenId, d.tknAuth.privateKey, relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      await untilSub(d, subId, 'ACTIVE');
      const holders = [a, b].filter((m) => m.member.holdsRelay(relay.address));
      assert.equal(holders.length, 1, 'exactly one member holds the relay');
      const holder = holders[0]!;
      const other = holder === a ? b : a;
      assert.deepEqual(other.ctx.ntf.subscriber.linkStates(), { up: 0, connecting: 0, down: 0 }, 'the other member has no link to it');

      // A message: pushed by the holder.
      await rc.send(q.sndId, bytes('hello'), { notify: true });
      const push = await holder.provider.next((r) => r.kind === 'message', 10_000);
      assert.ok(push);
      assert.equal(other.provider.peek((r) => r.kind === 'message').length, 0);

      const hello = await rc.get(q.rcvId, q.rcvAuth.privateKey);
      await rc.ack(q.rcvId, q.rcvAuth.privateKey, hello!.msgId);

      // A push in flight at the holder when it stops. Its NMSG is acknowledged, so the relay sends
      // nothing again: only the durable pending push brings it, from the member that takes the relay.
      holder.provider.respond = () => holder.provider.hang();
      await rc.send(q.sndId, bytes('in flight'), { notify: true });
      await holder.provider.waitFor('the push in flight', () => holder.provider.pending > 0);
      await until('the NMSG acknowledged', () => relay.store.counts().pendingNotifications === 0);
      await holder.ctx.stop();
      await until('the other member holds the relay', () => other.member.holdsRelay(relay.address), 10_000);
      const recovered = d.open((await other.provider.next((r) => r.kind === 'message', 10_000)).data);
      const inFlight = await rc.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(recovered.kind === 'message' && inFlight);
      const ids = recovered.entries.map((e) => Buffer.from(openMeta(nodeCrypto, q.ntf!.rcvNtfDhSecret, e)!.msgId).toString('hex'));
      assert.deepEqual(ids, [Buffer.from(inFlight.msgId).toString('hex')], 'the push carries the message that was in flight');
      assert.equal(await relayServiceTakeovers(relay), 0, 'the relay never saw two connections fight over the service');
      // What the members logged (takeovers, hand-overs included) names no device token, token, subscription or notifier.
      assert.ok(logs.events('relay_taken').length >= 2);
      const text = logs.text();
      for (const secret of [d.device.token, d.tokenId, subId, q.ntf!.notifierId])
        for (const form of ['hex', 'base64', 'base64url', 'latin1'] as const)
          assert.equal(text.includes(Buffer.from(secret).toString(form)), false, `a ${form} ID in the log`);
    } finally {
      rc.close();
      await a.ctx.stop();
      await b.ctx.stop();
      await relay.stop();
    }
  });
});

const relayServiceTakeovers = async (relay: TestRelay) => (await relay.server.metrics.serviceTakeovers.get()).values[0]?.value ?? 0;

// ---- the parts: the replica and the leases, on their own ----

const rand = (n: number) => new Uint8Array(randomBytes(n));
const newId = () => randomBytes(24).toString('latin1');
const tokenRecord = (): TokenRecord => ({
  tokenId: newId(),
  device: { provider: 'apns', token: rand(32) },
  tknAuthKey: rand(32),
  tknDhKey: rand(32),
  srvDhKey: rand(32),
  tknDhSecret: rand(32),
  status: { status: 'REGISTERED' },
  code: rand(8),
  cronMinutes: 0,
  cronNextAt: 0,
  statusAt: 1000,
  verified: false,
});

async function freshSchema(): Promise<string> {
  const schema = `hush_cluster_${randomBytes(4).toString('hex')}`;
  schemas.push(schema);
  return schema;
}

describe('NTF cluster parts', { skip }, () => {
  test('replica: a member has the others\' committed changes after a catch-up; a row it writes too ends with both changes; a lost LISTEN is made good', async () => {
    const schema = await freshSchema();
    const clockB = new TestClock();
    const open = (id: string, timers = REAL_TIMERS) =>
      openClusterMember({ url: PG_URL, schema, id, logger: silent, metrics: new NtfMetrics(), timers });
    const a = await open('a');
    const b = await open('b', clockB);
    try {
      const t = tokenRecord();
      a.store.createToken(t);
      const sub: SubRecord = { subId: newId(), tokenId: t.tokenId, relay: 'hush://x@relay.example', notifierId: newId(), ntfAuthKey: newId(), status: 'NEW' };
      a.store.createSub(sub);
      await a.store.flush();
      await b.member.replica.catchUp();
      assert.deepEqual(b.store.token(t.tokenId), a.store.token(t.tokenId));
      assert.deepEqual(b.store.sub(sub.subId), a.store.sub(sub.subId));

      // A changes the status while B has a cron change of the same token queued: both stay, on both.
      a.store.setTokenStatus(t.tokenId, { status: 'ACTIVE' }, 2000);
      b.store.setCron(t.tokenId, 30, 5000);
      await a.store.flush();
      await b.member.replica.catchUp();
      assert.equal(b.store.token(t.tokenId)!.status.status, 'REGISTERED', 'its own change pending: the row is read again after it commits');
      await b.store.flush();
      await until('B with A\'s status', async () => {
        await b.member.replica.catchUp();
        return b.store.token(t.tokenId)!.status.status === 'ACTIVE';
      });
      await a.member.replica.catchUp();
      for (const s of [a.store, b.store]) {
        const k = s.token(t.tokenId)!;
        assert.deepEqual([k.status.status, k.statusAt, k.verified, k.cronMinutes, k.cronNextAt], ['ACTIVE', 2000, true, 30, 5000]);
      }

      // A's stale view: its verification push accepted for a token B has just made ACTIVE. CONFIRMED
      // is written only over REGISTERED, so ACTIVE stays, and A reads it back.
      const t3 = tokenRecord();
      a.store.createToken(t3);
      await a.store.flush();
      await b.member.replica.catchUp();
      b.store.setTokenStatus(t3.tokenId, { status: 'ACTIVE' }, 3000);
      a.store.setTokenStatus(t3.tokenId, { status: 'CONFIRMED' }, 2500);
      await b.store.flush();
      await a.store.flush();
      await until('A with B\'s ACTIVE', async () => {
        await a.member.replica.catchUp();
        return a.store.token(t3.tokenId)!.status.status === 'ACTIVE';
      });

      // A flood of catch-ups (a client's command blocks) costs a round trip at a time, not one each.
      const before = b.member.replica.catchUps;
      const flood: Promise<void>[] = [];
      for (let turn = 0; turn < 10; turn++) {
        for (let i = 0; i < 100; i++) flood.push(b.member.replica.catchUp());
        await new Promise((r) => setImmediate(r));
      }
      await Promise.all(flood);
      const sent = b.member.replica.catchUps - before;
      assert.ok(sent >= 1 && sent <= 11, `1,000 catch-ups in 10 turns sent ${sent} NOTIFYs`);

      // B's LISTEN connection dies; A deletes the token and makes another meanwhile; B reconnects and reads every row again.
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`hush-ntf-listen-${changeOrigin('b')}`]);
      await admin.end();
      await until('B noticing its lost LISTEN', () => b.member.replica.downSince !== undefined);
      a.store.deleteToken(t.tokenId);
      const t2 = tokenRecord();
      a.store.createToken(t2);
      await a.store.flush();
      await clockB.untilPending('the reconnect');
      clockB.advance(1000);
      await until('B back, with what it missed', () => b.member.replica.downSince === undefined && b.store.token(t2.tokenId) !== undefined);
      assert.equal(b.store.token(t.tokenId), undefined);
      assert.equal(b.store.sub(sub.subId), undefined, 'the token\'s subscription went with it');
    } finally {
      await a.member.stop();
      await b.member.stop();
      await a.store.close();
      await b.store.close();
    }
  });

  test('leases: a fair share each, handed back when a member joins, an expired member\'s taken, given up by the holder\'s own clock first', async () => {
    const schema = await freshSchema();
    const pool = newPool(PG_URL, 2);
    await migrate(pool, schema);
    const clocks = { a: 0, b: 0 };
    const leases = (owner: 'a' | 'b') => new Leases({ pool, schema, owner, leaseMs: 10_000, renewMs: 2_000, now: () => clocks[owner] });
    const wanted = ['r1', 'r2', 'r3', 'r4'];
    const a = leases('a');
    const b = leases('b');
    try {
      const first = await a.round(wanted, []);
      assert.deepEqual(first.acquired.sort(), [CRON_DUTY, ...wanted.map(relayLease)].sort(), 'alone: everything');
      assert.equal(first.members, 1);
      const joined = await b.round(wanted, []);
      assert.deepEqual([joined.members, joined.acquired], [2, []], 'nothing free yet');
      const handing = await a.round(wanted, []);
      assert.equal(handing.handedBack.length, 2, 'two more than the member with the fewest: half the difference back');
      const taking = await b.round(wanted, []);
      assert.deepEqual(taking.acquired.sort(), handing.handedBack.sort());
      assert.deepEqual([...a.relays(), ...b.relays()].sort(), wanted, 'every relay held once');
      assert.equal(a.holds(CRON_DUTY) && !b.holds(CRON_DUTY), true, 'one member with the cron duty');
      const steady = await a.round(wanted, a.relays());
      assert.deepEqual([steady.acquired, steady.lost, steady.handedBack], [[], [], []]);
      assert.deepEqual([...steady.linksUp].sort(), a.relays().sort(), 'holders report their links');

      // A stops renewing: by its own clock it gives up before the database would let B in.
      clocks.a += 8_000;
      const held = [CRON_DUTY, ...a.relays().map(relayLease)].sort();
      assert.equal(a.holds(held[0]!), false, 'past its own deadline');
      assert.deepEqual(a.expire().sort(), held);
      assert.equal(a.relays().length, 0);
      // The database's clock passes A's expiry (and its heartbeat's): B takes it all.
      await pool.query(`UPDATE ${pg.escapeIdentifier(schema)}.leases SET expires_at = now() - interval '1 second' WHERE owner = 'a'`);
      await pool.query(`UPDATE ${pg.escapeIdentifier(schema)}.instances SET seen_at = now() - interval '1 minute' WHERE instance_id = 'a'`);
      const takeover = await b.round(wanted, b.relays());
      assert.equal(takeover.members, 1);
      assert.deepEqual(b.relays().sort(), wanted);
      assert.equal(b.holds(CRON_DUTY), true);
      // A comes back with a stale view: its renewal finds the leases taken, and it holds nothing.
      const back = await a.round(wanted, []);
      assert.deepEqual(back.lost, []);
      assert.equal(a.relays().length + b.relays().length, wanted.length, 'still one holder each');
    } finally {
      await pool.end();
    }
  });
});
