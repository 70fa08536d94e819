// Two notification servers as members of one cluster on one PostgreSQL
// database (docs/ntf-cluster.md), in process, with an in-process relay: any
// command works on either member, exactly one member holds the relay's lease
// and links it, a push comes from the holder, a clean stop hands the relay to
// the other member (no message lost), and a change one member makes is in the
// other's memory before that member answers the next command.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { NtfMetrics } from '../../src/ntf/metrics.ts';
import { openClusterMember } from '../../src/ntf/cluster/open.ts';
import type { ClusterMember } from '../../src/ntf/cluster/member.ts';
import { REAL_TIMERS } from '../../src/ntf/timers.ts';
import { bytes, connect, MANY_QUEUES, newQueue, silent, startRelay, type TestRelay } from '../helpers.ts';
import { CaptureProvider, device, MANY_CREATIONS, startNtf, until, untilSub, type TestNtf } from './helpers.ts';

const PG_URL = process.env.HUSH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

async function pgDown(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  c.on('error', () => {});
  try {
    await c.connect();
    return undefined;
  } catch (e) {
    return `PostgreSQL unreachable at ${PG_URL}: ${(e as Error).message}`;
  } finally {
    await c.end().catch(() => {});
  }
}
const down = await pgDown();
const skip = down && process.env.CI !== 'true' ? down : false;

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
async function startMember(schema: string, name: string, keys: { identity: ReturnType<typeof nodeCrypto.ed25519KeyPair>; serviceKey: ReturnType<typeof nodeCrypto.x25519KeyPair> }): Promise<Member> {
  const metrics = new NtfMetrics();
  const { store, member } = await openClusterMember({
    url: PG_URL,
    schema,
    id: name,
    logger: silent,
    metrics,
    timers: REAL_TIMERS,
    leaseMs: 3000,
    renewMs: 250,
  });
  const provider = new CaptureProvider(['test']);
  const ctx = await startNtf({ ...keys, store, metrics, cluster: member, providers: [provider], creation: MANY_CREATIONS });
  return { ctx, member, provider };
}

describe('NTF cluster members on one PostgreSQL', { skip }, () => {
  test('commands on either member, one holder per relay, pushes from the holder, handed over on stop', async () => {
    const schema = `hush_cluster_${randomBytes(4).toString('hex')}`;
    schemas.push(schema);
    const keys = { identity: nodeCrypto.ed25519KeyPair(), serviceKey: nodeCrypto.x25519KeyPair() };
    const relay: TestRelay = await startRelay({ creation: MANY_QUEUES });
    const rc = await connect(relay.address);
    const a = await startMember(schema, 'a', keys);
    const b = await startMember(schema, 'b', keys);
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
      assert.equal(other.ctx.ntf.subscriber.linked().length, 0, 'the other member has no link to it');

      // A message: pushed by the holder.
      await rc.send(q.sndId, bytes('hello'), { notify: true });
      const push = await holder.provider.next((r) => r.kind === 'message', 10_000);
      assert.ok(push);
      assert.equal(other.provider.peek((r) => r.kind === 'message').length, 0);

      // The holder stops: it hands the relay back and the other takes it; messages meanwhile are pushed by it.
      await holder.ctx.stop();
      await rc.send(q.sndId, bytes('while handing over'), { notify: true });
      await until('the other member holds the relay', () => other.member.holdsRelay(relay.address), 10_000);
      await other.provider.next((r) => r.kind === 'message', 10_000);
      assert.equal(await relayServiceTakeovers(relay), 0, 'the relay never saw two connections fight over the service');
    } finally {
      rc.close();
      await a.ctx.stop();
      await b.ctx.stop();
      await relay.stop();
    }
  });
});

const relayServiceTakeovers = async (relay: TestRelay) => (await relay.server.metrics.serviceTakeovers.get()).values[0]?.value ?? 0;
