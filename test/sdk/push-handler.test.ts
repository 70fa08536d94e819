// The push handler under load and at its edges: many contacts and pushes at
// once, a push for a deleted contact, the deadline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChatEvent } from '../../src/sdk/contacts.ts';
import { asleepPair, bobAndTwoFriends, connect, Phone, startStack, until, untilSubscribed } from './helpers.ts';

test('50 messages from 10 contacts while asleep: badge 50, one notification per chat, no message twice', { timeout: 120_000 }, async (t) => {
  const stack = await startStack(t);
  const T0 = Date.now();
  // A frozen clock: every handling falls within one rate-limit window.
  const bob = await Phone.create(t, stack, 'Bob', { now: () => T0 });
  await bob.register();
  const senders: Array<{ phone: Phone; bobId: string }> = [];
  for (let i = 0; i < 10; i++) {
    const phone = await Phone.create(t, stack, `Friend ${i}`);
    const { atInviter } = await connect(phone, bob);
    senders.push({ phone, bobId: atInviter });
  }
  await untilSubscribed(bob, 10);
  bob.client.stop();
  bob.skipPushes();
  const received: ChatEvent[] = [];
  bob.client.on('message', (m) => received.push(m));

  await Promise.all(senders.map(async ({ phone, bobId }, i) => {
    for (let k = 0; k < 5; k++) await phone.client.send(bobId, `message ${k} from ${i}`);
  }));
  // Every push is handed to the handler as it comes, without waiting for the ones before.
  const handlings: Array<Promise<import('../../src/sdk/push-handler.ts').Notification[]>> = [];
  let taken = 0;
  await until('all 50 messages handled', async () => {
    while (taken < bob.pushes.length) handlings.push(bob.client.handlePush(bob.pushes[taken++]!.payload));
    await Promise.all(handlings);
    return received.length >= 50;
  }, 30_000);
  // Every handling has returned, and a handling emits its events before it returns: none can follow.
  const notifications = (await Promise.all(handlings)).flat();
  assert.equal(received.length, 50);
  assert.equal(new Set(received.map((e) => e.msgId)).size, 50, 'no message twice');
  assert.equal(new Set(received.map((e) => (e.type === 'message' ? e.text : ''))).size, 50);
  assert.equal(bob.client.badge, 50);
  assert.deepEqual(notifications.map((n) => n.title).sort(), senders.map((_, i) => `Friend ${i}`).sort(), 'one notification per chat');
  assert.ok(notifications.every((n) => n.badge >= 1 && n.badge <= 50));
  assert.ok(bob.pushes.length > 1, `several pushes (${bob.pushes.length})`);
});

test('a push for a deleted contact shows nothing and breaks nothing', async (t) => {
  const { bob, alice, carol, a, c } = await bobAndTwoFriends(t);
  bob.client.stop();
  bob.skipPushes();

  await alice.client.send(a.atInviter, 'from alice');
  const push = await bob.nextPush('the push for Alice\'s message');
  await bob.client.deleteContact(a.atAcceptor);
  assert.deepEqual(await bob.client.handlePush(push.payload), []);
  assert.equal(bob.client.badge, 0);
  // Alice's queue is gone at the relay: her next message is refused, and said so
  const failed = new Promise((resolve) => alice.client.on('messageStatus', (s) => s.state === 'failed' && resolve(s.error)));
  assert.equal((await alice.client.send(a.atInviter, 'again')).state, 'failed');
  assert.match(String(await failed), /the relay refused it \(AUTH\)/);
  assert.deepEqual(alice.client.pendingMessages(a.atInviter), []);

  // Carol's chat was never notified: no rate limit holds her notification back.
  await carol.client.send(c.atInviter, 'from carol');
  const shown = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual(shown.map((n) => `${n.title}: ${n.body}`), ['Carol: from carol']);
});

test('the deadline: the handler returns by it, and what it left is fetched by the next push', async (t) => {
  const { alice, bob, atInviter } = await asleepPair(t);
  await alice.client.send(atInviter, 'one');
  await alice.client.send(atInviter, 'two');
  const push = await bob.nextPush();
  assert.deepEqual(await bob.client.handlePush(push.payload, { deadlineMs: 0 }), [], 'no time: nothing fetched');
  const shown = await bob.client.handlePush(push.payload);
  assert.deepEqual(shown.map((n) => [n.category, n.body, n.count]), [['many', 'two (+1 more)', 2]]);
});

test('two pushes handled at once fetch each message once', async (t) => {
  const { alice, bob, atInviter } = await asleepPair(t);
  const received: string[] = [];
  bob.client.on('message', (m) => received.push(m.text));
  for (const text of ['a', 'b', 'c']) await alice.client.send(atInviter, text);
  const push = await bob.nextPush();
  const [x, y] = await Promise.all([bob.client.handlePush(push.payload), bob.client.handlePush(push.payload)]);
  assert.deepEqual(received, ['a', 'b', 'c']);
  assert.equal(x.length + y.length, 1, 'one notification');
  assert.equal(bob.client.badge, 3);
});

test('a message held back by the rate limit is announced by the chat\'s next notification', async (t) => {
  const { alice, bob, atInviter, later } = await asleepPair(t);
  later();
  await alice.client.send(atInviter, 'first');
  assert.deepEqual((await bob.handlePushes((s) => s.length > 0)).map((n) => n.body), ['first']);
  await alice.client.send(atInviter, 'second'); // within the second: held back
  await until('the second message fetched', async () => {
    while (bob.waiting > 0) assert.deepEqual(await bob.client.handlePush((await bob.nextPush()).payload), []);
    return bob.client.badge === 2;
  });
  later();
  await alice.client.send(atInviter, 'third');
  const [n] = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual([n!.category, n!.body, n!.count, n!.badge], ['many', 'third (+1 more)', 2, 3]);
  later();
  await alice.client.send(atInviter, 'fourth');
  assert.deepEqual((await bob.handlePushes((s) => s.length > 0)).map((n) => [n.category, n.body]), [['message', 'fourth']], 'held ones are counted once');
});
