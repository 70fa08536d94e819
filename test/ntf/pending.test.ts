// Durable pending pushes: a notification the server has taken in is owed a
// push until a provider accepts one carrying it. That debt survives kill -9 of
// the server (a real process, its push provider the APNs test server), is not
// doubled by a relay sending the same NMSG again, and a push that failed for
// good is tried again by the sweep. The store side (every backend, PostgreSQL
// across a reopen) is in store.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fromBase64Url, latin1 } from '../../src/core/encoding.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { NtfClient } from '../../src/ntf/client.ts';
import { LOCAL_RELAYS } from '../../src/ntf/config.ts';
import { openPush } from '../../src/ntf/payload.ts';
import { decodeNtfRecord } from '../../src/ntf/store/records.ts';
import type { NtfServer } from '../../src/ntf/server.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { openMeta } from '../../src/relay/client.ts';
import { bytes, connect, crypto, newQueue, startRelay, tmpDir } from '../helpers.ts';
import { HushProcess } from '../process.ts';
import { device, TestClock, until, withNtf } from './helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

const TOPIC = 'chat.hush.pending';

/** A gauge's value now (its collect() runs). */
async function gauge(ntf: NtfServer, name: string): Promise<number> {
  const m = ntf.metrics.registry.getSingleMetric(name);
  assert.ok(m, `metric ${name}`);
  return (await m.get()).values[0]?.value ?? NaN;
}

/** The records of a journal file, read the way the store replays it. */
function journalRecords(file: string) {
  const data = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
  const out = [];
  for (let pos = 0; pos + 8 <= data.length; ) {
    const len = data.readUInt32BE(pos);
    if (pos + 8 + len > data.length) break;
    const r = decodeNtfRecord(new Uint8Array(data.subarray(pos + 8, pos + 8 + len)));
    if (r.ok) out.push(r.value);
    pos += 8 + len;
  }
  return out;
}

test('kill -9 between taking a notification in and pushing it: the push goes out after the restart', { timeout: 120_000 }, async (t) => {
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  t.after(() => apns.close());
  const team = apns.keys.create();
  const relay = await startRelay();
  let relayUp = true;
  t.after(() => (relayUp ? relay.stop() : undefined));

  const dir = tmpDir('hush-ntf-pending-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const init = await new HushProcess(['ntf', 'init', '--dir', dir]).result();
  assert.equal(init.code, 0, `ntf init failed: ${init.stderr}${init.stdout}`);
  fs.writeFileSync(path.join(dir, 'apns.p8'), team.privateKey);
  fs.writeFileSync(path.join(dir, 'apns-ca.pem'), apns.ca);
  const configFile = path.join(dir, 'ntf.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  const apnsConfig = { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile: path.join(dir, 'apns.p8'), topic: TOPIC, caFile: path.join(dir, 'apns-ca.pem') };
  fs.writeFileSync(configFile, JSON.stringify({ ...config, apns: apnsConfig, metrics: { port: 0 }, relays: LOCAL_RELAYS }));
  const clients: NtfClient[] = [];
  t.after(() => clients.forEach((c) => c.close()));
  const launch = async () => {
    const proc = new HushProcess(['ntf', 'start', '--dir', dir], { HUSH_LOG_LEVEL: 'warn', HUSH_NTF_PORT: '0' });
    t.after(() => proc.dispose());
    const [, address] = await proc.waitFor(/notification server address: (\S+)/);
    const client = await NtfClient.connect(address!, { webSocket: nodeWebSocket(), timeoutMs: 10_000 });
    clients.push(client);
    return { proc, client };
  };
  const first = await launch();

  // ---- a phone with an APNs token, verified, subscribed to a queue
  const apnsToken = randomBytes(32);
  const hexToken = apnsToken.toString('hex');
  const tknAuth = crypto.x25519KeyPair();
  const tknDh = crypto.x25519KeyPair();
  const { tokenId, srvDhKey } = await first.client.registerToken({ provider: 'apns', token: apnsToken }, tknAuth, tknDh.publicKey);
  const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
  const pushesOf = (kind: string) => apns.pushes.filter((p) => p.token === hexToken && p.headers['apns-push-type'] === kind);
  const open = (p: (typeof apns.pushes)[number]) => {
    const c = openPush(crypto, secret, fromBase64Url(p.payload.d as string)!);
    assert.ok(c, 'the push opens on the phone');
    return c;
  };
  await until('the verification push', () => pushesOf('background').length === 1, 15_000);
  const verification = open(pushesOf('background')[0]!);
  assert.ok(verification.kind === 'verification');
  await first.client.verifyToken(tokenId, tknAuth.privateKey, verification.code);

  const rc = await connect(relay.address);
  t.after(() => rc.close());
  const q = await newQueue(rc, true);
  const subId = await first.client.createSubscription(tokenId, tknAuth.privateKey, relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
  await until('subscription ACTIVE', async () => (await first.client.checkSubscription(subId, tknAuth.privateKey)) === 'ACTIVE', 15_000);

  // ---- APNs takes the push and never answers; the server stored the notification, then dies
  apns.replyTo(hexToken, { hang: true });
  const requested = new Promise<void>((resolve) => apns.on('request', (r) => r.token === hexToken && resolve()));
  await rc.send(q.sndId, bytes('while the server dies'), { notify: true });
  const msg = await rc.get(q.rcvId, q.rcvAuth.privateKey);
  assert.ok(msg);
  await requested;
  const journal = path.join(dir, 'store', 'ntf.journal');
  await until('the notification in the journal', () =>
    journalRecords(journal).some((r) => r.t === 'LAST' && r.tokenId === latin1(tokenId) && r.n.subId === latin1(subId)),
  );
  // Nothing can come from the relay again: whatever is pushed after the restart is the server's own debt.
  await relay.stop();
  relayUp = false;
  first.proc.kill('SIGKILL');
  assert.equal((await first.proc.exited).signal, 'SIGKILL');
  assert.equal(pushesOf('alert').length, 0, 'no message push was accepted before the kill');

  apns.clearReplies();
  await launch();
  await until('the message push after the restart', () => pushesOf('alert').length > 0, 30_000);
  const content = open(pushesOf('alert')[0]!);
  assert.ok(content.kind === 'message');
  assert.equal(content.entries.length, 1);
  const meta = openMeta(crypto, q.ntf!.rcvNtfDhSecret, content.entries[0]!);
  assert.ok(meta);
  assert.equal(Buffer.from(meta.msgId).toString('hex'), Buffer.from(msg.msgId).toString('hex'), 'the push names the message sent before the kill');
});

test('the relay sending an NMSG again (same nonce) pushes nothing again', async () => {
  await withNtf({}, async ({ ntf, rc, queue, subscribe }) => {
    const phone = await device(ntf);
    const q = await queue();
    const subId = await subscribe(phone, q);
    await rc.send(q.sndId, bytes('one'), { notify: true });
    const first = (await phone.nextPush('message')).entries.at(-1)!;
    await until('the push recorded as accepted', () => ntf.ntf.store.pendingPushes().count === 0);

    // What the relay link hands the server when the relay sends it again (it got no NACK).
    const sub = ntf.ntf.store.sub(latin1(subId))!;
    ntf.ntf.subscriber.opts.onNotification(sub, { nonce: first.nonce, sealedMeta: first.sealedMeta });
    assert.equal(ntf.ntf.store.pendingPushes().count, 0, 'nothing new is owed');

    // The next push is the next message's: the repeat queued none before it.
    await rc.send(q.sndId, bytes('two'), { notify: true });
    const next = (await phone.nextPush('message')).entries.at(-1)!;
    assert.notDeepEqual(next.nonce, first.nonce);
    assert.equal(ntf.provider.delivered.filter((r) => r.kind === 'message').length, 2);
  });
});

test('a push that failed for good stays owed: the sweep pushes again once it waited pendingRetryMs; metrics show it', async () => {
  const clock = new TestClock();
  await withNtf({ clock, dispatch: { pendingRetryMs: 60_000 } }, async ({ ntf, rc, queue, subscribe }) => {
    const { ntf: server, provider } = ntf;
    const phone = await device(ntf);
    const q = await queue();
    await subscribe(phone, q);
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending'), 0);
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending_oldest_seconds'), 0);

    provider.respond = () => ({ outcome: 'failed', reason: 'test: refused' });
    const sent = provider.attempts.length;
    await rc.send(q.sndId, bytes('refused'), { notify: true });
    await provider.waitFor('the failed push', () => provider.attempts.slice(sent).some((a) => a.req.kind === 'message' && a.result));
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending'), 1);
    clock.advance(30_000);
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending_oldest_seconds'), 30);

    // Not yet waited long enough: the sweep leaves it (a push would be sent synchronously).
    const before = provider.attempts.length;
    server.runCron();
    assert.equal(provider.attempts.length, before);

    provider.respond = () => ({ outcome: 'delivered' });
    clock.advance(60_000);
    server.runCron();
    const push = await phone.nextPush('message');
    assert.equal(push.entries.length, 1);
    await until('nothing pending', () => server.store.pendingPushes().count === 0);
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending'), 0);
    assert.equal(await gauge(server, 'hush_ntf_notifications_pending_oldest_seconds'), 0);

    // Nothing owed: later sweeps send nothing.
    clock.advance(120_000);
    const after = provider.attempts.length;
    server.runCron();
    assert.equal(provider.attempts.length, after);
  });
});

test('a token the provider calls invalid is owed nothing more', async () => {
  await withNtf({}, async ({ ntf, rc, queue, subscribe }) => {
    const phone = await device(ntf);
    const q = await queue();
    await subscribe(phone, q);
    ntf.provider.respond = () => ({ outcome: 'invalid', reason: 'UNREGISTERED' });
    await rc.send(q.sndId, bytes('to nobody'), { notify: true });
    await until('the token INVALID', async () => (await phone.check()).status === 'INVALID');
    assert.deepEqual(ntf.ntf.store.pendingPushes(), { count: 0, oldestTs: undefined });
    assert.equal(await gauge(ntf.ntf, 'hush_ntf_notifications_pending'), 0);
  });
});
