// The SDK over real servers: relay, notification server, our APNs provider and the APNs test server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, Phone, startStack, untilSubscribed } from './helpers.ts';

test('invitation → chat → Bob asleep → Alice sends "hi" → APNs push → the push handler shows "Alice: hi"', async (t) => {
  const stack = await startStack(t);
  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob');
  await bob.register();
  const { atInviter: bobAtAlice, atAcceptor: aliceAtBob } = await connect(alice, bob);

  // online: messages arrive as events
  const got = new Promise<string>((r) => bob.client.on('message', (m) => r(m.text)));
  await alice.client.send(bobAtAlice, 'online hello');
  assert.equal(await got, 'online hello');
  await untilSubscribed(bob, 1);

  bob.client.stop(); // asleep: no SUB
  bob.skipPushes();
  await alice.client.send(bobAtAlice, 'hi');
  const shown = await bob.handlePushes((s) => s.length > 0);
  const push = bob.handledPushes.at(-1)!;
  assert.equal(push.headers['apns-push-type'], 'alert');
  // Apple sees a generic alert and an opaque blob, never the text or the sender's name
  assert.deepEqual(Object.keys(push.payload).sort(), ['aps', 'd']);
  assert.doesNotMatch(JSON.stringify(push.payload.aps), /hi|Alice/);
  assert.deepEqual(
    shown.map((n) => ({ title: n.title, body: n.body, category: n.category, contactId: n.contactId })),
    [{ title: 'Alice', body: 'hi', category: 'message', contactId: aliceAtBob }],
  );
  assert.equal(shown[0]!.badge, 2);
  // the same push again shows nothing: the message was fetched and acknowledged
  assert.deepEqual(await bob.client.handlePush(push.payload), []);
});
