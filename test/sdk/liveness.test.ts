// An app's links to its relay and its notification server heal by themselves:
// a link blackholed by the network (no FIN, no RST) is noticed by its PINGs,
// closed and opened again, its subscriptions restored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FAST_KEEPALIVE, proxied } from '../helpers.ts';
import { connect, Phone, startStack, until } from './helpers.ts';


async function proxyFor(t: { after(fn: () => Promise<void>): void }, address: string) {
  const p = await proxied(address);
  t.after(() => p.proxy.close());
  return p;
}

test('an online app whose relay link is blackholed reconnects, subscribes again and gets the next message', async (t) => {
  const stack = await startStack(t);
  const { proxy, address } = await proxyFor(t, stack.relay.address);
  const alice = await Phone.create(t, stack, 'Alice', FAST_KEEPALIVE);
  const bob = await Phone.create(t, stack, 'Bob', { ...FAST_KEEPALIVE, relays: [address] });
  const { atInviter: bobAtAlice } = await connect(alice, bob);
  const messages: string[] = [];
  bob.client.on('message', (m) => messages.push(m.text));
  assert.ok(proxy.blackhole() >= 1, 'the links through the proxy went silent');
  // Alice's own link to Bob's relay died too: her send is retried on a new one.
  await alice.client.send(bobAtAlice, 'after the blackhole');
  await until('the message over the new link', () => messages.includes('after the blackhole'));
});

test('an app whose notification-server link is blackholed gets its answers over a new link', async (t) => {
  const stack = await startStack(t);
  const { proxy, address } = await proxyFor(t, stack.ntf.address);
  const bob = await Phone.create(t, stack, 'Bob', { ...FAST_KEEPALIVE, ntfServer: address });
  await bob.register();
  assert.equal(proxy.blackhole(), 1);
  await bob.client.checkNotifications();
  assert.equal(bob.client.tokenStatus?.status, 'ACTIVE', 'TCHK answered over a new link');
  assert.ok(proxy.connections >= 1);
});
