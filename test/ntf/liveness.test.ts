// The relay link of a notification server never stops silently: a blackholed
// link is probed, closed and reconnected; NMSGs are acknowledged only once the
// store has them (the relay keeps them until then); SDEL/TDEL stop the relay
// notifying; /healthz and the metrics say when a link is down too long.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openMeta } from '../../src/relay/client.ts';
import { MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import type { NtfRecord } from '../../src/ntf/store/records.ts';
import { MemoryQueueStore } from '../../src/relay/store/memory.ts';
import type { RecordLog } from '../../src/server/journal.ts';
import { bytes, connect, crypto, FAST_KEEPALIVE, newQueue, proxied, startRelay, type Queue } from '../helpers.ts';
import { device, received, relayCommands, startNtf, TestClock, until, untilSub, type Device, type TestNtf } from './helpers.ts';



/** Sends a notify message to `q` and waits for a push to `d` that carries that very message. */
async function pushedFor(d: Device, q: Queue & { relay: string }, send: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const before = d.waiting('message').length;
  await send();
  const rc = await connect(q.relay);
  try {
    const m = await rc.get(q.rcvId, q.rcvAuth.privateKey);
    assert.ok(m, 'the message is in the queue');
    await until(
      'a push carrying the message',
      () =>
        d.waiting('message').slice(before).some((r) => {
          const c = d.open(r.data);
          return c.kind === 'message' && c.entries.some((e) => {
            const meta = openMeta(crypto, q.ntf!.rcvNtfDhSecret, e);
            return meta !== undefined && Buffer.from(meta.msgId).equals(Buffer.from(m.msgId));
          });
        }),
      timeoutMs,
    );
    await rc.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
  } finally {
    rc.close();
  }
}

async function setup(ntfOpts: Parameters<typeof startNtf>[0] = {}) {
  const relay = await startRelay();
  const { proxy, address: relayAt } = await proxied(relay.address);
  const ntf: TestNtf = await startNtf({ ...ntfOpts, subscriber: { ...FAST_KEEPALIVE, ...ntfOpts.subscriber } });
  const rc = await connect(relay.address);
  const q = { ...(await newQueue(rc, true)), relay: relay.address };
  const d = await device(ntf);
  const subId = await d.subscribe(relayAt, q.ntf!.notifierId, q.ntf!.auth.privateKey);
  await untilSub(d, subId, 'ACTIVE');
  const send = () => rc.send(q.sndId, bytes('hi'), { notify: true });
  const stop = async () => {
    rc.close();
    await ntf.stop();
    await proxy.close();
    await relay.stop();
  };
  return { relay, proxy, ntf, rc, q, d, subId, send, stop };
}

test('a blackholed relay link is noticed by its PINGs, reconnected, and the message sent into it is pushed', async () => {
  const s = await setup();
  try {
    await pushedFor(s.d, s.q, s.send);
    assert.equal(s.proxy.blackhole(), 1, 'the link went silent');
    // Sent after the link died: the relay writes its NMSG into the dead connection and keeps it unacknowledged.
    await pushedFor(s.d, s.q, s.send);
    await until('a probe round trip measured', async () =>
      (await s.ntf.ntf.metrics.relayProbeRtt.get()).values.some((v) => v.metricName?.endsWith('_count') && v.value > 0),
    );
  } finally {
    await s.stop();
  }
});

test('an NMSG is acknowledged only once the store flushed it: until then the relay keeps it', async () => {
  const waiting: (() => void)[] = [];
  class HeldStore extends MemoryNtfStore {
    held = false;
    override async flush(): Promise<void> {
      if (this.held) await new Promise<void>((r) => waiting.push(r));
      return super.flush();
    }
  }
  const release = () => {
    store.held = false;
    for (const r of waiting.splice(0)) r();
  };
  const store = new HeldStore();
  const s = await setup({ store });
  try {
    store.held = true;
    const before = await received(s.ntf.ntf);
    await s.send();
    await until('the NMSG at the notification server', async () => (await received(s.ntf.ntf)) > before);
    await until('the flush waiting', () => waiting.length > 0);
    assert.equal(s.relay.store.counts().pendingNotifications, 1, 'not acknowledged before the flush');
    release();
    await until('the NACK', () => s.relay.store.counts().pendingNotifications === 0);
  } finally {
    release();
    await s.stop();
  }
});

test('every NACK follows a flush called after its NMSG was recorded, also for NMSGs that share a block', async () => {
  // A log whose flushes make durable what was appended when they were called;
  // while `holding`, only when the test ends them.
  const appended: NtfRecord[] = [];
  let durable = 0;
  let holding = false;
  const held: (() => void)[] = [];
  const release = () => {
    holding = false;
    for (const done of held.splice(0)) done();
  };
  const log: RecordLog<NtfRecord> = {
    append: (r) => void appended.push(r),
    flush() {
      const upTo = appended.length;
      return new Promise<void>((r) => {
        const done = () => ((durable = Math.max(durable, upTo)), r());
        if (holding) held.push(done);
        else setImmediate(done);
      });
    },
    close() {},
    failure: () => undefined,
  };
  const store = new MemoryNtfStore();
  store.attach(log);
  const violations: string[] = [];
  const acked: string[] = [];
  class CheckedQueueStore extends MemoryQueueStore {
    override clearPendingNotification(rcvId: Uint8Array): void {
      const p = this.pendingNotification(rcvId);
      if (p) {
        const nonce = Buffer.from(p.nonce).toString('hex');
        const i = appended.findIndex((r) => r.t === 'LAST' && Buffer.from(r.n.nonce).toString('hex') === nonce);
        if (i < 0 || i >= durable) violations.push(nonce);
        acked.push(nonce);
      }
      super.clearPendingNotification(rcvId);
    }
  }
  const relay = await startRelay({ store: new CheckedQueueStore() });
  const ntf = await startNtf({ store, subscriber: FAST_KEEPALIVE });
  const rc = await connect(relay.address);
  try {
    const d = await device(ntf);
    const qs = await Promise.all(Array.from({ length: 8 }, () => newQueue(rc, true)));
    for (const q of qs) await untilSub(d, await d.subscribe(relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey), 'ACTIVE');
    // A keepalive PING of the quiet link: the relay has had every NACK sent before it.
    const linkPinged = async () => {
      const pings = await relayCommands(relay.server.metrics, 'PING');
      await until('a PING on the quiet link', async () => (await relayCommands(relay.server.metrics, 'PING')) > pings);
    };
    const pending = () => relay.store.counts().pendingNotifications;
    for (let round = 0; round < 5; round++) {
      holding = true;
      const before = await received(ntf.ntf);
      // Sent in one tick: the relay answers them, and their NMSGs go, in one block.
      await Promise.all(qs.map((q) => rc.send(q.sndId, bytes(`m${round}`), { notify: true })));
      await until('the NMSGs recorded', async () => (await received(ntf.ntf)) - before === qs.length);
      await linkPinged();
      assert.equal(pending(), qs.length, 'no NACK while the flushes are held');
      // One flush ends at a time, and the NACKs it lets go reach the relay before the next.
      while (pending() > 0) {
        await until('a flush held', () => held.length > 0);
        held.shift()!();
        await linkPinged();
      }
      release();
    }
    assert.equal(acked.length, 40);
    assert.deepEqual(violations, [], 'no NACK before its NMSG was durable');
  } finally {
    release();
    rc.close();
    await ntf.stop();
    await relay.stop();
  }
});

test('SDEL stops the relay notifying that queue, and a link left with no subscriptions is closed', async () => {
  const s = await setup();
  try {
    const serviceId = crypto.sha256(s.ntf.serviceKey.publicKey);
    assert.equal(s.relay.store.queuesOfService(serviceId).length, 1);
    await s.d.client.deleteSubscription(s.subId, s.d.tknAuth.privateKey);
    await until('the relay forgets the queue for the service', () => s.relay.store.queuesOfService(serviceId).length === 0);
    await until('the idle link closed', () => s.proxy.connections === 0);
    assert.deepEqual(s.ntf.ntf.subscriber.linkStates(), { up: 0, connecting: 0, down: 0 });
    const before = await received(s.ntf.ntf);
    await s.send();
    assert.equal(s.relay.store.counts().pendingNotifications, 1, 'kept for a notifier that may subscribe later');
    assert.equal(await received(s.ntf.ntf), before, 'nothing reaches the notification server');
  } finally {
    await s.stop();
  }
});

test('TDEL stops the relay notifying every queue of the token', async () => {
  const s = await setup();
  try {
    const serviceId = crypto.sha256(s.ntf.serviceKey.publicKey);
    await s.d.client.deleteToken(s.d.tokenId, s.d.tknAuth.privateKey);
    await until('the relay forgets the queue for the service', () => s.relay.store.queuesOfService(serviceId).length === 0);
  } finally {
    await s.stop();
  }
});

test('health fails while a relay link with subscriptions is down past the limit; the metrics show it', async () => {
  const clock = new TestClock();
  const s = await setup({ clock, subscriber: { backoffMs: 60_000, maxBackoffMs: 60_000 } });
  try {
    assert.deepEqual(s.ntf.ntf.health(), { ok: true });
    s.proxy.blackhole();
    await until('the link closed', () => s.ntf.ntf.subscriber.linkStates().up === 0);
    clock.advance(29_000);
    assert.equal(s.ntf.ntf.health().ok, true, 'within the limit');
    clock.advance(2_000);
    const h = s.ntf.ntf.health();
    assert.equal(h.ok, false);
    assert.match(h.reason!, /relay link .* down for 31 s/);
    const metrics = await s.ntf.ntf.metrics.registry.metrics();
    assert.match(metrics, /hush_ntf_relay_link_down_seconds 31/);
    assert.match(metrics, /hush_ntf_relay_links\{state="down"\} 1/);
  } finally {
    await s.stop();
  }
});
