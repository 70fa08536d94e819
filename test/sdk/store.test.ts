// ClientStore conformance: one contract suite run against MemoryStore,
// FileStore, IndexedDbStore (on fake-indexeddb, a fresh factory per test) and
// EncryptedStore (over a MemoryStore),
// then backend-only tests: FileStore reopen, crash leftovers, corruption and a
// property test against MemoryStore; IndexedDbStore reopen.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { EncryptedStore } from '../../src/sdk/store/encrypted.ts';
import { FileStore } from '../../src/sdk/store/file.ts';
import { IndexedDbStore } from '../../src/sdk/store/indexeddb.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import type { ClientStore } from '../../src/sdk/store/store.ts';
import { tmpDir } from '../helpers.ts';

/** A temp directory removed when the test ends. */
function tempDir(t: TestContext): string {
  const dir = tmpDir('hush-store-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Closes the store when the test ends (closing twice is harmless). */
function closing<S extends ClientStore>(t: TestContext, store: S): S {
  t.after(() => store.close());
  return store;
}

const idb = (factory = new IDBFactory(), name = 'hush') => IndexedDbStore.open(name, factory, IDBKeyRange);

const backends: Array<[string, (t: TestContext) => Promise<ClientStore>]> = [
  ['MemoryStore', async () => new MemoryStore()],
  // A parent directory that does not exist yet: open must create it.
  ['FileStore', (t) => FileStore.open(path.join(tempDir(t), 'sub', 'state.json'))],
  ['IndexedDbStore', () => idb()],
  ['EncryptedStore', async () => EncryptedStore.open(new MemoryStore(), 'pw', { kdf: { m: 64, t: 1, p: 1 } })],
];

/** Every key and its value, for whole-store comparisons (fromEntries keeps a "__proto__" key as data). */
async function dump(s: ClientStore): Promise<Record<string, string | undefined>> {
  const keys = await s.keys('');
  return Object.fromEntries(await Promise.all(keys.map(async (k) => [k, await s.get(k)] as const)));
}

for (const [name, open] of backends) {
  describe(`ClientStore contract: ${name}`, () => {
    const store = async (t: TestContext) => closing(t, await open(t));

    test('a missing key is undefined', async (t) => {
      const s = await store(t);
      assert.equal(await s.get('nope'), undefined);
      assert.deepEqual(await s.keys(''), []);
    });

    test('write then get, and overwrite', async (t) => {
      const s = await store(t);
      await s.write([['a', '1']]);
      assert.equal(await s.get('a'), '1');
      await s.write([['a', '2']]);
      assert.equal(await s.get('a'), '2');
    });

    test('undefined deletes', async (t) => {
      const s = await store(t);
      await s.write([['a', '1'], ['b', '2']]);
      await s.write([['a', undefined], ['missing', undefined]]);
      assert.equal(await s.get('a'), undefined);
      assert.deepEqual(await dump(s), { b: '2' });
    });

    test('one write sets and deletes several keys, in entry order', async (t) => {
      const s = await store(t);
      await s.write([['x', 'old'], ['y', 'gone']]);
      await s.write([
        ['a', '1'],
        ['b', '2'],
        ['y', undefined],
        ['x', 'mid'],
        ['x', 'new'],
        ['c', ''],
      ]);
      assert.deepEqual(await dump(s), { a: '1', b: '2', c: '', x: 'new' });
    });

    test('keys(prefix) is sorted and holds only keys with that prefix', async (t) => {
      const s = await store(t);
      const all = ['b', 'abc', 'a', 'a😀', 'ab', 'aé', 'a\uffffz', 'a\uffff', 'ä', '', '__proto__', 'constructor', 'é/1', 'é/10', 'é/2'];
      await s.write(all.map((k) => [k, `v:${k}`]));
      assert.deepEqual(await s.keys('a'), ['a', 'ab', 'abc', 'aé', 'a😀', 'a\uffff', 'a\uffffz']);
      assert.deepEqual(await s.keys('ab'), ['ab', 'abc']);
      assert.deepEqual(await s.keys('a\uffff'), ['a\uffff', 'a\uffffz']);
      assert.deepEqual(await s.keys('é/1'), ['é/1', 'é/10']);
      assert.deepEqual(await s.keys('z'), []);
      // Ascending by UTF-16 code unit, as IndexedDB orders strings.
      assert.deepEqual(await s.keys(''), [...all].sort());
      for (const k of all) assert.equal(await s.get(k), `v:${k}`);
    });

    test('values up to 1 MB round-trip', async (t) => {
      const s = await store(t);
      const big = randomBytes(3 << 18).toString('base64'); // exactly 1 MiB of characters
      const unicode = '€😀\u0000"\\\n'.repeat(100_000);
      await s.write([['big', big], ['unicode', unicode]]);
      assert.equal(big.length, 1 << 20);
      assert.equal(await s.get('big'), big);
      assert.equal(await s.get('unicode'), unicode);
    });

    test('200 concurrent writes all land, the last call per key wins', async (t) => {
      const s = await store(t);
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          s.write([
            ['last', String(i)],
            [`k${String(i).padStart(3, '0')}`, String(i)],
            ...(i % 2 ? [[`k${String(i - 1).padStart(3, '0')}`, undefined] as const] : []),
          ]),
        ),
      );
      assert.equal(await s.get('last'), '199');
      const keys = await s.keys('k');
      assert.equal(keys.length, 100);
      for (const k of keys) assert.equal(Number(k.slice(1)) % 2, 1);
    });

    test('a write is not affected by later changes to its entries', async (t) => {
      const s = await store(t);
      const entries: Array<[string, string | undefined]> = [['a', '1']];
      const written = s.write(entries);
      entries[0]![1] = 'changed';
      entries.push(['b', '2']);
      await written;
      assert.deepEqual(await dump(s), { a: '1' });
    });

    test('calls after close reject', async (t) => {
      const s = await open(t);
      await s.write([['a', '1']]);
      await s.close();
      await assert.rejects(s.get('a'));
      await assert.rejects(s.write([['a', '2']]));
      await assert.rejects(s.keys(''));
    });
  });
}

describe('FileStore', () => {
  test('a reopened store sees every write, and deletes stay deleted', async (t) => {
    const file = path.join(tempDir(t), 'state.json');
    const s = await FileStore.open(file);
    await s.write([['a', '1'], ['b', '2'], ['__proto__', 'p']]);
    await s.write([['b', undefined], ['c', '3']]);
    await s.close();
    const again = closing(t, await FileStore.open(file));
    assert.deepEqual(await dump(again), { ['__proto__']: 'p', a: '1', c: '3' });
  });

  test('a write that crashed before its rename leaves the file whole', async (t) => {
    const file = path.join(tempDir(t), 'state.json');
    const s = await FileStore.open(file);
    await s.write([['a', '1']]);
    await s.close();
    fs.writeFileSync(`${file}.tmp`, '{"a":"2","b":'); // half of the next write
    const again = closing(t, await FileStore.open(file));
    assert.deepEqual(await dump(again), { a: '1' });
    // Removed once the store is held: before, it may be another process's write in progress.
    assert.equal(fs.existsSync(`${file}.tmp`), true);
    const release = await again.lock.acquire({ timeoutMs: 0 });
    assert.equal(fs.existsSync(`${file}.tmp`), false);
    await again.write([['b', '2']]);
    await release();
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { a: '1', b: '2' });
  });

  test('a corrupt or unreadable file fails open, naming the file', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'state.json');
    for (const bad of ['{"a":"1"', '', '[]', 'null', '{"a":1}']) {
      fs.writeFileSync(file, bad);
      await assert.rejects(FileStore.open(file), (e: Error) => e.message.includes(file), `content ${JSON.stringify(bad)}`);
      assert.equal(fs.readFileSync(file, 'utf8'), bad, 'the damaged file is left for inspection');
    }
    const asDir = path.join(dir, 'is-a-dir');
    fs.mkdirSync(asDir);
    await assert.rejects(FileStore.open(asDir), (e: Error) => e.message.includes(asDir));
  });

  test('a failed write rejects, keeps the old state, and later writes still land', async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'state.json');
    const s = closing(t, await FileStore.open(file));
    await s.write([['a', '1']]);
    fs.mkdirSync(`${file}.tmp`); // the temp file cannot be opened for writing
    await assert.rejects(s.write([['a', '2']]));
    assert.equal(await s.get('a'), '1');
    fs.rmdirSync(`${file}.tmp`);
    await s.write([['b', '2']]);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), { a: '1', b: '2' });
  });

  test('property: any sequence of writes gives the same map as MemoryStore, after a reopen', async (t) => {
    const dir = tempDir(t);
    const key = fc.oneof(fc.constantFrom('a', 'ab', 'b', 'é', '😀', '__proto__'), fc.string({ unit: 'binary', maxLength: 4 }));
    const value = fc.option(fc.string({ unit: 'binary', maxLength: 20 }), { nil: undefined });
    const writes = fc.array(fc.array(fc.tuple(key, value), { maxLength: 5 }), { maxLength: 12 });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(writes, async (ws) => {
        const file = path.join(dir, `${run++}.json`);
        const memory = new MemoryStore();
        const store = await FileStore.open(file);
        // Issued without waiting, so the order of the chain is under test too.
        await Promise.all(ws.map((w) => store.write(w)));
        for (const w of ws) await memory.write(w);
        await store.close();
        const reopened = await FileStore.open(file);
        assert.deepEqual(await dump(reopened), await dump(memory));
        await reopened.close();
      }),
      { numRuns: 40 },
    );
  });
});

describe('IndexedDbStore', () => {
  test('a reopened database on the same factory and name sees the data', async (t) => {
    const factory = new IDBFactory();
    const s = await idb(factory);
    await s.write([['a', '1'], ['b', '2']]);
    await s.write([['b', undefined]]);
    await s.close();
    const again = closing(t, await idb(factory));
    assert.deepEqual(await dump(again), { a: '1' });
    const other = closing(t, await idb(factory, 'other'));
    assert.deepEqual(await dump(other), {});
  });
});
