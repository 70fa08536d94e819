// The invitation handshake at its edges: the inviter's ready sent again,
// lifecycle work that runs while the hello is being handled, and a hello
// carrying keys of small order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RelayClient } from '../../src/relay/client.ts';
import { encodeContent, type Content } from '../../src/sdk/content.ts';
import { encrypt, initRatchet } from '../../src/sdk/e2e.ts';
import { parseInvitation } from '../../src/sdk/invitation.ts';
import { connect as connectRelay, crypto, SMALL_ORDER_KEYS } from '../helpers.ts';
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

test('a hello or first message with a key of small order is refused with a clear error; the invitation stays open', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  await alice.client.start();
  const errors: string[] = [];
  alice.client.on('error', (e) => errors.push(e.error instanceof Error ? e.error.message : String(e.error)));
  const { link } = await alice.client.createInvitation();
  const inv = parseInvitation(link);
  assert.ok(inv.ok);
  const mallory = await connectRelay(stack.relayAddress);
  t.after(() => mallory.close());
  /** Mallory's first message to Alice's queue: `hello` as content, `firstKey` in the envelope's header. */
  const first = async (sndAuthKey: Uint8Array, firstKey?: Uint8Array) => {
    const mine = crypto.x25519KeyPair();
    const ratchet = initRatchet(crypto, 'acceptor', mine, inv.value.e2eKey)!;
    const hello: Content = {
      type: 'hello',
      name: 'Mallory',
      replyRelay: stack.relayAddress,
      replySndId: crypto.randomBytes(24),
      replySndKey: crypto.x25519KeyPair().privateKey,
      sndAuthKey,
    };
    await mallory.send(inv.value.sndId, encrypt(crypto, ratchet, encodeContent(hello), firstKey ?? mine.publicKey).envelope);
  };
  for (const weak of SMALL_ORDER_KEYS) {
    await first(weak);
    await until('the hello refused', () => errors.includes('the hello carries a bad sender key'));
    await first(crypto.x25519KeyPair().publicKey, weak);
    await until('the first message refused', () => errors.includes('the first message carries a bad key'));
    errors.length = 0;
  }
  assert.equal(alice.client.contacts()[0]?.state, 'invited');
  // Alice's queue was not secured with a weak key: a real acceptor still connects through the same link.
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.client.start();
  await bob.client.acceptInvitation(link);
  await until('both connected', () => alice.client.contacts()[0]?.state === 'ready' && bob.client.contacts()[0]?.state === 'ready');
});
