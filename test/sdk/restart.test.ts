// Servers restarting under the SDK: the notification server (with its state,
// and without it), and a relay killed with SIGKILL.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { tmpDir } from '../helpers.ts';
import { RelayProcess } from '../ntf/helpers.ts';
import { asleepPair, connect, Phone, startStack, until, untilSubscribed } from './helpers.ts';

const journal = (t: Parameters<typeof startStack>[0]) => {
  const dir = tmpDir('hush-sdk-ntf-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
};

test('notification server restarted with its state: pushes keep coming, nothing to redo', async (t) => {
  const dir = journal(t);
  const { stack, alice, bob, atInviter } = await asleepPair(t, await startStack(t, { ntf: { store: openJournalNtfStore(dir).store } }));
  await stack.ntf.stop();
  await stack.startNtf({ store: openJournalNtfStore(dir).store });
  await alice.client.send(atInviter, 'after the restart');
  const shown = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual(shown.map((n) => `${n.title}: ${n.body}`), ['Alice: after the restart']);
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE');
});

test('notification server that lost the token: the periodic check registers again and resubscribes', async (t) => {
  const { stack, alice, bob, atInviter } = await asleepPair(t);
  await stack.ntf.stop();
  await stack.startNtf(); // same address, empty store
  await bob.client.checkNotifications();
  assert.equal(bob.client.tokenStatus?.status, 'REGISTERED', 'registered again');
  const v = await bob.nextPush('a new verification push');
  await bob.client.handlePush(v.payload);
  await untilSubscribed(bob, 1);
  await alice.client.send(atInviter, 'found you again');
  const shown = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual(shown.map((n) => `${n.title}: ${n.body}`), ['Alice: found you again']);
});

test('relay killed (SIGKILL) and restarted: an online client resubscribes, an asleep one still gets pushes', { timeout: 120_000 }, async (t) => {
  const relay = await RelayProcess.start();
  t.after(() => relay.stop());
  const stack = await startStack(t, { relayAddress: relay.address });
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  const alice = await Phone.create(t, stack, 'Alice');
  const { atInviter, atAcceptor } = await connect(alice, bob);
  await untilSubscribed(bob, 1);

  await relay.kill();
  await relay.restart();
  const online: string[] = [];
  bob.client.on('message', (m) => online.push(m.text));
  // Alice's send is tried again on a new connection once the relay is back
  await until('Alice can send again', () => alice.client.send(atInviter, 'while Bob is online').then(() => true, () => false), 15_000);
  await until('Bob, online, received it', () => online.includes('while Bob is online'), 15_000);

  bob.client.stop();
  await until('the notification server resubscribed', async () => {
    await bob.client.checkNotifications();
    return bob.client.contacts()[0]?.subscription === 'ACTIVE';
  }, 15_000);
  bob.skipPushes();
  // No push was handed to Bob's push handler yet: nothing rate limits this chat's first notification.
  await alice.client.send(atInviter, 'while Bob sleeps');
  const shown = await bob.handlePushes((s) => s.length > 0, 'a push after the relay restart', 15_000);
  assert.deepEqual(shown.map((n) => `${n.contactId === atAcceptor} ${n.title}: ${n.body}`), ['true Alice: while Bob sleeps']);
});
