// `hush start` as a newcomer runs it: one command brings up the relay, the
// notification server, the push test servers and the web app; Ctrl-C stops it
// all; a second start reuses the data.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { HushClient } from '../../src/sdk/client.ts';
import { MemoryStore } from '../../src/sdk/store/memory.ts';
import { until } from '../ntf/helpers.ts';
import { freePort, HushProcess } from '../process.ts';

const RUNNING = /Hush is running: open (http:\/\/127\.0\.0\.1:\d+\/)/;

test('hush start: the whole stack and its web app; Ctrl-C stops it; a second start reuses the data', { timeout: 120_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-start-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = {
    HUSH_RELAY_PORT: String(await freePort()),
    HUSH_RELAY_METRICS_PORT: String(await freePort()),
    HUSH_NTF_PORT: String(await freePort()),
    HUSH_NTF_METRICS_PORT: String(await freePort()),
  };
  const webPort = String(await freePort());
  const start = async () => {
    const p = new HushProcess(['start', '--dir', dir, '--port', webPort], env);
    t.after(() => p.dispose());
    const url = (await p.waitFor(RUNNING))[1]!;
    const config = (await (await fetch(`${url}api/config`)).json()) as { relay: string; ntf: string };
    return { p, url, config };
  };

  const first = await start();
  for (const page of ['', 'simulator', 'dashboard']) {
    const res = await fetch(first.url + page);
    assert.equal(res.status, 200, page);
    assert.match(res.headers.get('content-type') ?? '', /text\/html/);
  }
  const js = await fetch(`${first.url}assets/chat.js`);
  assert.equal(js.status, 200);
  assert.ok((await js.text()).length > 10_000, 'the chat bundles with the SDK');
  assert.equal((await fetch(`${first.url}assets/missing.js`)).status, 404);

  // Two SDK clients connect through the stack's relay; Bob is offline when Alice sends.
  const open = (store: MemoryStore, name: string) =>
    HushClient.open({ store, relays: [first.config.relay], ntfServer: first.config.ntf, webSocket: nodeWebSocket(), name });
  const aliceStore = new MemoryStore();
  const bobStore = new MemoryStore();
  const alice = await open(aliceStore, 'Alice');
  let bob = await open(bobStore, 'Bob');
  await alice.start();
  await bob.start();
  const { contactId, link } = await alice.createInvitation();
  await bob.acceptInvitation(link);
  await until('connected', () => alice.contacts()[0]?.state === 'ready' && bob.contacts()[0]?.state === 'ready');
  await bob.close();
  await alice.send(contactId, 'kept across restarts');
  await alice.close();

  first.p.kill('SIGINT');
  const exit = await first.p.result(15_000);
  assert.equal(exit.code, 0, `Ctrl-C ends it cleanly: ${exit.stderr}`);

  const second = await start();
  assert.deepEqual(second.config, first.config, 'same identities and addresses');
  bob = await open(bobStore, 'Bob');
  t.after(() => bob.close());
  const got = new Promise<string>((r) => bob.on('message', (m) => r(m.text)));
  await bob.start();
  assert.equal(await got, 'kept across restarts');
  second.p.kill('SIGINT');
  assert.equal((await second.p.result(15_000)).code, 0);
});
