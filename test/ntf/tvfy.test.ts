// TVFY replaces the device's older tokens: an app reinstalled registers the
// same device token with new keys; once that token verifies, the old ones (any
// auth key) are deleted with their subscriptions, and the relay stops
// notifying those (NUNS), so the device gets one push per message. Another
// device token is left alone. On the memory store and on PostgreSQL.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import pg from 'pg';
import { openPostgresNtfStore } from '../../src/ntf/store/postgres.ts';
import { MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import { latin1 } from '../../src/core/encoding.ts';
import type { NtfStore } from '../../src/ntf/store/store.ts';
import { bytes } from '../helpers.ts';
import { device, forDevice, rejectsWith, relayCommands, until, withNtf } from './helpers.ts';
import { PG_URL, pgSkip } from '../pg.ts';

const skip = await pgSkip();

const backends: Array<{ name: string; skip: string | false; open(): Promise<{ store: NtfStore; drop(): Promise<void> }> }> = [
  { name: 'memory store', skip: false, open: async () => ({ store: new MemoryNtfStore(), async drop() {} }) },
  {
    name: 'PostgreSQL store',
    skip,
    async open() {
      const schema = `hush_tvfy_${randomBytes(4).toString('hex')}`;
      const { store } = await openPostgresNtfStore({ url: PG_URL, schema });
      return {
        store,
        async drop() {
          const c = new pg.Client({ connectionString: PG_URL });
          await c.connect();
          await c.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
          await c.end();
        },
      };
    },
  },
];

for (const b of backends) {
  describe(`TVFY replaces older tokens of the device: ${b.name}`, { skip: b.skip }, () => {
    test('the verified token stays; the device token\'s other tokens go with their subscriptions; one push per message', async () => {
      const { store, drop } = await b.open();
      try {
        await withNtf({ store }, async ({ ntf, relay, rc, queue, subscribe }) => {
          const token = new Uint8Array(randomBytes(32));
          // the first install: verified, subscribed, pushed to
          const old = await device(ntf, { token });
          const q1 = await queue();
          const oldSub = await subscribe(old, q1);
          await rc.send(q1.sndId, bytes('to the first install'), { notify: true });
          assert.equal((await old.nextPush('message')).entries.length, 1);
          // another phone at the same relay
          const other = await device(ntf);
          const q3 = await queue();
          const otherSub = await subscribe(other, q3);

          // the app reinstalled: the same device token, new keys; the old token goes only once this one verifies
          const fresh = await device(ntf, { token, verify: false });
          assert.deepEqual(await old.check(), { status: 'ACTIVE' });
          const nunsBefore = await relayCommands(relay.server.metrics, 'NUNS');
          await fresh.client.verifyToken(fresh.tokenId, fresh.tknAuth.privateKey, fresh.code);
          assert.deepEqual(await fresh.check(), { status: 'ACTIVE' });

          await rejectsWith(old.check(), 'AUTH');
          await rejectsWith(old.subStatus(oldSub), 'AUTH');
          assert.equal(ntf.ntf.store.token(latin1(old.tokenId)), undefined);
          assert.equal(ntf.ntf.store.sub(latin1(oldSub)), undefined);
          await until('the relay told to stop notifying the old subscription', async () => (await relayCommands(relay.server.metrics, 'NUNS')) === nunsBefore + 1);
          // the other device token is untouched
          assert.deepEqual(await other.check(), { status: 'ACTIVE' });
          assert.equal(await other.subStatus(otherSub), 'ACTIVE');

          // messages on the old install's queue push nothing; the new install's get one push each
          const q2 = await queue();
          await subscribe(fresh, q2);
          const delivered = ntf.provider.delivered.length;
          await rc.send(q1.sndId, bytes('to the old queue'), { notify: true });
          await rc.send(q2.sndId, bytes('to the new queue'), { notify: true });
          const push = await fresh.nextPush('message');
          assert.deepEqual(
            push.entries.map((e) => Buffer.from(e.notifierId).toString('hex')),
            [Buffer.from(q2.ntf!.notifierId).toString('hex')],
          );
          const toDevice = ntf.provider.delivered.slice(delivered).filter(forDevice(fresh.device));
          assert.equal(toDevice.length, 1, 'one push reached the device');
          await rc.send(q3.sndId, bytes('to the other phone'), { notify: true });
          assert.equal((await other.nextPush('message')).entries.length, 1);
        });
      } finally {
        await drop();
      }
    });
  });
}
