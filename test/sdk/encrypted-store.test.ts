// EncryptedStore (src/sdk/store/encrypted.ts) over each store: values
// encrypted at rest, the passphrase checked at open, tampered and swapped
// values refused, the passphrase changed in one write, a plaintext store
// encrypted, and the lock passed through to clients. (The ClientStore
// contract suite of store.test.ts runs over it too.) A cheap KDF cost keeps
// the tests fast but for the one with the default cost.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { HushClient } from '../../src/sdk/client.ts';
import { openNodeClient } from '../../src/sdk/node.ts';
import { DEFAULT_KDF, EncryptedStore, HEADER_KEY, PassphraseError, type KdfParams } from '../../src/sdk/store/encrypted.ts';
import { FileStore } from '../../src/sdk/store/file.ts';
import { IndexedDbStore } from '../../src/sdk/store/indexeddb.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import type { ClientStore } from '../../src/sdk/store/store.ts';
import { tmpDir } from '../helpers.ts';

export const CHEAP: KdfParams = { m: 64, t: 1, p: 1 };

const wrong = (e: unknown) => e instanceof PassphraseError && /wrong passphrase/.test(e.message);
const undecryptable = (key: string) => (e: unknown) => e instanceof Error && e.message.includes(`${key} does not decrypt`);

function tempDir(t: TestContext): string {
  const dir = tmpDir('hush-enc-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Each backend: a way to open the same inner store again (after it was closed). */
const backends: Array<[string, (t: TestContext) => () => Promise<ClientStore>]> = [
  [
    'MemoryStore',
    () => {
      const m = new MemoryStore();
      // a MemoryStore cannot be reopened once closed: hand out a view whose close does nothing
      return async () => Object.assign(Object.create(m) as MemoryStore, { close: async () => {} });
    },
  ],
  [
    'FileStore',
    (t) => {
      const file = path.join(tempDir(t), 'state.json');
      return () => FileStore.open(file);
    },
  ],
  [
    'IndexedDbStore',
    () => {
      const factory = new IDBFactory();
      return () => IndexedDbStore.open('hush', factory, IDBKeyRange);
    },
  ],
];

for (const [name, make] of backends) {
  describe(`EncryptedStore over ${name}`, () => {
    test('round trip; nothing readable at rest; reopened with the passphrase', async (t) => {
      const inner = make(t);
      const raw = await inner();
      const s = await EncryptedStore.open(raw, 'correct horse', { kdf: CHEAP });
      await s.write([['settings', '{"name":"Alice"}'], ['contact:a', '{"secret":"ratchet"}'], ['gone', 'x']]);
      await s.write([['gone', undefined]]);
      assert.equal(await s.get('settings'), '{"name":"Alice"}');
      assert.deepEqual(await s.keys(''), ['contact:a', 'settings'], 'the header is not a record');
      assert.equal(await s.get(HEADER_KEY), undefined);
      await assert.rejects(s.write([[HEADER_KEY, 'x']]), RangeError);
      for (const k of await raw.keys('')) assert.doesNotMatch((await raw.get(k))!, /Alice|ratchet/);
      assert.deepEqual(Object.keys(JSON.parse((await raw.get(HEADER_KEY))!)).sort(), ['check', 'kdf', 'm', 'p', 'salt', 't', 'v']);
      await s.close();

      const again = await EncryptedStore.open(await inner(), 'correct horse');
      assert.equal(await again.get('contact:a'), '{"secret":"ratchet"}');
      assert.equal(await again.get('gone'), undefined);
      await again.close();
    });

    test('a wrong passphrase fails open', async (t) => {
      const inner = make(t);
      await (await EncryptedStore.open(await inner(), 'right', { kdf: CHEAP })).close();
      await assert.rejects(EncryptedStore.open(await inner(), 'wrong'), wrong);
      await assert.rejects(EncryptedStore.open(await inner(), ''), TypeError);
    });

    test('a changed value and a value moved to another record are refused', async (t) => {
      const raw = await make(t)();
      const s = await EncryptedStore.open(raw, 'pw', { kdf: CHEAP });
      await s.write([['contact:a', '{"n":1}'], ['contact:b', '{"n":2}']]);
      const a = (await raw.get('contact:a'))!;
      const flipped = a.slice(0, 40) + (a[40] === 'A' ? 'B' : 'A') + a.slice(41);
      await raw.write([['contact:a', flipped]]);
      await assert.rejects(s.get('contact:a'), undecryptable('contact:a'));
      await raw.write([['contact:a', (await raw.get('contact:b'))!]]);
      await assert.rejects(s.get('contact:a'), undecryptable('contact:a'));
      assert.equal(await s.get('contact:b'), '{"n":2}');
      await s.close();
    });

    test('changePassphrase: every record under the new one, in one write; the old one no longer opens', async (t) => {
      const inner = make(t);
      const s = await EncryptedStore.open(await inner(), 'old', { kdf: CHEAP });
      await s.write([['settings', '{"a":1}'], ['contact:x', '{"b":2}']]);
      await assert.rejects(s.changePassphrase('not it', 'new'), wrong);
      const raw = await inner();
      let writes = 0;
      const write = raw.write.bind(raw);
      const counting = Object.assign(Object.create(raw) as ClientStore, { write: (e: Parameters<ClientStore['write']>[0]) => (writes++, write(e)) });
      const viaCounting = await EncryptedStore.open(counting, 'old');
      await viaCounting.changePassphrase('old', 'new', { m: 128, t: 1, p: 1 });
      assert.equal(writes, 1);
      assert.equal(await viaCounting.get('settings'), '{"a":1}');
      await viaCounting.write([['settings', '{"a":3}']]);
      await s.close();
      await assert.rejects(EncryptedStore.open(await inner(), 'old'), wrong);
      const reopened = await EncryptedStore.open(await inner(), 'new');
      assert.equal(await reopened.get('contact:x'), '{"b":2}');
      assert.equal(await reopened.get('settings'), '{"a":3}');
      assert.equal(JSON.parse((await (await inner()).get(HEADER_KEY))!).m, 128, 'the new cost is in the header');
      await reopened.close();
    });
  });
}

test('a plaintext store is encrypted at its first open with a passphrase; one holding non-JSON values is refused', async () => {
  const plain = new MemoryStore();
  await plain.write([['settings', '{"name":"Bob"}']]);
  const s = await EncryptedStore.open(plain, 'pw', { kdf: CHEAP });
  assert.equal(await s.get('settings'), '{"name":"Bob"}');
  assert.doesNotMatch((await plain.get('settings'))!, /Bob/);
  const odd = new MemoryStore();
  await odd.write([['settings', 'not json']]);
  await assert.rejects(EncryptedStore.open(odd, 'pw', { kdf: CHEAP }), /no encryption header/);
  assert.equal(await odd.get('settings'), 'not json', 'left as it was');
});

test('a write issued while the passphrase changes is kept', async () => {
  const s = await EncryptedStore.open(new MemoryStore(), 'a', { kdf: CHEAP });
  await s.write([['k', '1']]);
  const change = s.changePassphrase('a', 'b');
  const later = s.write([['k', '2']]);
  await Promise.all([change, later]);
  assert.equal(await s.get('k'), '2');
});

test('the default cost opens in reasonable time; a client over it holds the inner lock and keeps its state encrypted', { timeout: 60_000 }, async (t) => {
  assert.deepEqual(DEFAULT_KDF, { m: 19_456, t: 2, p: 1 });
  const file = path.join(tempDir(t), 'bob.json');
  const first = await openNodeClient(file, { relays: [], name: 'Bob', passphrase: 'pass phrase' });
  await assert.rejects(openNodeClient(file, { relays: [], passphrase: 'pass phrase', lockTimeoutMs: 0 }), /in use by another client/);
  await first.close();
  assert.doesNotMatch(fs.readFileSync(file, 'utf8'), /Bob/);
  await assert.rejects(openNodeClient(file, { relays: [], passphrase: 'wrong' }), wrong);
  await assert.rejects(openNodeClient(file, { relays: [] }), (e) => e instanceof PassphraseError && /open it with its passphrase/.test(e.message));
  const again = await openNodeClient(file, { relays: [], passphrase: 'pass phrase' });
  assert.equal(again.name, 'Bob');
  await again.close();
});

test('a client whose store was encrypted again by another one cannot take it back with the old key', async () => {
  const inner = new MemoryStore();
  const app = await HushClient.open({ store: await EncryptedStore.open(inner, 'one', { kdf: CHEAP }), relays: [], name: 'Bob' });
  await app.suspend();
  const other = await EncryptedStore.open(inner, 'one');
  const release = await other.lock!.acquire({ timeoutMs: 0 });
  await other.changePassphrase('one', 'two');
  await release();
  await assert.rejects(app.reload({ timeoutMs: 0 }), (e: unknown) => e instanceof PassphraseError && /new passphrase/.test(e.message));
  const reopened = await HushClient.open({ store: await EncryptedStore.open(inner, 'two'), relays: [] });
  assert.equal(reopened.name, 'Bob');
  await reopened.close();
  await app.close();
});
