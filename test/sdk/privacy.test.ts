// What each server keeps of a conversation made with the SDK, read from its
// files on disk: the relay never holds the device token, the contacts' names
// or the message text; the notification server never holds queue recipient or
// sender IDs, names or text; Apple gets an opaque blob and a generic alert.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { deserialize, KEYS, type Contact } from '../../src/sdk/records.ts';
import { journalStore, tmpDir } from '../helpers.ts';
import { asleepPair, startStack } from './helpers.ts';

const walk = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));

function holds(dir: string, needle: Uint8Array | string): boolean {
  const n = Buffer.from(needle);
  return walk(dir).some((f) => fs.readFileSync(f).includes(n));
}

test('servers keep no names, text, device tokens or the other side\'s queue IDs', async (t) => {
  const relayDir = tmpDir('hush-sdk-relay-');
  const ntfDir = tmpDir('hush-sdk-ntf-');
  t.after(() => [relayDir, ntfDir].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const stack = await startStack(t, { relayStore: await journalStore(relayDir), ntf: { store: openJournalNtfStore(ntfDir).store } });
  // Names long enough that random bytes (ciphertext, base64) do not hold them by chance, as "Bob" may.
  const names: [string, string] = ['Alice Liddell', 'Robert Tables'];
  const { alice, bob, atInviter, atAcceptor } = await asleepPair(t, stack, names);
  const text = 'meet me at the old mill at nine';
  await alice.client.send(atInviter, text);
  await alice.client.send(atInviter, 'and bring the map');
  const push = await bob.nextPush();
  const pushText = JSON.stringify(push.payload);
  for (const needle of ['meet me', ...names]) assert.ok(!pushText.includes(needle), 'the push carries neither text nor names');

  // Both servers write before they answer; Alice's messages wait at the relay (not fetched).
  const contact = deserialize<Contact>((await bob.store.get(KEYS.contact + atAcceptor))!);
  for (const [what, needle] of [
    ['message text', text],
    ['second message text', 'bring the map'],
    ['a name', names[0]],
    ['a name', names[1]],
  ] as const) {
    assert.equal(holds(relayDir, needle), false, `relay files hold ${what}`);
    assert.equal(holds(ntfDir, needle), false, `NTF files hold ${what}`);
  }
  assert.equal(holds(relayDir, bob.token), false, 'relay files hold the device token');
  assert.equal(holds(relayDir, bob.token.toString('hex')), false, 'relay files hold the device token (hex)');
  assert.equal(holds(ntfDir, contact.rcv.rcvId), false, 'NTF files hold the recipient ID');
  assert.equal(holds(ntfDir, contact.rcv.sndId), false, 'NTF files hold the sender ID');
  assert.ok(holds(ntfDir, contact.ntf.notifier!.notifierId), 'the NTF holds the notifier ID (it must)');
  assert.ok(holds(relayDir, contact.rcv.rcvId), 'the relay holds the recipient ID (it must)');
});
