// A notification server with 10,000 subscriptions restarts on the same store —
// the embedded journal, and PostgreSQL — and has them all ACTIVE again with one
// NSUBS at the relay and no NSUB per queue; a message sent after the restart is
// pushed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { openMeta } from '../../src/relay/client.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { openPostgresNtfStore } from '../../src/ntf/store/postgres.ts';
import type { NtfStore } from '../../src/ntf/store/store.ts';
import type { KeyPair } from '../../src/core/crypto/suite.ts';
import type { RelayClient } from '../../src/relay/client.ts';
import { bytes, connect, crypto, MANY_QUEUES, startRelay, tmpDir, type Queue } from '../helpers.ts';
import { device, MANY_CREATIONS, relayCommands, startNtf, until } from './helpers.ts';
import pg from 'pg';
import { sharedKey } from '../../src/core/keys.ts';

const SUBS = 10_000;
const PG_URL = process.env.HUSH_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function pgReachable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Queues with notifier credentials; one set of keys for all, so the test's own crypto stays cheap. */
async function manyQueues(rc: RelayClient, n: number) {
  const [rcvAuth, rcvDh, ntfAuth, ntfDh] = [0, 1, 2, 3].map(() => nodeCrypto.x25519KeyPair()) as [KeyPair, KeyPair, KeyPair, KeyPair];
  const queues: Queue[] = [];
  for (let i = 0; i < n; i += 1000) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(1000, n - i) }, () =>
        rc.newQueue(rcvAuth, rcvDh.publicKey, { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: ntfDh.publicKey }),
      ),
    );
    for (const ids of batch)
      queues.push({
        rcvAuth,
        rcvDh,
        rcvId: ids.rcvId,
        sndId: ids.sndId,
        rcvDhSecret: sharedKey(nodeCrypto, rcvDh.privateKey, ids.srvDhKey, 'relay recipient')!,
        ntf: {
          auth: ntfAuth,
          dh: ntfDh,
          notifierId: ids.ntf!.notifierId,
          rcvNtfDhSecret: sharedKey(nodeCrypto, ntfDh.privateKey, ids.ntf!.srvNtfDhKey, 'relay notifier')!,
        },
      });
  }
  return queues;
}

async function restartWith(openStore: () => Promise<{ store: NtfStore }>): Promise<void> {
  const relay = await startRelay({ creation: MANY_QUEUES });
  const serviceKey = nodeCrypto.x25519KeyPair();
  const identity = nodeCrypto.ed25519KeyPair();
  const rc = await connect(relay.address, { crypto: nodeCrypto });
  let first = await startNtf({ store: (await openStore()).store, serviceKey, identity, creation: MANY_CREATIONS });
  try {
    const phone = await device(first);
    const queues = await manyQueues(rc, SUBS);
    for (let i = 0; i < SUBS; i += 1000)
      await Promise.all(
        queues.slice(i, i + 1000).map((q) => phone.subscribe(relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey)),
      );
    await until('all subscriptions ACTIVE', () => first.ntf.store.counts().subscriptions.ACTIVE === SUBS, 60_000);
    assert.equal(await relayCommands(relay.server.metrics, 'NSUB'), SUBS);
    await first.stop();

    const nsubsBefore = await relayCommands(relay.server.metrics, 'NSUBS');
    first = await startNtf({ store: (await openStore()).store, serviceKey, identity, creation: MANY_CREATIONS });
    assert.equal(first.ntf.store.counts().subscriptions.ACTIVE, SUBS, 'the store kept every subscription');
    await until('the relay connected again', () => first.ntf.subscriber.connected(relay.address), 20_000);
    await first.ntf.subscriber.settled();
    assert.equal(first.ntf.subscriber.inactive(), 0, 'all reported ACTIVE, none INACTIVE');
    // O(1) resubscription: one NSUBS, no NSUB per queue.
    assert.equal(await relayCommands(relay.server.metrics, 'NSUBS'), nsubsBefore + 1);
    assert.equal(await relayCommands(relay.server.metrics, 'NSUB'), SUBS);

    // The device (its keys are in the store) is pushed a message sent now.
    const c = await first.client();
    const status = await c.checkSubscription(
      await c.createSubscription(phone.tokenId, phone.tknAuth.privateKey, relay.address, queues[7]!.ntf!.notifierId, queues[7]!.ntf!.auth.privateKey),
      phone.tknAuth.privateKey,
    );
    assert.equal(status, 'ACTIVE');
    await rc.send(queues[7]!.sndId, bytes('after restart'), { notify: true });
    const push = await first.provider.next(() => true, 10_000);
    const content = phone.open(push.data);
    assert.equal(content.kind, 'message');
    const entry = content.kind === 'message' ? content.entries.at(-1)! : undefined;
    const meta = openMeta(crypto, queues[7]!.ntf!.rcvNtfDhSecret, entry!);
    const msg = await rc.get(queues[7]!.rcvId, queues[7]!.rcvAuth.privateKey);
    assert.ok(meta && msg && Buffer.from(meta.msgId).equals(Buffer.from(msg.msgId)));
  } finally {
    rc.close();
    await first.stop();
    await relay.stop();
  }
}

describe('notification server restart with 10,000 subscriptions', () => {
  test('embedded journal store', { timeout: 180_000 }, async () => {
    const dir = tmpDir('hush-ntf-restart-');
    await restartWith(async () => openJournalNtfStore(dir));
  });

  test('PostgreSQL store', { timeout: 180_000 }, async (t) => {
    if (!(await pgReachable())) {
      // Never skipped in CI: there PostgreSQL must be up.
      if (process.env.CI === 'true') assert.fail(`PostgreSQL unreachable at ${PG_URL}`);
      return t.skip(`PostgreSQL unreachable at ${PG_URL}`);
    }
    const schema = `hush_restart_${Date.now().toString(36)}_${process.pid}`;
    try {
      await restartWith(() => openPostgresNtfStore({ url: PG_URL, schema }));
    } finally {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    }
  });
});
