// Profiles: several identities on one device behind one device token and one
// push handler; deleting a profile, and wiping the whole client.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, Phone, startStack, until, untilSubscribed, type Stack } from './helpers.ts';

/** Tokens the notification server holds, whatever their status. */
const tokens = (stack: Stack) => Object.values(stack.ntf.ntf.store.counts().tokens).reduce((a, b) => a + b, 0);

test('two profiles on one phone: one token, one push handler, notifications tagged with their profile, one badge', async (t) => {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  const home = bob.client.activeProfile;
  const work = await bob.client.createProfile('Robert');
  assert.equal(bob.client.activeProfile, home, 'a new profile does not become the active one');
  const alice = await Phone.create(t, stack, 'Alice');
  const carol = await Phone.create(t, stack, 'Carol');
  const a = await connect(alice, bob);
  await Promise.all([carol.client.start(), bob.client.start()]);
  const { contactId: carolAtBob, link } = await bob.client.createInvitation({ profileId: work });
  const bobAtCarol = await carol.client.acceptInvitation(link);
  await until('Carol connected', () => carol.client.contacts()[0]?.state === 'ready');
  assert.equal(carol.client.contacts()[0]!.name, 'Robert', 'the work profile introduced itself with its own name');
  assert.equal(alice.client.contacts()[0]!.name, 'Bob');
  assert.deepEqual(
    bob.client.contacts().map((c) => [c.id, c.profileId]),
    [[a.atAcceptor, home], [carolAtBob, work]],
  );
  await untilSubscribed(bob, 2);
  bob.client.stop();
  bob.skipPushes();

  await alice.client.send(a.atInviter, 'for Bob');
  await carol.client.send(bobAtCarol, 'for Robert');
  const shown = await bob.handlePushes((s) => s.length === 2);
  assert.deepEqual(
    shown.map((n) => [n.profileId, `${n.title}: ${n.body}`]).sort(),
    [[home, 'Alice: for Bob'], [work, 'Carol: for Robert']].sort(),
  );
  assert.equal(shown.at(-1)!.badge, 2, 'one badge over both profiles');
  assert.deepEqual(
    bob.client.profiles().map((p) => [p.name, p.active, p.unread]),
    [['Bob', true, 1], ['Robert', false, 1]],
  );
  assert.equal(tokens(stack), 1, 'one device token at the notification server for both profiles');
});

test('deleting a profile deletes its contacts at the relay and in the store; the other profile goes on', async (t) => {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  const home = bob.client.activeProfile;
  const work = await bob.client.createProfile('Robert');
  await bob.client.setActiveProfile(work);
  const alice = await Phone.create(t, stack, 'Alice');
  const carol = await Phone.create(t, stack, 'Carol');
  const c = await connect(carol, bob); // in the active profile: work
  await bob.client.setActiveProfile(home);
  const a = await connect(alice, bob);
  assert.equal(bob.client.contacts().find((x) => x.id === c.atAcceptor)!.profileId, work);

  await bob.client.setActiveProfile(work);
  await bob.client.deleteProfile(work);
  assert.deepEqual(bob.client.profiles().map((p) => [p.id, p.active]), [[home, true]], 'the other profile is active now');
  assert.deepEqual(bob.client.contacts().map((x) => x.id), [a.atAcceptor]);
  assert.equal((await carol.client.send(c.atInviter, 'anyone?')).state, 'failed', "the work contact's queue is gone");
  const keys = await bob.store.keys('');
  assert.ok(!keys.some((k) => k.includes(work) || k.includes(c.atAcceptor)), `nothing of the profile is stored: ${keys}`);
  await alice.client.send(a.atInviter, 'still here');
  await until('Bob still gets Alice', () => bob.client.contacts()[0]!.unread === 1);
});

test('wipe: contacts deleted at the relay, the token at the notification server, the store emptied; the client starts over', async (t) => {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  const alice = await Phone.create(t, stack, 'Alice');
  const a = await connect(alice, bob);
  await untilSubscribed(bob, 1);
  await bob.client.createProfile('Robert');
  const address = await bob.client.createAddress();

  await bob.client.wipe();
  assert.equal(bob.client.address, undefined, 'the address went too');
  assert.deepEqual(bob.client.contactRequests(), []);
  assert.equal(bob.client.tokenStatus, undefined);
  assert.equal(tokens(stack), 0, 'TDEL');
  assert.deepEqual(bob.client.contacts(), []);
  assert.deepEqual(bob.client.profiles().map((p) => [p.name, p.active]), [['', true]]);
  assert.equal(bob.client.name, '');
  assert.deepEqual(await bob.store.keys(''), ['profile:' + bob.client.activeProfile, 'settings'], 'only the new profile and default settings');
  assert.equal((await alice.client.send(a.atInviter, 'hello?')).state, 'failed', "Bob's queue is gone");
  await assert.rejects(alice.client.sendContactRequest(address), /no longer in use/, "the address's queue is gone");

  // A new start: the same client makes contacts again.
  await bob.client.setName('Bob again');
  const carol = await Phone.create(t, stack, 'Carol');
  await connect(carol, bob);
  assert.equal(carol.client.contacts()[0]!.name, 'Bob again');
});

test('a store from before profiles opens as one profile with its name, every contact in it', async (t) => {
  const stack = await startStack(t);
  const bob = await Phone.create(t, stack, 'Bob');
  const alice = await Phone.create(t, stack, 'Alice');
  const a = await connect(alice, bob);
  // Back to the old layout: the name in the settings, contacts without a profile, no profile records.
  const settings = JSON.parse((await bob.store.get('settings'))!);
  const contact = JSON.parse((await bob.store.get('contact:' + a.atAcceptor))!);
  delete contact.profileId;
  const { activeProfile: _, ...old } = settings;
  await bob.store.write([
    ['settings', JSON.stringify({ ...old, name: 'Old Bob' })],
    ['contact:' + a.atAcceptor, JSON.stringify(contact)],
    ...(await bob.store.keys('profile:')).map((k) => [k, undefined] as const),
  ]);

  await bob.reopen();
  const [p] = bob.client.profiles();
  assert.deepEqual([bob.client.profiles().length, p!.name, p!.active], [1, 'Old Bob', true]);
  assert.equal(bob.client.contacts()[0]!.profileId, p!.id);
  assert.equal(JSON.parse((await bob.store.get('settings'))!).name, undefined, 'the name moved into the profile');
  await bob.client.start();
  await alice.client.send(a.atInviter, 'after the upgrade');
  await until('the message', () => bob.client.contacts()[0]!.unread === 1);
});
