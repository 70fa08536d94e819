// A private relay: the SDK sends the password from the relay address in NEW,
// keeps and hands out only the public address (invitation, hello, SNEW, its
// store), and reports a relay's PASSWORD and RATE as clear ContactErrors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatAddress, parseAddress, publicAddress } from '../../src/core/address.ts';
import { CommandError } from '../../src/core/command-client.ts';
import { ContactError } from '../../src/sdk/contacts.ts';
import { parseInvitation } from '../../src/sdk/invitation.ts';
import type { MemoryStore } from '../../src/sdk/store/memory.ts';
import { Phone, startStack, until, untilSubscribed } from './helpers.ts';

const PASSWORD = 'members-only.2026';

function withPassword(address: string, password: string): string {
  const a = parseAddress(address);
  assert.ok(a.ok);
  return formatAddress({ ...a.value, password });
}

/** Every value the client stored, as one string. */
async function stored(phone: Phone): Promise<string> {
  const store = phone.store as MemoryStore;
  const keys = await store.keys('');
  return (await Promise.all(keys.map((k) => store.get(k)))).join('\n');
}

test('the SDK creates on a password relay, and hands contacts and the notification server only the public address', async (t) => {
  const stack = await startStack(t, { relayCreation: { password: PASSWORD } });
  const relay = withPassword(stack.relay.address, PASSWORD);
  assert.notEqual(relay, stack.relay.address);
  const alice = await Phone.create(t, stack, 'Alice', { relays: [relay] });
  const bob = await Phone.create(t, stack, 'Bob', { relays: [relay] });
  await alice.register();

  await alice.client.start();
  const { link } = await alice.client.createInvitation();
  assert.ok(!link.includes(PASSWORD));
  const inv = parseInvitation(link);
  assert.ok(inv.ok);
  assert.equal(inv.value.relay, stack.relay.address, 'the invitation names the public address');

  await bob.client.start();
  await bob.client.acceptInvitation(link);
  await until('both connected', () => alice.client.contacts()[0]?.state === 'ready' && bob.client.contacts()[0]?.state === 'ready');
  await untilSubscribed(alice, 1);
  assert.deepEqual([...stack.ntf.ntf.store.relays()], [stack.relay.address], 'SNEW named the public address');
  for (const p of [alice, bob]) {
    const s = await stored(p);
    assert.ok(s.includes(publicAddress(relay)), 'the contacts are stored with the relay');
    assert.ok(!s.includes(PASSWORD), 'and without its password');
  }
});

test("a relay's PASSWORD and RATE reach the app as ContactErrors that say what to do", async (t) => {
  const stack = await startStack(t, {
    relayCreation: { password: PASSWORD, perConnection: { burst: 2, perMinute: 1 / 60 }, perAddress: { burst: 1000, perMinute: 1000 } },
  });
  const cases: Array<[string | undefined, RegExp, string]> = [
    [undefined, /creation password.*missing or wrong/, 'PASSWORD'],
    ['wrong', /creation password.*missing or wrong/, 'PASSWORD'],
  ];
  for (const [password, message, error] of cases) {
    const relays = [password === undefined ? stack.relay.address : withPassword(stack.relay.address, password)];
    const eve = await Phone.create(t, stack, 'Eve', { relays });
    await assert.rejects(eve.client.createInvitation(), (e: Error) => {
      assert.ok(e instanceof ContactError);
      assert.match(e.message, message);
      assert.ok(e.cause instanceof CommandError && e.cause.error === error);
      return true;
    });
    assert.deepEqual(eve.client.contacts(), [], 'no contact was made');
  }
  const alice = await Phone.create(t, stack, 'Alice', { relays: [withPassword(stack.relay.address, PASSWORD)] });
  await alice.client.createInvitation();
  await alice.client.createInvitation();
  await assert.rejects(alice.client.createInvitation(), (e: Error) => {
    assert.ok(e instanceof ContactError);
    assert.match(e.message, /try again later/);
    assert.ok(e.cause instanceof CommandError && e.cause.error === 'RATE');
    return true;
  });
  assert.equal(alice.client.contacts().length, 2);
});
