// The invitation handshake at its edges: the inviter's ready sent again, and
// lifecycle work that runs while the hello is being handled.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RelayClient } from '../../src/relay/client.ts';
import { Phone, startStack, until } from './helpers.ts';

/** Replaces a RelayClient method for the test's length. */
function patch<K extends 'send'>(t: import('node:test').TestContext, name: K, wrap: (orig: RelayClient[K]) => RelayClient[K]): void {
  const orig = RelayClient.prototype[name];
  RelayClient.prototype[name] = wrap(orig);
  t.after(() => (RelayClient.prototype[name] = orig));
}

test('a ready sent again after its reply was lost is byte for byte the same, even after a name change', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await alice.client.start();
  await bob.client.start();
  const { link } = await alice.client.createInvitation();
  const readies: Uint8Array[] = [];
  let sends = 0;
  patch(t, 'send', (orig) =>
    async function (this: RelayClient, ...a: Parameters<RelayClient['send']>) {
      const n = ++sends; // 1: Bob's hello; 2, 3: Alice's ready
      if (n >= 2) readies.push(new Uint8Array(a[1]));
      const r = await orig.apply(this, a);
      if (n === 2) {
        await alice.client.setName('Alicia');
        throw new Error('the reply was lost');
      }
      return r;
    },
  );
  await bob.client.acceptInvitation(link);
  await until('the first ready sent', () => readies.length === 1);
  await until('Alice reported the failure', () => alice.client.contacts()[0]?.state === 'invited');
  alice.client.stop();
  await alice.client.start(); // SUB again: the unacknowledged hello comes again
  await until('the ready sent again', () => readies.length === 2);
  assert.deepEqual(Buffer.from(readies[1]!), Buffer.from(readies[0]!), 'one message key, one plaintext');
  await until('both connected', () => alice.client.contacts()[0]?.state === 'ready' && bob.client.contacts()[0]?.state === 'ready');
  assert.equal(bob.client.contacts()[0]?.name, 'Alice', 'the name the contact was made with');
});

test('muting a contact while its hello is handled is kept', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await alice.register();
  await alice.client.start();
  await bob.client.start();
  const { contactId, link } = await alice.client.createInvitation();
  // KEY is an instance field of RelayClient: wrap it on Alice's next connection only
  const connect = RelayClient.connect;
  t.after(() => (RelayClient.connect = connect));
  RelayClient.connect = async (...a: Parameters<typeof connect>) => {
    const client = await connect.apply(RelayClient, a);
    const secure = client.secure;
    client.secure = async (...b: Parameters<typeof secure>) => {
      await alice.client.setContactNotifications(contactId, false); // Alice's KEY, handling the hello
      return secure(...b);
    };
    return client;
  };
  alice.client.stop();
  await alice.client.start();
  RelayClient.connect = connect;
  await bob.client.acceptInvitation(link);
  await until('connected', () => alice.client.contacts()[0]?.state === 'ready');
  const c = alice.client.contacts()[0]!;
  assert.equal(c.notifications, false, 'still muted');
  assert.equal(c.subscription, undefined, 'no subscription');
});
