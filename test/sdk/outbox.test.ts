// The outbox: what the user sent is kept until the relay takes it — across a
// relay that is down, a full queue, an app restart — and given up only after
// its time to live, each step told by messageStatus events.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ContactError } from '../../src/sdk/contacts.ts';
import type { MessageStatus } from '../../src/sdk/outbox.ts';
import { crypto, startRelay, type TestRelay } from '../helpers.ts';
import type { RelayLimits } from '../../src/relay/server.ts';
import { TestClock } from '../ntf/helpers.ts';
import { connect, Phone, startStack, until, type Stack } from './helpers.ts';

/** A relay of Bob's own that the test stops and starts again (same identity, store and port). */
async function ownRelay(t: TestContext, limits?: Partial<RelayLimits>) {
  const identity = crypto.ed25519KeyPair();
  let relay: TestRelay | undefined = await startRelay({ identity, ...(limits ? { limits } : {}) });
  const { store, address } = relay;
  const port = Number(new URL(address.replace(/^hush/, 'http')).port);
  t.after(() => relay?.stop());
  return {
    address,
    async stop() {
      await relay!.stop();
      relay = undefined;
    },
    async start() {
      relay = await startRelay({ identity, store, port, ...(limits ? { limits } : {}) });
    },
  };
}

/** Alice (on a test clock) and Bob, who receives on his own relay; connected, both online. */
async function pair(t: TestContext, limits?: Partial<RelayLimits>) {
  const stack: Stack = await startStack(t);
  const bobsRelay = await ownRelay(t, limits);
  const clock = new TestClock();
  const alice = await Phone.create(t, stack, 'Alice', { now: clock.now, timers: clock });
  const bob = await Phone.create(t, stack, 'Bob', { relays: [bobsRelay.address] });
  const ids = await connect(alice, bob);
  const statuses: MessageStatus[] = [];
  alice.client.on('messageStatus', (s) => statuses.push(s));
  const texts: string[] = [];
  bob.client.on('message', (m) => texts.push(m.text));
  return { stack, bobsRelay, clock, alice, bob, toBob: ids.atInviter, statuses, texts };
}

test('a message sent while the relay is down waits in the outbox, survives a restart of the app, and goes once the relay is back', async (t) => {
  const { bobsRelay, clock, alice, toBob, statuses, texts } = await pair(t);
  await alice.client.send(toBob, 'before');
  await until('the first message at Bob', () => texts.length === 1);

  await bobsRelay.stop();
  const sent = await alice.client.send(toBob, 'while down');
  assert.equal(sent.state, 'pending');
  assert.deepEqual(alice.client.pendingMessages(toBob).map((m) => m.messageId), [sent.messageId]);
  await clock.untilPending('a retry');

  // The app is killed and started again: the message is in the store, not in memory only.
  await alice.reopen({ now: clock.now, timers: clock });
  assert.deepEqual(alice.client.pendingMessages(toBob).map((m) => [m.messageId, m.kind]), [[sent.messageId, 'text']]);
  const after: MessageStatus[] = [];
  alice.client.on('messageStatus', (s) => after.push(s));
  await bobsRelay.start();
  await alice.client.start(); // online: the outbox is tried at once
  await until('the message at Bob', () => texts.length === 2);
  assert.deepEqual(texts, ['before', 'while down']);
  await until('sent reported', () => after.some((s) => s.messageId === sent.messageId && s.state === 'sent'));
  assert.deepEqual(alice.client.pendingMessages(toBob), []);
  assert.deepEqual(
    statuses.filter((s) => s.messageId === sent.messageId).map((s) => s.state),
    ['pending'],
    'the first run saw it stored; the second one sent it',
  );
});

test('a full queue (QUOTA): messages wait in order, retried with backoff, and arrive in order once the recipient reads', async (t) => {
  const { bob, clock, alice, toBob, statuses, texts } = await pair(t, { queueQuota: 2 });
  bob.client.stop(); // asleep: nothing is read from the queue
  const states = [];
  for (const text of ['one', 'two', 'three', 'four']) states.push((await alice.client.send(toBob, text)).state);
  assert.deepEqual(states, ['sent', 'sent', 'pending', 'pending']);
  assert.equal(alice.client.pendingMessages(toBob).length, 2);
  await clock.untilPending('a retry');
  const firstDelay = clock.pending[0]!;
  assert.ok(firstDelay >= 750 && firstDelay <= 1250, `first retry after about 1 s (${firstDelay})`);

  // Still full: the retry fails and the next one waits longer (tries: at its send, at the next send, now).
  clock.advance(firstDelay);
  await until('a third, longer retry', () => clock.pending.length === 1 && clock.pending[0]! > 1250);
  assert.equal(alice.client.pendingMessages(toBob)[0]!.attempts, 3);

  await bob.client.start(); // Bob reads: the queue empties
  await until('two messages at Bob', () => texts.length === 2);
  clock.advance(clock.pending[0]!);
  await until('all four at Bob', () => texts.length === 4);
  assert.deepEqual(texts, ['one', 'two', 'three', 'four']);
  assert.deepEqual(alice.client.pendingMessages(toBob), []);
  assert.equal(statuses.filter((s) => s.state === 'sent').length, 4);
});

test('a hello that cannot go is sent again; a hello the relay refuses deletes the contact', async (t) => {
  const stack = await startStack(t);
  const alicesRelay = await ownRelay(t);
  const clock = new TestClock();
  const alice = await Phone.create(t, stack, 'Alice', { relays: [alicesRelay.address] });
  const bob = await Phone.create(t, stack, 'Bob', { now: clock.now, timers: clock });
  await alice.client.start();
  await bob.client.start();
  const { contactId, link } = await alice.client.createInvitation();

  await alicesRelay.stop();
  const atBob = await bob.client.acceptInvitation(link);
  assert.equal(bob.client.contacts()[0]!.state, 'accepted');
  assert.deepEqual(bob.client.pendingMessages(atBob).map((m) => m.kind), ['hello']);
  await alicesRelay.start();
  await clock.untilPending('a retry of the hello');
  clock.advance(clock.pending[0]!);
  await until('both connected', () =>
    alice.client.contacts().find((c) => c.id === contactId)?.state === 'ready' && bob.client.contacts()[0]?.state === 'ready');

  // The link was used: its queue is secured now, and a second acceptance is refused.
  const carol = await Phone.create(t, stack, 'Carol');
  await assert.rejects(carol.client.acceptInvitation(link), (e) => e instanceof ContactError && /used already/.test(e.message));
  assert.deepEqual(carol.client.contacts(), []);
});

test('a message the relay does not take within its time to live fails', async (t) => {
  const stack = await startStack(t);
  const bobsRelay = await ownRelay(t);
  const clock = new TestClock();
  const alice = await Phone.create(t, stack, 'Alice', { now: clock.now, timers: clock, outboxTtlMs: 60_000 });
  const bob = await Phone.create(t, stack, 'Bob', { relays: [bobsRelay.address] });
  const { atInviter: toBob } = await connect(alice, bob);
  const statuses: MessageStatus[] = [];
  alice.client.on('messageStatus', (s) => statuses.push(s));
  await bobsRelay.stop();
  const { messageId } = await alice.client.send(toBob, 'lost cause');
  await clock.untilPending('a retry');
  clock.advance(61_000);
  await until('failed reported', () => statuses.some((s) => s.state === 'failed'));
  assert.deepEqual(statuses.map((s) => [s.messageId, s.state]), [[messageId, 'pending'], [messageId, 'failed']]);
  assert.match(statuses[1]!.error!, /not taken by the relay within its time to live \(60 s\)/);
  assert.deepEqual(alice.client.pendingMessages(toBob), []);
  assert.deepEqual(clock.pending, [], 'no retry left (nor a reconnect: Alice receives nothing on that relay)');
});
