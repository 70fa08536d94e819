// What the device shows (docs/sdk.md §6.2–§6.4): the words notifications are
// made of, the chat on screen, summaries, the sender's notify choice, new
// contacts muted, and calls — their actions, expiry, and replies.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChatEvent } from '../../src/sdk/contacts.ts';
import { ContactError } from '../../src/sdk/contacts.ts';
import type { Notification } from '../../src/sdk/push-handler.ts';
import { DEFAULT_WORDS } from '../../src/sdk/words.ts';
import { asleepPair, bobAndTwoFriends, checkPush, connect, nmsgs, Phone, startStack, until, untilSubscribed } from './helpers.ts';

const shown = (ns: Notification[]) => ns.map((n) => `[${n.category}] ${n.title}: ${n.body}`);

test('the default words count in English', () => {
  assert.equal(DEFAULT_WORDS.summary(5, 3), '5 new messages in 3 chats');
  assert.equal(DEFAULT_WORDS.summary(1, 1), '1 new message in 1 chat');
  assert.equal(DEFAULT_WORDS.newMessages(2), '2 new messages');
  assert.equal(DEFAULT_WORDS.more(3), ' (+3 more)');
  assert.equal(DEFAULT_WORDS.incomingMediaCall('video'), 'Incoming video call');
  assert.equal(DEFAULT_WORDS.missedMediaCall('audio'), 'Missed audio call');
});

test('notifications are made of the words table: the words option, setWords at runtime, English for what they leave out', async (t) => {
  const { alice, bob, atInviter, later, clock } = await asleepPair(t);
  const check = async () => shown(await bob.client.handlePush(await checkPush(bob)));
  await bob.reopen({ now: clock.now, words: { more: (k) => ` (+${k} weitere)` } });
  later();
  await alice.client.send(atInviter, 'eins');
  await alice.client.send(atInviter, 'zwei');
  assert.deepEqual(await check(), ['[many] Alice: zwei (+1 weitere)']);

  bob.client.setWords({ appName: 'Psst', newMessage: 'Neue Nachricht' });
  await bob.client.setPreviewMode('hidden');
  later();
  await alice.client.send(atInviter, 'drei');
  assert.deepEqual(await check(), ['[message] Psst: Neue Nachricht']);
  later();
  await alice.client.send(atInviter, 'vier');
  await alice.client.send(atInviter, 'fünf');
  assert.deepEqual(await check(), ['[many] Psst: 2 new messages'], 'a word setWords left out is English, not the option’s');

  assert.throws(() => bob.client.setWords({ nope: 'x' } as never), /no such word: nope/);
  assert.throws(() => bob.client.setWords({ toString: 'x' } as never), /no such word: toString/);
  assert.throws(() => bob.client.setWords({ newMessages: 'x' } as never), (e: Error) => e instanceof TypeError && /must be a function/.test(e.message));
  assert.equal(bob.client.words.appName, 'Psst', 'a refused change changes nothing');
  bob.client.setWords({});
  later();
  await alice.client.send(atInviter, 'sechs');
  assert.deepEqual(await check(), ['[message] Hush: New message']);
});

test('the open chat: its events come, its notifications are not shown, online or from a push; the others are', async (t) => {
  const { bob, alice, carol, a, c } = await bobAndTwoFriends(t);
  const received: string[] = [];
  bob.client.on('message', (m) => received.push(m.text));
  const notified: Notification[] = [];
  bob.client.on('notification', (n) => n.category === 'message' && notified.push(n));

  bob.client.setOpenChat(a.atAcceptor);
  assert.equal(bob.client.openChat, a.atAcceptor);
  await alice.client.send(a.atInviter, 'a1');
  await carol.client.send(c.atInviter, 'c1');
  await until("both messages and Carol's notification", () => received.length === 2 && notified.length === 1);
  bob.client.setOpenChat(null);
  assert.equal(bob.client.openChat, null);
  await alice.client.send(a.atInviter, 'a2');
  // Alice's chat is notified in order: had 'a1' made a notification, it would come before this one.
  await until("Alice's notification once her chat is closed", () => notified.length === 2);
  assert.deepEqual(shown(notified), ['[message] Carol: c1', '[message] Alice: a2']);

  bob.client.stop();
  bob.client.setOpenChat(a.atAcceptor);
  await alice.client.send(a.atInviter, 'a3');
  await carol.client.send(c.atInviter, 'c2');
  assert.deepEqual(shown(await bob.client.handlePush(await checkPush(bob))), ['[message] Carol: c2']);
  assert.deepEqual(received.sort(), ['a1', 'a2', 'a3', 'c1', 'c2'], 'every event still emitted');
  assert.equal(bob.client.badge, 5);
  assert.throws(() => bob.client.setOpenChat('no-such-contact'), ContactError);
});

test('more chats than maxNotifications: the chats handled last, and one summary of the rest', async (t) => {
  const stack = await startStack(t);
  const { alice, bob, atInviter, later } = await asleepPair(t, stack);
  const carol = await Phone.create(t, stack, 'Carol');
  const dave = await Phone.create(t, stack, 'Dave');
  await bob.client.start();
  const c = await connect(carol, bob);
  const d = await connect(dave, bob);
  await untilSubscribed(bob, 3);
  bob.client.stop();
  const order: string[] = [];
  bob.client.on('message', (m) => order.push(m.contactId));
  const handle = async (maxNotifications: number) => {
    later();
    order.length = 0;
    return bob.client.handlePush(await checkPush(bob), { maxNotifications });
  };

  for (const text of ['a1', 'a2']) await alice.client.send(atInviter, text);
  await carol.client.send(c.atInviter, 'c1');
  for (const text of ['d1', 'd2']) await dave.client.send(d.atInviter, text);
  const [chat, summary, ...none] = await handle(2);
  assert.equal(none.length, 0);
  assert.equal(chat!.contactId, order.at(-1), 'the chat whose message was handled last');
  assert.deepEqual(
    { ...summary },
    { contactId: '', profileId: '', threadId: 'summary', category: 'summary', title: 'Hush', body: `${5 - chat!.count} new messages in 2 chats`, count: 5 - chat!.count, badge: 5 },
  );

  for (const [p, id] of [[alice, atInviter], [carol, c.atInviter], [dave, d.atInviter]] as const) await p.client.send(id, 'again');
  assert.deepEqual(await handle(1), [{ contactId: '', profileId: '', threadId: 'summary', category: 'summary', title: 'Hush', body: '3 new messages in 3 chats', count: 3, badge: 8 }]);

  await alice.client.send(atInviter, 'last');
  await carol.client.send(c.atInviter, 'last');
  assert.deepEqual(shown(await handle(2)).sort(), ['[message] Alice: last', '[message] Carol: last'], 'as many chats as allowed: no summary');
  for (const bad of [0, 1.5, -1]) await assert.rejects(bob.client.handlePush(await checkPush(bob), { maxNotifications: bad }), RangeError);
});

test("notify: false sends without waking the recipient; contacts made while new-contact notifications are off start muted", async (t) => {
  const { stack, alice, bob, atInviter, atAcceptor } = await asleepPair(t);
  let before = await nmsgs(stack);
  await alice.client.send(atInviter, 'quiet', { notify: false });
  assert.equal(await nmsgs(stack), before, 'no NMSG, so no push');
  await alice.client.send(atInviter, 'loud');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[many] Alice: loud (+1 more)'], 'the quiet one came with the next');
  assert.equal(bob.client.contacts().find((x) => x.id === atAcceptor)?.unread, 2);

  assert.equal(bob.client.newContactNotifications, true);
  await bob.client.setNewContactNotifications(false);
  assert.equal(JSON.parse((await bob.store.get('settings'))!).newContactNotifications, false, 'stored');
  const carol = await Phone.create(t, stack, 'Carol');
  const c = await connect(carol, bob);
  assert.equal(bob.client.contacts().find((x) => x.id === c.atAcceptor)?.notifications, false, 'a new contact starts muted');
  await bob.client.setNewContactNotifications(true);
  const dave = await Phone.create(t, stack, 'Dave');
  const d = await connect(dave, bob);
  assert.equal(bob.client.contacts().find((x) => x.id === d.atAcceptor)?.notifications, true);
  await untilSubscribed(bob, 2); // Alice and Dave: Carol's chat has no subscription
  before = await nmsgs(stack);
  await carol.client.send(c.atInviter, 'muted');
  assert.equal(await nmsgs(stack), before, 'no push for the muted new contact');
});

test('calls: ringing with answer and decline, performAction from a client not started, the caller told; rung out, a missed call', async (t) => {
  const stack = await startStack(t);
  let offset = 0; // Bob's clock: the relay's, moved on by the test
  const now = () => Date.now() + offset;
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob', { now });
  await bob.register();
  const { atInviter, atAcceptor } = await connect(alice, bob);
  await untilSubscribed(bob, 1);
  bob.client.stop();
  bob.skipPushes();
  const replies: ChatEvent[] = [];
  alice.client.on('callReply', (r) => replies.push(r));
  const calls: ChatEvent[] = [];
  const watchCalls = () => bob.client.on('call', (c) => calls.push(c));
  watchCalls();

  await assert.rejects(alice.client.call(atInviter, 'audio', { ringMs: 10 }), RangeError);
  const { callId } = await alice.client.call(atInviter, 'video', { ringMs: 30_000 });
  const [n] = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual(
    { ...n },
    {
      contactId: atAcceptor,
      profileId: bob.client.activeProfile,
      threadId: atAcceptor,
      category: 'call',
      title: 'Alice',
      body: 'Incoming video call',
      count: 1,
      badge: 1,
      callId,
      actions: [
        { id: 'answer-call', title: 'Answer' },
        { id: 'reject-call', title: 'Decline' },
      ],
    },
  );
  const call = calls[0] as Extract<ChatEvent, { type: 'call' }>;
  assert.equal(call.callId, callId);
  assert.equal(call.expiresAt, call.receivedAt + 30_000);

  // The user taps Answer: the app opens a client for it, not started.
  await bob.reopen({ now });
  watchCalls();
  const answered: unknown[] = [];
  bob.client.on('callAnswered', (a) => answered.push(a));
  await bob.client.performAction({ action: 'answer-call', contactId: atAcceptor, callId });
  assert.deepEqual(answered, [{ contactId: atAcceptor, callId, media: 'video' }]);
  assert.equal(bob.client.badge, 0, 'the call is read');
  await until('Alice told of the answer', () => replies.length === 1);
  assert.deepEqual(replies[0], { ...replies[0], type: 'callReply', contactId: atInviter, callId, reply: 'answer' });
  await assert.rejects(bob.client.performAction({ action: 'answer-call', contactId: atAcceptor, callId }), /no such call ringing/);

  offset += 1000;
  const { callId: declined } = await alice.client.call(atInviter);
  await bob.client.handlePush(await checkPush(bob));
  await bob.client.performAction({ action: 'reject-call', contactId: atAcceptor, callId: declined });
  await until('Alice told of the decline', () => replies.length === 2);
  assert.deepEqual([replies[1]!.type === 'callReply' && replies[1]!.reply, answered.length, bob.client.badge], ['decline', 1, 0]);

  offset += 1000;
  const { callId: rangOut } = await alice.client.call(atInviter, 'audio', { ringMs: 10_000 });
  assert.equal((await bob.client.handlePush(await checkPush(bob)))[0]?.category, 'call');
  offset += 20_000;
  await assert.rejects(bob.client.performAction({ action: 'reject-call', contactId: atAcceptor, callId: rangOut }), /the call is over/);

  await alice.client.call(atInviter, 'audio', { ringMs: 1000 });
  offset += 1000; // handled after its ring time, as by a device woken late
  const [missed] = await bob.client.handlePush(await checkPush(bob));
  assert.deepEqual([missed?.category, missed?.body, missed?.actions, missed?.callId], ['missed-call', 'Missed audio call', undefined, undefined]);
  await bob.client.setPreviewMode('hidden');
  await alice.client.call(atInviter, 'audio', { ringMs: 1000 });
  offset += 2000;
  assert.deepEqual(shown(await bob.client.handlePush(await checkPush(bob))), ['[missed-call] Hush: Missed call']);
  assert.equal(replies.length, 2, 'no reply for calls not acted on');

  for (const action of ['nope', 'toString'])
    await assert.rejects(bob.client.performAction({ action, contactId: atAcceptor } as never), (e: Error) => e instanceof TypeError && e.message === `unknown notification action: ${action}`);
  await assert.rejects(bob.client.performAction({ action: 'answer-call', contactId: atAcceptor }), (e: Error) => e instanceof TypeError && /needs the callId/.test(e.message));
  await assert.rejects(bob.client.performAction({ action: 'answer-call', contactId: 'nobody', callId }), ContactError);
});
