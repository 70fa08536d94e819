// Contact addresses (docs/sdk.md §4.6): a long-lived link anyone may send a
// contact request to, accepted or rejected by its owner; online and through
// pushes to sleeping phones; the address deleted without losing contacts; a
// request sent again, a flood, bad links; and that the relay cannot link the
// address queue to the contacts made through it.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { RelayClient } from '../../src/relay/client.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { ContactError } from '../../src/sdk/contacts.ts';
import { formatContactAddress, parseContactAddress } from '../../src/sdk/invitation.ts';
import type { Notification } from '../../src/sdk/push-handler.ts';
import { deserialize, KEYS, type AddressRecord, type Contact } from '../../src/sdk/records.ts';
import { Phone, startStack, until, untilSubscribed, type Stack } from './helpers.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const state = (p: Phone, id: string) => p.client.contacts().find((c) => c.id === id)?.state;
const stored = async <T>(p: Phone, key: string) => {
  const text = await p.store.get(key);
  return text === undefined ? undefined : deserialize<T>(text);
};

/** Collects a phone's events of one kind. */
function events<K extends 'contactRequest' | 'notification' | 'error' | 'contact' | 'message'>(p: Phone, kind: K) {
  const list: unknown[] = [];
  p.client.on(kind, (e) => list.push(e));
  return list as Array<Parameters<Parameters<typeof p.client.on<K>>[1]>[0]>;
}

/** Alice (with an address) and Bob, both online; Bob's request arrived at Alice. */
async function requested(t: TestContext, stack?: Stack) {
  stack ??= await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await alice.client.start();
  await bob.client.start();
  const requests = events(alice, 'contactRequest');
  const shown = events(alice, 'notification');
  const link = await alice.client.createAddress();
  const atBob = await bob.client.sendContactRequest(link);
  await until('the request at Alice', () => requests.length === 1);
  return { stack, alice, bob, link, atBob, request: requests[0]!, requests, shown };
}

test('connecting through an address, online: request, notification, accept, messages both ways', async (t) => {
  const { alice, bob, link, atBob, request, shown } = await requested(t);
  assert.match(link, /^hush-address:[A-Za-z0-9_-]+$/);
  assert.equal(alice.client.address, link);
  assert.equal(await alice.client.createAddress(), link, 'one address per client');
  assert.match(alice.client.addressQr(), /^<svg[^>]*>.*<\/svg>$/s);
  assert.equal(state(bob, atBob), 'requested');
  await assert.rejects(bob.client.send(atBob, 'hi'), /not connected yet/);

  assert.deepEqual(request, { type: 'contactRequest', requestId: request.requestId, name: 'Bob' });
  assert.deepEqual(alice.client.contactRequests(), [{ id: request.requestId, name: 'Bob', receivedAt: alice.client.contactRequests()[0]!.receivedAt }]);
  await until('its notification', () => shown.length === 1);
  assert.deepEqual(shown[0], {
    contactId: request.requestId,
    profileId: alice.client.activeProfile,
    threadId: request.requestId,
    category: 'request',
    title: 'Contact request',
    body: 'Bob wants to connect',
    count: 1,
    badge: 0,
    requestId: request.requestId,
    actions: [
      { id: 'accept-contact', title: 'Accept' },
      { id: 'reject-contact', title: 'Reject' },
    ],
  } satisfies Notification);

  const connected = events(bob, 'contact');
  const atAlice = await alice.client.acceptContactRequest(request.requestId);
  assert.equal(atAlice, request.requestId, 'the contact keeps the request ID');
  assert.deepEqual(alice.client.contactRequests(), []);
  assert.equal(await alice.store.get(KEYS.request + request.requestId), undefined);
  assert.equal(state(alice, atAlice), 'ready');
  assert.equal(alice.client.contacts()[0]!.name, 'Bob');
  await until('Bob connected', () => connected.length === 1);
  assert.equal(state(bob, atBob), 'ready');
  assert.deepEqual(connected.map((e) => [e.contactId, e.name]), [[atBob, 'Alice']]);

  const atAliceGot = events(alice, 'message');
  const atBobGot = events(bob, 'message');
  await bob.client.send(atBob, 'hello Alice');
  await alice.client.send(atAlice, 'hello Bob');
  await until('both messages', () => atAliceGot.length === 1 && atBobGot.length === 1);
  assert.equal(atAliceGot[0]!.text, 'hello Alice');
  assert.equal(atBobGot[0]!.text, 'hello Bob');
});

/** Reads the address record as stored. */
const addressRecord = (p: Phone) => stored<AddressRecord>(p, KEYS.address);

test('connecting through an address while both phones sleep: pushes wake them for the request, the answer and messages', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await alice.register();
  await bob.register();
  const link = await alice.client.createAddress();
  await until('the address subscribed', async () => {
    await alice.client.checkNotifications();
    return (await addressRecord(alice))?.ntf.subStatus === 'ACTIVE';
  });
  alice.skipPushes();

  const atBob = await bob.client.sendContactRequest(link);
  await untilSubscribed(bob, 1); // Bob's queue has its subscription before the answer can come
  bob.skipPushes();
  const requests = events(alice, 'contactRequest');
  const [n] = await alice.handlePushes((s) => s.length > 0, 'the request notification');
  assert.equal(n!.category, 'request');
  assert.equal(n!.body, 'Bob wants to connect');
  assert.deepEqual(requests.map((r) => r.requestId), [n!.requestId]);

  // The user taps Accept: the app (not online) hands the button to performAction.
  assert.deepEqual(n!.actions?.map((a) => a.id), ['accept-contact', 'reject-contact']);
  await alice.client.performAction({ action: 'accept-contact', contactId: n!.contactId, requestId: n!.requestId! });
  const atAlice = n!.requestId!;
  assert.equal(alice.client.contacts()[0]?.id, atAlice, 'the contact keeps the request ID');
  const [c] = await bob.handlePushes((s) => s.length > 0, 'the connected notification');
  assert.deepEqual([c!.contactId, c!.category, c!.title, c!.body], [atBob, 'contact', 'Alice', 'Connected']);
  assert.equal(state(bob, atBob), 'ready');

  await untilSubscribed(alice, 1);
  alice.skipPushes();
  await bob.client.send(atBob, 'over the new queue');
  const [m] = await alice.handlePushes((s) => s.length > 0, 'the message notification');
  assert.deepEqual([m!.contactId, m!.category, m!.body], [atAlice, 'message', 'over the new queue']);
});

test('a rejected request is gone; requests and the address survive a restart; unknown request IDs are errors', async (t) => {
  const { alice, bob, link, atBob, request } = await requested(t);
  await alice.reopen();
  assert.equal(alice.client.address, link);
  assert.deepEqual(alice.client.contactRequests().map((r) => r.id), [request.requestId]);
  await assert.rejects(alice.client.performAction({ action: 'reject-contact', contactId: request.requestId }), (e) => e instanceof TypeError && /needs the requestId/.test(e.message));
  await alice.client.performAction({ action: 'reject-contact', contactId: request.requestId, requestId: request.requestId });
  assert.deepEqual(alice.client.contactRequests(), []);
  assert.equal(await alice.store.get(KEYS.request + request.requestId), undefined);
  assert.deepEqual(alice.client.contacts(), []);
  assert.equal(state(bob, atBob), 'requested', 'the requester is told nothing');
  await assert.rejects(alice.client.rejectContactRequest(request.requestId), (e) => e instanceof ContactError && /no such contact request/.test(e.message));
  await assert.rejects(alice.client.acceptContactRequest('nothing'), (e) => e instanceof ContactError && /no such contact request/.test(e.message));
});

test('deleting the address keeps its contacts and pending requests; its link stops working', async (t) => {
  const { stack, alice, bob, link, atBob, request } = await requested(t);
  const carol = await Phone.create(t, stack, 'Carol');
  await carol.client.start();
  await carol.client.sendContactRequest(link);
  await until('Carol\'s request', () => alice.client.contactRequests().length === 2);
  const atAlice = await alice.client.acceptContactRequest(request.requestId);
  await until('Bob connected', () => state(bob, atBob) === 'ready');

  await alice.client.deleteAddress();
  assert.equal(alice.client.address, undefined);
  assert.equal(await alice.store.get(KEYS.address), undefined);
  assert.throws(() => alice.client.addressQr(), ContactError);
  assert.equal(state(alice, atAlice), 'ready');
  const got = events(bob, 'message');
  await alice.client.send(atAlice, 'still here');
  await until('the message', () => got.length === 1);

  // Carol's request, already in, can still be answered: the answer goes to her own queue.
  const [carolRequest] = alice.client.contactRequests();
  await alice.client.acceptContactRequest(carolRequest!.id);
  await until('Carol connected', () => carol.client.contacts()[0]?.state === 'ready');

  const dave = await Phone.create(t, stack, 'Dave');
  await assert.rejects(dave.client.sendContactRequest(link), (e) => e instanceof ContactError && /no longer in use/.test(e.message));
  assert.deepEqual(dave.client.contacts(), [], 'the contact made for it is gone');
  const again = await alice.client.createAddress();
  assert.notEqual(again, link);
});

test('a request sent again is recognized: one pending request, one event', async (t) => {
  const stack = await startStack(t);
  // Capture the request's SEND, to send the same envelope once more as a retry would.
  const sent: Array<{ sndId: Uint8Array; body: Uint8Array }> = [];
  const send = RelayClient.prototype.send;
  RelayClient.prototype.send = function (sndId, body, opts) {
    sent.push({ sndId, body });
    return send.call(this, sndId, body, opts);
  };
  t.after(() => void (RelayClient.prototype.send = send));
  const { alice, requests, link } = await requested(t, stack);
  const address = parseContactAddress(link);
  assert.ok(address.ok);
  const request = sent.find((s) => hex(s.sndId) === hex(address.value.sndId))!;
  const relay = await RelayClient.connect(stack.relayAddress, { webSocket: nodeWebSocket() });
  t.after(() => relay.close());
  await send.call(relay, request.sndId, request.body, { notify: true });
  await until('the copy handled', async () => (await addressRecord(alice))!.seen.length === 2);
  assert.equal(requests.length, 1);
  assert.equal(alice.client.contactRequests().length, 1);
});

test('pending requests are capped: one over the cap is refused and reported', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice', { maxContactRequests: 2 });
  await alice.client.start();
  const errors = events(alice, 'error');
  const link = await alice.client.createAddress();
  for (const name of ['Bob', 'Carol']) await (await Phone.create(t, stack, name)).client.sendContactRequest(link);
  await until('two requests', () => alice.client.contactRequests().length === 2);
  await (await Phone.create(t, stack, 'Dave')).client.sendContactRequest(link);
  await until('the third refused', () => errors.length === 1);
  assert.match(String((errors[0]!.error as Error).message), /2 contact requests wait for an answer already/);
  assert.deepEqual(alice.client.contactRequests().map((r) => r.name), ['Bob', 'Carol']);
  await alice.client.rejectContactRequest(alice.client.contactRequests()[0]!.id);
  await (await Phone.create(t, stack, 'Erin')).client.sendContactRequest(link);
  await until('room again', () => alice.client.contactRequests().length === 2);
  assert.deepEqual(alice.client.contactRequests().map((r) => r.name), ['Carol', 'Erin']);
});

test('the relay cannot link the address queue to the contact made through it', async (t) => {
  const stack = await startStack(t);
  // Every relay command of every client in this process (the NTF server's too), in order.
  const commands: Array<{ id: string; type: string }> = [];
  const command = RelayClient.prototype.command;
  RelayClient.prototype.command = function (entityId, c, authKey) {
    commands.push({ id: hex(entityId), type: c.type });
    return command.call(this, entityId, c, authKey);
  };
  t.after(() => void (RelayClient.prototype.command = command));
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await alice.register();
  await bob.register();
  await alice.client.start();
  await bob.client.start();
  const link = await alice.client.createAddress();
  await until('the address subscribed', async () => {
    await alice.client.checkNotifications();
    return (await addressRecord(alice))?.ntf.subStatus === 'ACTIVE';
  });
  const atBob = await bob.client.sendContactRequest(link);
  await until('the request', () => alice.client.contactRequests().length === 1);
  const address = (await addressRecord(alice))!;
  const addressIds = new Set([address.rcv.rcvId, address.rcv.sndId, address.ntf.notifier!.notifierId].map(hex));
  const before = commands.length;

  const atAlice = await alice.client.acceptContactRequest(alice.client.contactRequests()[0]!.id);
  await until('Bob connected', () => state(bob, atBob) === 'ready');
  const got = [events(alice, 'message'), events(bob, 'message')];
  await bob.client.send(atBob, 'one');
  await alice.client.send(atAlice, 'two');
  await until('both messages', () => got.every((g) => g.length === 1));
  await untilSubscribed(alice, 1);
  await untilSubscribed(bob, 1);

  const mine = (await stored<Contact>(alice, KEYS.contact + atAlice))!;
  const theirs = (await stored<Contact>(bob, KEYS.contact + atBob))!;
  const contactIds = [mine.rcv.rcvId, mine.rcv.sndId, mine.ntf.notifier!.notifierId, theirs.rcv.rcvId, theirs.rcv.sndId, theirs.ntf.notifier!.notifierId, theirs.snd!.sndId, mine.snd!.sndId].map(hex);
  for (const id of contactIds) assert.ok(!addressIds.has(id), 'the contact uses none of the address queue\'s IDs');
  assert.notEqual(hex(mine.e2e.key.publicKey), hex(address.key.publicKey), 'the contact has its own e2e key');
  const later = commands.slice(before).filter((c) => addressIds.has(c.id));
  assert.deepEqual(later.filter((c) => c.type !== 'ACK'), [], 'no command on the address queue after acceptance but an ACK');
  assert.ok(commands.slice(before).some((c) => c.id === hex(mine.rcv.rcvId)), 'the contact\'s own queue is used');
});

test('bad links and keys give clear errors', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  const isError = (re: RegExp) => (e: unknown) => e instanceof ContactError && re.test(e.message);
  assert.throws(() => alice.client.addressQr(), isError(/there is no contact address/));
  const { link: invitation } = await alice.client.createInvitation();
  await assert.rejects(bob.client.sendContactRequest(invitation), isError(/^not a contact address: this is an invitation, not a contact address$/));
  await assert.rejects(bob.client.sendContactRequest('hello'), isError(/^not a contact address: a contact address starts with hush-address:$/));
  const link = await alice.client.createAddress();
  await assert.rejects(bob.client.acceptInvitation(link), isError(/^not an invitation: this is a contact address, not an invitation$/));
  const parsed = parseContactAddress(link);
  assert.ok(parsed.ok);
  const weak = formatContactAddress({ ...parsed.value, e2eKey: new Uint8Array(32) });
  await assert.rejects(bob.client.sendContactRequest(weak), isError(/^the contact address holds a bad key$/));
  assert.deepEqual(bob.client.contacts(), [], 'nothing made for a bad link');
  await assert.rejects(bob.client.sendContactRequest('https://example.org/chat'), isError(/^not a contact address: the web link has no contact address after #$/));
});
