// The notification lifecycle through the SDK: token statuses, modes and
// switching between them, muting, preview modes, a replaced device token.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { TokenStatus } from '../../src/ntf/protocol.ts';
import { apnsToken } from '../../src/sdk/device.ts';
import type { Notification } from '../../src/sdk/push-handler.ts';
import type { WebSocketFactory } from '../../src/core/client.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { deserialize, KEYS, type Contact } from '../../src/sdk/records.ts';
import { connect as connectRelay, crypto } from '../helpers.ts';
import { TestClock, until } from '../ntf/helpers.ts';
import { asleepPair, connect, nmsgs, Phone, startStack, untilSubscribed } from './helpers.ts';

const status = (p: Phone) => p.client.tokenStatus?.status;
const shown = (ns: Notification[]) => ns.map((n) => `[${n.category}] ${n.title}: ${n.body}`);

test('token status goes NEW → REGISTERED → ACTIVE, each change an event', async (t) => {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  const seen: Array<TokenStatus | undefined> = [];
  bob.client.on('tokenStatus', (s) => seen.push(s));
  assert.equal(bob.client.tokenStatus, undefined);
  await bob.register();
  assert.deepEqual(seen, [{ status: 'NEW' }, { status: 'REGISTERED' }, { status: 'ACTIVE' }]);
  await bob.client.checkNotifications();
  assert.equal(seen.length, 3, 'an unchanged status is no event');
});

test('preview modes: message text, contact name only, hidden', async (t) => {
  const { alice, bob, atInviter, later } = await asleepPair(t);
  const result: string[] = [];
  for (const [mode, text] of [['message', 'see you at 8'], ['contact', 'the secret plan'], ['hidden', 'the other plan']] as const) {
    later();
    await bob.client.setPreviewMode(mode);
    await alice.client.send(atInviter, text);
    result.push(...shown(await bob.handlePushes((s) => s.length > 0)));
  }
  assert.deepEqual(result, ['[message] Alice: see you at 8', '[message] Alice: New message', '[message] Hush: New message']);
});

test('instant → periodic: the subscriptions go, check pushes come; → instant: they come back; → off: the token goes', async (t) => {
  const clock = new TestClock();
  const stack = await startStack(t, { ntf: { clock } });
  const { alice, bob, atInviter, later } = await asleepPair(t, stack);
  const tokens = () => stack.ntf.ntf.store.counts().tokens.ACTIVE;
  const subs = () => stack.ntf.ntf.store.counts().subscriptions;

  await bob.client.setNotificationMode('periodic', 30);
  assert.deepEqual(bob.client.contacts().map((c) => c.subscription), [undefined]);
  assert.equal(subs().ACTIVE ?? 0, 0, 'no subscription left at the server');
  let before = await nmsgs(stack);
  await alice.client.send(atInviter, 'while periodic');
  assert.equal(await nmsgs(stack), before, 'no NMSG, so no message push, in periodic mode');
  clock.advance(31 * 60_000);
  stack.ntf.ntf.runCron();
  later();
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0, 'the check push')), ['[message] Alice: while periodic']);
  assert.equal(bob.handledPushes.at(-1)!.headers['apns-push-type'], 'background');

  await bob.client.setNotificationMode('instant');
  await untilSubscribed(bob, 1);
  later();
  await alice.client.send(atInviter, 'instant again');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[message] Alice: instant again']);

  const statuses: Array<TokenStatus | undefined> = [];
  bob.client.on('tokenStatus', (s) => statuses.push(s));
  await bob.client.setNotificationMode('off');
  assert.equal(bob.client.tokenStatus, undefined);
  assert.deepEqual(statuses, [undefined]);
  assert.equal(tokens(), 0, 'TDEL removed the token');
  before = await nmsgs(stack);
  await alice.client.send(atInviter, 'while off');
  assert.equal(await nmsgs(stack), before, 'no NMSG, so no push, while off');

  await bob.client.setNotificationMode('instant');
  const v = await bob.nextPush('a new verification push');
  await bob.client.handlePush(v.payload);
  assert.equal(status(bob), 'ACTIVE');
  await untilSubscribed(bob, 1);
  later();
  await alice.client.send(atInviter, 'on again');
  // the message sent while off was never fetched: it comes with this one
  const ns = await bob.handlePushes((s) => s.length > 0);
  assert.deepEqual(shown(ns), ['[many] Alice: on again (+1 more)']);
  assert.equal(ns[0]!.count, 2);
});

test('muting a contact removes its subscription; unmuting brings pushes back', async (t) => {
  const stack = await startStack(t);
  const { alice, bob, atInviter, atAcceptor, later } = await asleepPair(t, stack);
  const carol = await Phone.create(t, stack, 'Carol');
  bob.client.on('error', (e) => assert.fail(`${e.what}: ${e.error}`));
  const { atInviter: bobAtCarol } = await connect(carol, bob);
  await untilSubscribed(bob, 2);
  bob.client.stop();
  bob.skipPushes();

  await bob.client.setContactNotifications(atAcceptor, false);
  assert.deepEqual(
    bob.client.contacts().map((c) => [c.name, c.notifications, c.subscription]),
    [['Alice', false, undefined], ['Carol', true, 'ACTIVE']],
  );
  const before = await nmsgs(stack);
  await alice.client.send(atInviter, 'muted');
  assert.equal(await nmsgs(stack), before, 'no NMSG, so no push, for a muted contact');
  later();
  await carol.client.send(bobAtCarol, 'not muted');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[message] Carol: not muted']);

  await bob.client.setContactNotifications(atAcceptor, true);
  await untilSubscribed(bob, 2);
  later();
  await alice.client.send(atInviter, 'unmuted');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[many] Alice: unmuted (+1 more)']);
});

test('a new device token from the OS: TRPL, verified again, pushes go to the new token', async (t) => {
  const { alice, bob, atInviter, later } = await asleepPair(t);
  const oldToken = bob.token;
  const before = bob.stack.apns.pushes.length;
  bob.token = randomBytes(32);
  await bob.client.registerDevice(apnsToken(bob.token));
  assert.equal(bob.client.tokenStatus!.status as string, 'REGISTERED');
  const v = await bob.nextPush('the verification push to the new token');
  await bob.client.handlePush(v.payload);
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE');
  assert.equal(bob.stack.ntf.ntf.store.counts().tokens.ACTIVE, 1, 'replaced, not added');
  later();
  await alice.client.send(atInviter, 'to the new token');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[message] Alice: to the new token']);
  assert.equal(bob.stack.apns.pushes.slice(before).filter((p) => p.token === oldToken.toString('hex')).length, 0, 'nothing more to the old token');
});

test('Apple rejects the token: the periodic check reports INVALID(BAD)', async (t) => {
  const { alice, bob, atInviter } = await asleepPair(t);
  const seen: Array<TokenStatus | undefined> = [];
  bob.client.on('tokenStatus', (s) => seen.push(s));
  bob.stack.apns.replyTo(bob.token.toString('hex'), { status: 400, reason: 'BadDeviceToken' });
  await alice.client.send(atInviter, 'will not arrive');
  await until('the server to take the token for invalid', () => bob.stack.ntf.ntf.store.counts().tokens.INVALID === 1);
  await bob.client.checkNotifications();
  assert.deepEqual(bob.client.tokenStatus, { status: 'INVALID', reason: 'BAD' });
  assert.deepEqual(seen, [{ status: 'INVALID', reason: 'BAD' }]);
});

test('a subscription gone terminal (the queue got a new notifier elsewhere) is repaired by the periodic check', async (t) => {
  const { alice, bob, atInviter, atAcceptor, later } = await asleepPair(t);
  // Another device with Bob's queue keys replaces the notifier: the server's subscription becomes DELETED.
  const contact = deserialize<Contact>((await bob.store.get(KEYS.contact + atAcceptor))!);
  const other = await connectRelay(bob.stack.relayAddress);
  t.after(() => other.close());
  await other.enableNotifications(contact.rcv.rcvId, contact.rcv.rcvAuth.privateKey, randomBytes(32), crypto.x25519KeyPair().publicKey);
  await until('the server saw DELD', () => bob.stack.ntf.ntf.store.counts().subscriptions.DELETED === 1);
  await bob.client.checkNotifications(); // SCHK: DELETED → SDEL, NKEY, SNEW
  assert.equal(bob.stack.ntf.ntf.store.counts().subscriptions.DELETED ?? 0, 0, 'the dead subscription was deleted');
  await untilSubscribed(bob, 1);
  later();
  await alice.client.send(atInviter, 'after the repair');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[message] Alice: after the repair']);
});

test('NKEYs go to a relay together and SNEWs to the server together: one block each for ten contacts', async (t) => {
  const stack = await startStack(t);
  const frames = new Map<string, number>();
  const counting: WebSocketFactory = (url) => {
    const ws = nodeWebSocket()(url);
    const send = ws.send.bind(ws);
    ws.send = (d) => {
      frames.set(url, (frames.get(url) ?? 0) + 1);
      send(d);
    };
    return ws;
  };
  const bob = await Phone.create(t, stack, 'Bob', { webSocket: counting });
  await bob.register();
  await bob.client.setNotificationMode('periodic');
  for (let i = 0; i < 10; i++) await connect(await Phone.create(t, stack, `Friend ${i}`), bob);
  // Bob's last frames went out with his ACKs: once the relay holds no message, none is on its way.
  await until('every message acknowledged', () => stack.relay.store.counts().messages === 0);
  bob.client.stop();
  frames.clear();
  await bob.client.setNotificationMode('instant');
  const relayUrl = [...frames.keys()].find((u) => stack.relayAddress.endsWith(new URL(u).host));
  const ntfUrl = [...frames.keys()].find((u) => stack.ntf.address.endsWith(new URL(u).host));
  // relay: a new connection (hello block) and one block of ten NKEYs; NTF: TCRN, then one block of ten SNEWs
  assert.deepEqual([frames.get(relayUrl!), frames.get(ntfUrl!)], [2, 2]);
  assert.equal(bob.client.contacts().filter((c) => c.subscription === 'NEW').length, 10);
});

test('a verification push that outruns the TNEW reply still verifies the token', async (t) => {
  const stack = await startStack(t);
  // Replies from the servers can be held back, as a slow network would.
  let held: Array<() => void> | undefined;
  const holding: WebSocketFactory = (url) => {
    const ws = nodeWebSocket()(url);
    const onmessage = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(ws), 'onmessage')!;
    Object.defineProperty(ws, 'onmessage', {
      set: (fn: (ev: { data: unknown }) => void) =>
        onmessage.set!.call(ws, (ev: { data: unknown }) => (held ? held.push(() => fn(ev)) : fn(ev))),
    });
    return ws;
  };
  const bob = await Phone.create(t, stack, 'Bob', { webSocket: holding });
  await bob.register();
  await bob.client.setNotificationMode('off'); // TDEL; the connection stays
  held = [];
  const registering = bob.client.setNotificationMode('instant'); // TNEW, its reply held
  const v = await bob.nextPush('the verification push');
  // The push is read at once: no token secret yet, so the handler waits for the registration.
  const handling = bob.client.handlePush(v.payload);
  const release = held;
  held = undefined;
  for (const deliver of release) deliver();
  await registering;
  assert.deepEqual(await handling, []);
  assert.equal(status(bob), 'ACTIVE');
});

test('sending to a contact that is not connected yet is refused', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const { contactId } = await alice.client.createInvitation();
  await assert.rejects(alice.client.send(contactId, 'too early'), { name: 'ContactError' });
  await assert.rejects(alice.client.send('no-such-contact', 'hi'), { name: 'ContactError' });
});

test('a sleeping device that accepts an invitation is woken by the answer: its notifier exists before the hello goes', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  await alice.client.start();
  const { link } = await alice.client.createInvitation();
  bob.skipPushes();
  // Bob never goes online: the moment acceptInvitation returns, his queue already has its notifier.
  const id = await bob.client.acceptInvitation(link);
  assert.equal(bob.client.contacts().find((c) => c.id === id)?.subscription, 'NEW');
  assert.deepEqual(shown(await bob.handlePushes((s) => s.length > 0)), ['[contact] Alice: Connected']);
  assert.equal(bob.client.contacts()[0]?.state, 'ready');
});
