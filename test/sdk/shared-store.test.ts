// Clients sharing one store, one holder at a time (docs/sdk.md §6.3): an app
// and its push extension in one process (MemoryStore), and two processes
// taking turns on one FileStore at random, checked for lost messages and for
// message keys used twice.
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Prng } from '../../fuzz/prng.ts';
import { toBase64Url } from '../../src/core/encoding.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { MemoryQueueStore } from '../../src/relay/store/memory.ts';
import type { StoredMessage } from '../../src/relay/store/store.ts';
import { HushClient } from '../../src/sdk/client.ts';
import { readEnvelope } from '../../src/sdk/e2e.ts';
import { FileStore } from '../../src/sdk/store/file.ts';
import { StoreLockError } from '../../src/sdk/store/lock.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import { tmpDir } from '../helpers.ts';
import { asleepPair, connect, Phone, startStack, until, untilSubscribed } from './helpers.ts';
import type { FromTest, Round, ToTest, WorkerConfig } from './shared-store-worker.ts';

const isLockError = (what: RegExp) => (e: unknown) => e instanceof StoreLockError && what.test(e.message);

test('one holder at a time: a second client waits for the lock and times out with a clear error', async (t) => {
  const stack = await startStack(t);
  const store = new MemoryStore();
  const app = await Phone.create(t, stack, 'Bob', { store });
  const opts = { store, relays: [stack.relayAddress], webSocket: nodeWebSocket() };
  await assert.rejects(HushClient.open({ ...opts, lockTimeoutMs: 0 }), isLockError(/in use by another client/));
  const waiting = HushClient.open({ ...opts, lockTimeoutMs: 60_000 });
  await app.client.suspend();
  const extension = await waiting;
  t.after(() => extension.close());
  assert.equal(extension.name, 'Bob');
  await assert.rejects(app.client.reload({ timeoutMs: 0 }), isLockError(/in use by another client/));
  await extension.close();
  await app.client.reload();
  await app.client.setName('Bobby');
});

test('suspend, the extension handles a push, reload: the app sees its changes and goes online again', async (t) => {
  const { stack, alice, bob, atInviter, atAcceptor } = await asleepPair(t);
  await bob.client.start();
  await bob.client.suspend({ timeoutMs: 1_000 });
  for (const call of [
    () => bob.client.send(atAcceptor, 'x'),
    () => bob.client.markRead(atAcceptor),
    () => bob.client.checkNotifications(),
    () => bob.client.start(),
    () => bob.client.createInvitation(),
  ])
    await assert.rejects(call(), isLockError(/suspended: reload\(\)/));
  assert.equal(bob.client.contacts()[0]?.unread, 0, 'the getters keep the state as it was');

  // The extension: another client on the same store, for one push.
  const extension = await HushClient.open({ store: bob.store, relays: [stack.relayAddress], ntfServer: stack.ntf.address, webSocket: nodeWebSocket() });
  await alice.client.send(atInviter, 'while the app sleeps');
  const push = await bob.nextPush();
  const shown = await extension.handlePush(push.payload);
  assert.deepEqual(shown.map((n) => n.body), ['while the app sleeps']);
  await extension.close();

  const online: string[] = [];
  bob.client.on('message', (m) => online.push(m.text));
  await bob.client.reload();
  assert.equal(bob.client.contacts()[0]?.unread, 1, 'the unread count the extension stored');
  await alice.client.send(atInviter, 'the app is back');
  await until('the app, online again, gets the next message', () => online.includes('the app is back'));
  assert.deepEqual(online, ['the app is back'], 'the extension\'s message is not handled twice');
  assert.equal(bob.client.badge, 2);
});

/** The relay's store, recording every body SENT to a queue: the envelopes, with their message numbers. */
class RecordingQueueStore extends MemoryQueueStore {
  readonly sent: Array<{ queue: string; body: Uint8Array }> = [];
  override addMessage(rcvId: Uint8Array, m: StoredMessage): void {
    this.sent.push({ queue: toBase64Url(rcvId), body: m.body });
    super.addMessage(rcvId, m);
  }
}

/** 4 rounds per process, each of 1–3 ops (every kind in the first three), let go by suspend or close. */
function script(rng: Prng): Round[] {
  const ops = ['send', 'recv', 'online'] as const;
  return Array.from({ length: 4 }, (_, i) => ({
    ops: [ops[i % 3]!, ...Array.from({ length: rng.int(3) }, () => ops[rng.int(3)]!)],
    release: rng.int(3) === 0 ? 'close' : 'suspend',
  }));
}

test('two processes take turns on one FileStore at random: every message arrives once, no message key is used twice', { timeout: 180_000 }, async (t: TestContext) => {
  const seed = Number(process.env.HUSH_SEED ?? Date.now() % 1_000_000);
  t.diagnostic(`seed ${seed} (HUSH_SEED=${seed} repeats the scripts)`);
  const relayStore = new RecordingQueueStore();
  const stack = await startStack(t, { relayStore });
  const dir = tmpDir('hush-shared-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bob.json');

  const alice = await Phone.create(t, stack, 'Alice');
  const bob = await Phone.create(t, stack, 'Bob', { store: await FileStore.open(file) });
  await bob.register();
  const { atInviter, atAcceptor } = await connect(alice, bob);
  await untilSubscribed(bob, 1);
  await bob.client.close();
  await bob.store.close();
  bob.skipPushes();
  const atAlice: string[] = [];
  alice.client.on('message', (m) => atAlice.push(m.text));

  const toBob: string[] = [];
  const atBob: string[] = [];
  const sent: string[] = [];
  const maybeSent: string[] = [];
  const failures: string[] = [];
  let pushesHanded = bob.pushes.length;
  // Turns: a process that wants the store again waits until the other one, trying, has it.
  const trying = new Set<string>();
  const deferred = new Map<string, () => void>();

  const ids = ['p', 'q'];
  const exits = ids.map((id) => {
    const cfg: WorkerConfig = {
      id,
      file,
      relay: stack.relayAddress,
      ntfServer: stack.ntf.address,
      contactId: atAcceptor,
      rounds: script(new Prng(seed, id)),
    };
    const child = fork(new URL('./shared-store-worker.ts', import.meta.url), [JSON.stringify(cfg)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    t.after(() => child.kill('SIGKILL'));
    const reply = (m: FromTest) => child.send(m);
    const other = ids.find((x) => x !== id)!;
    child.on('message', async (m: ToTest) => {
      if (m.type === 'want') {
        const go = () => (trying.add(id), reply({ type: 'go' }));
        if (trying.has(other)) deferred.set(id, go);
        else go();
      } else if (m.type === 'took') {
        trying.delete(id);
        deferred.get(other)?.();
        deferred.delete(other);
      } else if (m.type === 'message') {
        const text = `to-bob-${toBob.length}`;
        toBob.push(text);
        await alice.client.send(atInviter, text).catch((e: Error) => failures.push(`Alice could not send: ${e.message}`));
        await until('a push', () => bob.pushes.length > pushesHanded).catch(() => {}); // the last client fetches it then
        const pushes = bob.pushes.slice(pushesHanded).map((p) => p.payload);
        pushesHanded += pushes.length;
        reply({ type: 'message', text, pushes });
      } else if (m.type === 'event') atBob.push(m.text);
      else if (m.type === 'sent') sent.push(m.text);
      else if (m.type === 'sendFailed') maybeSent.push(m.text);
      else if (m.type === 'fail') failures.push(`${id}: ${m.what}`);
    });
    return new Promise<number | null>((resolve) =>
      child.on('exit', (code) => {
        // one that died never takes the store: the other need not wait for it
        trying.delete(id);
        deferred.get(other)?.();
        resolve(code);
      }),
    );
  });
  assert.deepEqual(await Promise.all(exits), [0, 0], 'both processes ran their scripts to the end');
  assert.deepEqual(failures, []);

  // Key reuse: two different envelopes with one message number on one queue.
  const byNumber = new Map<string, string>();
  let envelopes = 0;
  for (const { queue, body } of relayStore.sent) {
    const env = readEnvelope(body);
    assert.ok(env.ok);
    const key = `${queue} ${env.value.n}`;
    const b = toBase64Url(body);
    assert.ok(byNumber.get(key) === undefined || byNumber.get(key) === b, `message ${env.value.n} on one queue sealed twice`);
    byNumber.set(key, b);
    envelopes++;
  }
  assert.ok(envelopes >= sent.length + toBob.length, 'every envelope was recorded');

  // What neither process got is still at the relay: a last client, online, gets it.
  const last = await HushClient.open({ store: await FileStore.open(file), closeStore: true, relays: [stack.relayAddress], webSocket: nodeWebSocket() });
  t.after(() => last.close());
  last.on('message', (m) => atBob.push(m.text));
  await last.start();
  await until('every message to Bob arrived', () => toBob.every((x) => atBob.includes(x)), 20_000);
  await until('every message from Bob arrived', () => sent.every((x) => atAlice.includes(x)), 20_000);
  await last.close();

  const counts = (list: string[]) => list.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
  assert.ok(toBob.length > 0 && sent.length > 0, `the scripts received (${toBob.length}) and sent (${sent.length})`);
  assert.deepEqual([...counts(atBob)].filter(([, n]) => n > 1), [], 'no message to Bob arrived twice');
  assert.deepEqual([...counts(atAlice)].filter(([, n]) => n > 1), [], 'no message from Bob arrived twice');
  for (const x of atAlice) assert.ok(sent.includes(x) || maybeSent.includes(x), `Alice got ${x}, which Bob sent`);
});
