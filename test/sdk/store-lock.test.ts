// The stores' one-writer locks (src/sdk/store/lock.ts): MemoryStore's
// in-process lock, and FileStore's lock file: exclusion, hand-over with the
// file read again, a killed holder's lock taken over once stale, and a client
// whose lock was taken over.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { HushClient } from '../../src/sdk/client.ts';
import { FileStore, STALE_MS } from '../../src/sdk/store/file.ts';
import { StoreLockError } from '../../src/sdk/store/lock.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import { tmpDir } from '../helpers.ts';

const refused = (e: unknown) => e instanceof StoreLockError && /in use by another client/.test(e.message);

function tempFile(t: TestContext): string {
  const dir = tmpDir('hush-lock-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'state.json');
}

/** Makes the lock file look as if its holder had not refreshed it for longer than STALE_MS. */
function age(file: string): void {
  const past = new Date(Date.now() - STALE_MS - 5_000);
  fs.utimesSync(`${file}.lock`, past, past);
}

test('MemoryStore: one holder; waiters get it in turn; a waiter gives up at its timeout', async () => {
  const { lock } = new MemoryStore();
  const first = await lock.acquire({ timeoutMs: 0 });
  await assert.rejects(lock.acquire({ timeoutMs: 0 }), refused);
  await assert.rejects(lock.acquire({ timeoutMs: 1 }), refused);
  const order: string[] = [];
  const second = lock.acquire({ timeoutMs: 60_000 }).then((r) => (order.push('second'), r));
  const third = lock.acquire({ timeoutMs: 60_000 }).then((r) => (order.push('third'), r));
  await first();
  await first(); // twice: no effect
  const release2 = await second;
  assert.deepEqual(order, ['second']);
  await release2();
  await (await third)();
  assert.deepEqual(order, ['second', 'third']);
  await (await lock.acquire({ timeoutMs: 0 }))(); // free again, the timed-out waiters left no trace
});

test('FileStore: another store on the file waits for the lock, then reads what the holder wrote', async (t) => {
  const file = tempFile(t);
  const a = await FileStore.open(file);
  const b = await FileStore.open(file);
  t.after(() => Promise.all([a.close(), b.close()]));
  const releaseA = await a.lock.acquire({ timeoutMs: 0 });
  await assert.rejects(b.lock.acquire({ timeoutMs: 0 }), refused);
  const waiting = b.lock.acquire({ timeoutMs: 60_000 });
  await a.write([['k', 'from a']]);
  assert.equal(await b.get('k'), undefined, 'b read the file before a wrote');
  await releaseA();
  const releaseB = await waiting;
  assert.equal(await b.get('k'), 'from a');
  await assert.rejects(a.lock.acquire({ timeoutMs: 0 }), refused);
  await releaseB();
});

test('FileStore: a holder killed with SIGKILL leaves a lock that is taken over once stale', async (t) => {
  const file = tempFile(t);
  const holder = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import { FileStore } from ${JSON.stringify(new URL('../../src/sdk/store/file.ts', import.meta.url).href)};
       const s = await FileStore.open(${JSON.stringify(file)});
       await s.lock.acquire({ timeoutMs: 0 });
       await s.write([['k', 'from the dead']]);
       console.log('locked');
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    holder.on('exit', (code) => reject(new Error(`the holder exited (${code})`)));
  });
  const exited = new Promise((r) => holder.on('exit', r));
  holder.kill('SIGKILL');
  await exited;
  const s = await FileStore.open(file);
  t.after(() => s.close());
  await assert.rejects(s.lock.acquire({ timeoutMs: 0 }), refused, 'not stale yet: it could be a live holder');
  age(file);
  const release = await s.lock.acquire({ timeoutMs: 0 });
  assert.equal(await s.get('k'), 'from the dead');
  await release();
});

test('a client whose lock is taken over: lockLost, methods refused, reload() takes the store again with the changes', { timeout: 60_000 }, async (t) => {
  const file = tempFile(t);
  const open = async () => HushClient.open({ store: await FileStore.open(file), closeStore: true, relays: [], lockTimeoutMs: 0 });
  const app = await open();
  t.after(() => app.close());
  await app.setName('Bob');
  const lost = new Promise<StoreLockError>((r) => app.on('lockLost', r));
  age(file); // as if the app had stalled for longer than STALE_MS
  const other = await open();
  const awake = setInterval(() => {}, 1_000); // the lock's refresh timer does not keep the process running
  assert.match((await lost).message, /lock on .* was lost/); // the app's next refresh of its lock finds it taken
  clearInterval(awake);
  await assert.rejects(app.setName('mine'), (e: unknown) => e instanceof StoreLockError && /suspended/.test(e.message));
  await other.setName('Robert');
  await other.close();
  await app.reload({ timeoutMs: 0 });
  assert.equal(app.name, 'Robert');
  await app.setName('Bob again');
});
