// The SDK over real servers: relay, notification server, our APNs provider and the APNs test server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHAT_RATE_LIMIT_MS } from '../../src/sdk/push-handler.ts';
import { sleep } from '../ntf/helpers.ts';
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

  await sleep(CHAT_RATE_LIMIT_MS); // the online message was notified: the next one may be too
  bob.client.stop(); // asleep: no SUB
  bob.skipPushes();
  await alice.client.send(bobAtAlice, 'hi');
  const shown = await bob.handlePushes((s) => s.length > 0);
  const push = bob.handledPushes.at(-1)!;
  assert.equal(push.headers['apns-push-type'], 'alert');
  assert.equal(push.body.includes('hi'), false, 'Apple sees no message text');
  assert.deepEqual(
    shown.map((n) => ({ title: n.title, body: n.body, category: n.category, contactId: n.contactId })),
    [{ title: 'Alice', body: 'hi', category: 'message', contactId: aliceAtBob }],
  );
  assert.equal(shown[0]!.badge, 2);
  // the same push again shows nothing: the message was fetched and acknowledged
  assert.deepEqual(await bob.client.handlePush(push.payload), []);
});
