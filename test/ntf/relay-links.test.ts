// Which relays the notification server dials: only addresses the relay policy
// admits (literals at SNEW, host names on what they resolve to), only while a
// live subscription is there, and an unreachable or refused one with a capped
// backoff, never in a tight loop.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { toBase64Url } from '../../src/core/encoding.ts';
import { loadNtfConfig } from '../../src/ntf/config.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { AddressPolicy, isAddressRule } from '../../src/server/address-guard.ts';
import { bytes, connect, crypto, newQueue, startRelay, tmpDir, type TestRelay , capturedLog } from '../helpers.ts';
import { device, rejectsWith, relayCommands, startNtf, TestClock, until, untilSub, type StartNtfOptions, type TestNtf } from './helpers.ts';

const fingerprint = () => toBase64Url(crypto.randomBytes(32));
const at = (host: string, port: number, fp = fingerprint()) => `hush+ws://${fp}@${host}:${port}`;
const notifier = () => [crypto.randomBytes(24), crypto.x25519KeyPair().privateKey] as const;
const links = (ntf: TestNtf) => Object.values(ntf.ntf.subscriber.linkStates()).reduce((a, b) => a + b, 0);
const counter = async (c: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await c.get()).values[0]?.value ?? 0;


/** A TCP port that takes connections and drops them at once (a relay that is not there), counting them. */
async function deadEnd(t: TestContext): Promise<{ port: number; accepted: () => number }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => n };
}

async function ntf(t: TestContext, opts: StartNtfOptions) {
  const s = await startNtf(opts);
  t.after(() => s.stop());
  return s;
}

async function relay(t: TestContext): Promise<TestRelay> {
  const r = await startRelay();
  t.after(() => r.stop());
  return r;
}

describe('the relay policy', () => {
  test('public addresses only by default; allow lists, deny lists and allowPrivate', () => {
    const open = new AddressPolicy();
    for (const host of ['127.0.0.1', '10.1.2.3', '192.168.0.9', '169.254.169.254', '[::1]', '[fd00::1]', '[::ffff:10.0.0.1]', '0.0.0.0'])
      assert.equal(open.refusesHost(host), true, host);
    for (const host of ['8.8.8.8', '[2606:4700::1111]', 'relay.example.com', 'localhost']) assert.equal(open.refusesHost(host), false, host);
    assert.equal(open.admits('localhost', ['127.0.0.1']), false, 'a name is judged by what it resolves to');
    assert.equal(open.admits('relay.example.com', ['8.8.8.8', '10.0.0.1']), false, 'every address must pass');
    assert.equal(open.admits('relay.example.com', ['8.8.8.8']), true);

    const priv = new AddressPolicy({ allowPrivate: true, deny: ['10.0.0.0/8', 'Evil.Example.', '::1'] });
    assert.equal(priv.refusesHost('192.168.0.9'), false);
    assert.equal(priv.refusesHost('10.9.9.9'), true, 'deny wins over allowPrivate');
    assert.equal(priv.refusesHost('[::1]'), true);
    assert.equal(priv.refusesHost('evil.example'), true, 'names compare in any case, without the final dot');
    assert.equal(priv.admits('fine.example', ['10.0.0.7']), false, 'a denied block refuses what a name resolves to');

    const only = new AddressPolicy({ allow: ['relay.example.com', '10.1.0.0/16'], deny: ['10.1.2.0/24'] });
    assert.equal(only.refusesHost('8.8.8.8'), true, 'an allow list admits only what it lists');
    assert.equal(only.refusesHost('10.1.9.9'), false, 'a listed block admits private addresses');
    assert.equal(only.refusesHost('10.1.2.3'), true, 'deny wins over allow');
    assert.equal(only.refusesHost('other.example.com'), false, 'a name could resolve into a listed block');
    assert.equal(only.admits('other.example.com', ['8.8.8.8']), false);
    assert.equal(only.admits('relay.example.com', ['10.200.0.1']), true, 'a listed name, wherever it resolves');
    assert.equal(new AddressPolicy({ allow: ['relay.example.com'] }).refusesHost('other.example.com'), true, 'only names listed: refused at once');

    for (const rule of ['relay.example.com', '127.0.0.1', '10.0.0.0/8', '::1', 'fe80::/10', '[::1]']) assert.equal(isAddressRule(rule), true, rule);
    for (const rule of ['10.0.0.0/33', 'host/8', 'a_b', '', '1.2.3.4/x']) assert.equal(isAddressRule(rule), false, rule);
    assert.throws(() => new AddressPolicy({ deny: ['10.0.0.0/33'] }), RangeError);
  });

  test('ntf.json `relays`, and its env variables (comma-separated lists)', () => {
    const dir = tmpDir('hush-ntf-relays-');
    assert.deepEqual(loadNtfConfig(dir, {}).relays, { allowPrivate: false, allow: [], deny: [], maxBackoffSeconds: 30 });
    const env = { HUSH_NTF_RELAYS_ALLOW_PRIVATE: 'true', HUSH_NTF_RELAYS_ALLOW: 'relay.example.com, 10.0.0.0/8', HUSH_NTF_RELAYS_DENY: '10.9.0.0/16', HUSH_NTF_RELAYS_MAX_BACKOFF_SECONDS: '5' };
    assert.deepEqual(loadNtfConfig(dir, env).relays, { allowPrivate: true, allow: ['relay.example.com', '10.0.0.0/8'], deny: ['10.9.0.0/16'], maxBackoffSeconds: 5 });
    assert.throws(() => loadNtfConfig(dir, { HUSH_NTF_RELAYS_DENY: '10.0.0.0/33' }), /relays\.deny: not a host name, address or CIDR block: 10\.0\.0\.0\/33 \(from env HUSH_NTF_RELAYS_DENY\)/);
  });
});

describe('SNEW and the relay policy', () => {
  test('a refused address literal is ERR RELAY at once, and nothing is dialled', async (t) => {
    const s = await ntf(t, { relays: {} });
    const d = await device(s);
    const [id, key] = notifier();
    for (const host of ['127.0.0.1', '10.1.2.3', '169.254.169.254', '[::1]']) await rejectsWith(d.subscribe(at(host, 5223), id, key), 'RELAY');
    assert.equal(links(s), 0);
    assert.equal((await s.ntf.metrics.errors.get()).values.find((v) => v.labels.error === 'RELAY')?.value, 4);
  });

  test('deny wins; an allow list admits what it names, by name too', async (t) => {
    const r = await relay(t);
    const port = Number(r.address.split(':').at(-1));
    const fp = r.address.slice('hush+ws://'.length, r.address.indexOf('@'));
    const [id, key] = notifier();
    const denying = await ntf(t, { relays: { allowPrivate: true, deny: ['127.0.0.0/8', 'localhost'] } });
    const d1 = await device(denying);
    await rejectsWith(d1.subscribe(at('127.0.0.1', port, fp), id, key), 'RELAY');
    await rejectsWith(d1.subscribe(at('localhost', port, fp), id, key), 'RELAY');

    const listing = await ntf(t, { relays: { allow: ['localhost'] } });
    const d2 = await device(listing);
    await rejectsWith(d2.subscribe(at('127.0.0.1', port, fp), id, key), 'RELAY');
    const rc = await connect(r.address);
    t.after(() => rc.close());
    const q = await newQueue(rc, true);
    const subId = await d2.subscribe(at('localhost', port, fp), q.ntf!.notifierId, q.ntf!.auth.privateKey);
    await untilSub(d2, subId, 'ACTIVE');
  });

  test('a host name that resolves to loopback is refused when connecting: no connection, a metric, a slow retry, PENDING', async (t) => {
    const end = await deadEnd(t);
    const clock = new TestClock();
    const { log, events } = capturedLog('info');
    const s = await ntf(t, { relays: {}, clock, log, subscriber: { backoffMs: 1, maxBackoffMs: 20 } });
    const d = await device(s);
    const [id, key] = notifier();
    const subId = await d.subscribe(at('localhost', end.port), id, key);
    await until('three refused attempts', async () => (await counter(s.ntf.metrics.relaysRefused)) >= 3);
    assert.equal(end.accepted(), 0, 'nothing reached the address');
    const delays = events('relay_refused').map((e) => e.retryMs as number);
    assert.ok(delays.length >= 3 && delays.every((ms) => ms >= 10 && ms <= 20), `a refused relay waits the longest backoff at once: ${delays}`);
    assert.equal(events('relay_connect_failed').length, 0);
    assert.equal(await d.subStatus(subId), 'PENDING');
    clock.advance(3_600_000);
    assert.deepEqual(s.ntf.health(), { ok: true }, 'a relay never subscribed at is not an outage');
  });
});

describe('relay links', () => {
  test('an unreachable relay is retried with a capped backoff', async (t) => {
    const end = await deadEnd(t);
    const { log, events } = capturedLog('info');
    const s = await ntf(t, { log, subscriber: { backoffMs: 5, maxBackoffMs: 40 } });
    const d = await device(s);
    const [id, key] = notifier();
    await d.subscribe(at('127.0.0.1', end.port), id, key);
    await until('seven failed attempts', () => events('relay_connect_failed').length >= 7);
    const delays = events('relay_connect_failed').map((e) => e.retryMs as number);
    assert.ok(delays[0]! <= 5, `the first retry is quick: ${delays}`);
    assert.ok(delays.every((ms) => ms <= 40), `never longer than the cap: ${delays}`);
    assert.ok(delays.slice(4).every((ms) => ms >= 20), `the cap reached, jitter within half of it: ${delays}`);
    assert.ok(end.accepted() >= 7);
  });

  test('the retries of a link that never connected stop once its last subscription goes', async (t) => {
    const gone = await deadEnd(t);
    const witness = await deadEnd(t);
    const s = await ntf(t, { subscriber: { backoffMs: 5, maxBackoffMs: 20 } });
    const d = await device(s);
    const [id, key] = notifier();
    const subId = await d.subscribe(at('127.0.0.1', gone.port), id, key);
    const [id2, key2] = notifier();
    await d.subscribe(at('127.0.0.1', witness.port), id2, key2);
    await until('both relays dialled, again and again', () => gone.accepted() >= 3 && witness.accepted() >= 3);
    await d.client.deleteSubscription(subId, d.tknAuth.privateKey);
    await until('its link dropped', () => links(s) === 1);
    // an attempt under way when it was dropped may still arrive: count from the witness's next one
    const from = witness.accepted() + 1;
    await until('the witness dialled once', () => witness.accepted() >= from);
    const before = gone.accepted();
    // at the same capped backoff the dropped link would have dialled in this time too
    await until('the witness dialled four more times', () => witness.accepted() >= from + 4);
    assert.equal(gone.accepted(), before, 'no more attempts');
  });

  test('a link is closed when its last live subscription goes: SDEL, TDEL, AUTH, DELETED, END', async (t) => {
    const r = await relay(t);
    const s = await ntf(t, {});
    const rc = await connect(r.address);
    t.after(() => rc.close());
    const clients = r.server.connections; // the test's own
    const linkClosed = async () => {
      await until('the link closed', () => links(s) === 0 && r.server.connections === clients);
    };
    const d = await device(s);
    const d2 = await device(s);
    const subscribe = async (who = d) => {
      const q = await newQueue(rc, true);
      const subId = await who.subscribe(r.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      await untilSub(who, subId, 'ACTIVE');
      return { q, subId };
    };

    // SDEL of one of two: the link stays; TDEL of the other's token: closed
    const a = await subscribe();
    const b = await subscribe(d2);
    await d.client.deleteSubscription(a.subId, d.tknAuth.privateKey);
    await until('the NUNS answered', async () => (await relayCommands(r.server.metrics, 'NUNS')) === 1);
    await rc.send(b.q.sndId, bytes('still here'), { notify: true });
    await d2.nextPush('message');
    await d2.client.deleteToken(d2.tokenId, d2.tknAuth.privateKey);
    await linkClosed();

    // AUTH: the relay refuses the notifier key
    const q = await newQueue(rc, true);
    const auth = await d.subscribe(r.address, q.ntf!.notifierId, crypto.x25519KeyPair().privateKey);
    await untilSub(d, auth, 'AUTH');
    await linkClosed();

    // DELETED: the recipient removed the queue's notifier
    const del = await subscribe();
    await rc.disableNotifications(del.q.rcvId, del.q.rcvAuth.privateKey);
    await untilSub(d, del.subId, 'DELETED');
    await linkClosed();

    // END: another notifier took the queue over
    const end = await subscribe();
    const other = await connect(r.address);
    t.after(() => other.close());
    await other.subscribeNotifier(end.q.ntf!.notifierId, end.q.ntf!.auth.privateKey);
    await untilSub(d, end.subId, 'END');
    await until('the link closed', () => links(s) === 0 && r.server.connections === clients + 1);
  });

  test('after a restart only relays with live subscriptions are dialled', async (t) => {
    const r = await relay(t);
    const dir = tmpDir('hush-ntf-links-');
    const rc = await connect(r.address);
    t.after(() => rc.close());
    const q = await newQueue(rc, true);
    const first = await startNtf({ store: openJournalNtfStore(dir).store });
    t.after(() => first.stop());
    const d = await device(first);
    const subId = await d.subscribe(r.address, q.ntf!.notifierId, crypto.x25519KeyPair().privateKey);
    await untilSub(d, subId, 'AUTH');
    await first.stop();
    const second = await ntf(t, { store: openJournalNtfStore(dir).store });
    assert.equal([...second.ntf.store.subsOfRelay(r.address)].length, 1, 'the terminal subscription is kept');
    assert.equal(links(second), 0);
  });
});
