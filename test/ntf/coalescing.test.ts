// Push dispatch: coalescing of NMSGs that arrive while a push waits, the
// entry limit and order, fixed push size, pushes only to ACTIVE tokens,
// retries, invalid tokens, and provider isolation.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_PUSH_ENTRIES, type PushEntry } from '../../src/ntf/payload.ts';
import { PUSH_DATA_SIZE } from '../../src/push/device.ts';
import { openMeta } from '../../src/relay/client.ts';
import type { Queue } from '../helpers.ts';
import { bytes, crypto } from '../helpers.ts';
import { CaptureProvider, device, forDevice, hex, received, TestClock, until, withNtf, type Device, type NtfCtx } from './helpers.ts';

/** Message pushes sent to `d` (answered or not). */
const messageAttempts = (d: Device) => d.provider.attempts.filter((a) => forDevice(d.device)(a.req) && a.req.kind === 'message');

/** Reads the queue's messages with GET/ACK; returns their msgIds in order. */
async function drain(ctx: NtfCtx, q: Queue): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const m = await ctx.rc.get(q.rcvId, q.rcvAuth.privateKey);
    if (!m) return ids;
    ids.push(hex(m.msgId));
    await ctx.rc.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
  }
}

/** Opens each entry with its queue's notifier secret: [notifierId hex, msgId hex, ts]. */
function openEntries(entries: PushEntry[], queues: Queue[]) {
  return entries.map((e) => {
    const q = queues.find((q) => hex(q.ntf!.notifierId) === hex(e.notifierId));
    assert.ok(q, 'the entry names one of the subscribed queues');
    const meta = openMeta(crypto, q.ntf!.rcvNtfDhSecret, e);
    assert.ok(meta, 'the entry opens with the recipient\'s notifier secret');
    return { queue: queues.indexOf(q), msgId: hex(meta.msgId), ts: meta.ts };
  });
}

/**
 * With concurrency 1, a held push to another device occupies the only slot, so
 * `d`'s push waits in the queue while NMSGs arrive — the situation coalescing is for.
 */
async function blockProvider(ctx: NtfCtx): Promise<void> {
  const p = ctx.ntf.provider;
  const blocker = await device(ctx.ntf);
  const bq = await ctx.queue();
  await ctx.subscribe(blocker, bq);
  p.hold();
  await ctx.rc.send(bq.sndId, bytes('blocker'), { notify: true });
  await p.waitFor('the blocker\'s push in flight', () => messageAttempts(blocker).length === 1 && p.pending === 1);
}

describe('coalescing', () => {
  test('20 messages on 10 queues while pushes are held: one push, the latest NMSG per queue, oldest first', async () => {
    await withNtf({ dispatch: { concurrency: 1 } }, async (ctx) => {
      const d = await device(ctx.ntf);
      const queues: Queue[] = [];
      for (let i = 0; i < 10; i++) {
        const q = await ctx.queue();
        await ctx.subscribe(d, q);
        queues.push(q);
      }
      await blockProvider(ctx);
      const before = await received(ctx.ntf.ntf);
      for (let round = 0; round < 2; round++)
        for (const [i, q] of queues.entries()) await ctx.rc.send(q.sndId, bytes(`q${i} m${round}`), { notify: true });
      await until('all 20 NMSGs at the server', async () => (await received(ctx.ntf.ntf)) - before === 20);
      assert.equal(messageAttempts(d).length, 0, 'the push waits while the provider is busy');
      ctx.ntf.provider.release();
      const push = await d.nextPush('message');
      await ctx.ntf.ntf.dispatcher.idle();
      assert.equal(messageAttempts(d).length, 1, '20 NMSGs, one push');
      assert.equal(messageAttempts(d)[0]!.req.data.length, PUSH_DATA_SIZE);
      assert.equal(push.entries.length, 10);
      const opened = openEntries(push.entries, queues);
      assert.deepEqual(opened.map((o) => o.queue), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'one entry per queue, oldest first');
      for (const [i, q] of queues.entries()) {
        const ids = await drain(ctx, q);
        assert.equal(ids.length, 2);
        assert.equal(opened[i]!.msgId, ids[1], `queue ${i}: the entry names the LAST message`);
      }
      const ts = opened.map((o) => o.ts);
      assert.deepEqual(ts, [...ts].sort((a, b) => a - b));
    });
  });

  test(`at most ${MAX_PUSH_ENTRIES} entries: the newest ones, oldest first`, async () => {
    await withNtf({ dispatch: { concurrency: 1 } }, async (ctx) => {
      const d = await device(ctx.ntf);
      const queues: Queue[] = [];
      for (let i = 0; i < 20; i++) {
        const q = await ctx.queue();
        await ctx.subscribe(d, q);
        queues.push(q);
      }
      await blockProvider(ctx);
      const before = await received(ctx.ntf.ntf);
      for (const [i, q] of queues.entries()) await ctx.rc.send(q.sndId, bytes(`q${i}`), { notify: true });
      await until('all 20 NMSGs at the server', async () => (await received(ctx.ntf.ntf)) - before === 20);
      ctx.ntf.provider.release();
      const push = await d.nextPush('message');
      assert.equal(push.entries.length, MAX_PUSH_ENTRIES);
      const opened = openEntries(push.entries, queues);
      assert.deepEqual(
        opened.map((o) => o.queue),
        Array.from({ length: MAX_PUSH_ENTRIES }, (_, i) => 20 - MAX_PUSH_ENTRIES + i),
      );
      for (const o of opened) assert.equal(o.msgId, (await drain(ctx, queues[o.queue]!))[0]);
      assert.equal(messageAttempts(d)[0]!.req.data.length, PUSH_DATA_SIZE);
    });
  });

  test('entries are sent again in later pushes until newer ones push them out', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const [q0, q1] = [await ctx.queue(), await ctx.queue()];
      await ctx.subscribe(d, q0);
      await ctx.subscribe(d, q1);
      await ctx.rc.send(q0.sndId, bytes('a'), { notify: true });
      assert.equal((await d.nextPush('message')).entries.length, 1);
      await ctx.rc.send(q1.sndId, bytes('b'), { notify: true });
      const second = await d.nextPush('message');
      assert.deepEqual(openEntries(second.entries, [q0, q1]).map((o) => o.queue), [0, 1]);
      // a newer message on q0 moves its entry to the end (newest)
      await ctx.rc.send(q0.sndId, bytes('c'), { notify: true });
      const third = await d.nextPush('message');
      const opened = openEntries(third.entries, [q0, q1]);
      assert.deepEqual(opened.map((o) => o.queue), [1, 0]);
      assert.equal(opened[1]!.msgId, (await drain(ctx, q0))[1]);
    });
  });
});

describe('who gets pushes', () => {
  test('message pushes go only to ACTIVE tokens', async () => {
    await withNtf({}, async (ctx) => {
      const p = ctx.ntf.provider;
      const active = await device(ctx.ntf);
      const replaced = await device(ctx.ntf);
      const qa = await ctx.queue();
      const qr = await ctx.queue();
      const qi = await ctx.queue();
      await ctx.subscribe(active, qa);
      await ctx.subscribe(replaced, qr);
      // a token the provider rejected may still hold subscriptions (SNEW is allowed), but gets no pushes
      p.respond = (req) => (req.kind === 'verification' && hex(req.device.token).startsWith(hex(bytes('bad-'))) ? { outcome: 'invalid', reason: 'BAD' } : { outcome: 'delivered' });
      const invalid = await device(ctx.ntf, { verify: false, token: bytes('bad-device') });
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(await invalid.check(), { status: 'INVALID', reason: 'BAD' });
      await ctx.subscribe(invalid, qi);
      // TRPL: REGISTERED until verified again
      const newDev = { provider: 'test' as const, token: bytes('replaced-new') };
      const from = p.attempts.length;
      await replaced.client.replaceToken(replaced.tokenId, replaced.tknAuth.privateKey, newDev);
      await p.waitFor('the new verification push', () => p.attempts.slice(from).some((a) => forDevice(newDev)(a.req)));
      const code = replaced.open(p.attempts.slice(from).find((a) => forDevice(newDev)(a.req))!.req.data);
      await ctx.rc.send(qr.sndId, bytes('r1'), { notify: true });
      await ctx.rc.send(qi.sndId, bytes('i1'), { notify: true });
      await ctx.rc.send(qa.sndId, bytes('a1'), { notify: true });
      // the NMSGs for qr and qi came first on the same relay link: their pushes, if any, were queued before
      await active.nextPush('message');
      await ctx.ntf.ntf.dispatcher.idle();
      const messagePushes = p.attempts.filter((a) => a.req.kind === 'message');
      assert.equal(messagePushes.length, 1, 'only the ACTIVE token got a message push');
      assert.ok(forDevice(active.device)(messagePushes[0]!.req));
      // verified again: the next NMSG pushes, to the new device token
      assert.equal(code.kind, 'verification');
      await replaced.client.verifyToken(replaced.tokenId, replaced.tknAuth.privateKey, code.kind === 'verification' ? code.code : new Uint8Array(0));
      await ctx.rc.send(qr.sndId, bytes('r2'), { notify: true });
      const req = await p.next((r) => r.kind === 'message' && forDevice(newDev)(r));
      const c = replaced.open(req.data);
      assert.ok(c.kind === 'message');
      const entries = openEntries(c.entries, [qr]);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.msgId, (await drain(ctx, qr))[1], 'the latest message of the queue');
      assert.equal(p.attempts.filter((a) => a.req.kind === 'message' && forDevice(replaced.device)(a.req)).length, 0, 'nothing to the old device token');
      assert.equal(p.attempts.filter((a) => a.req.kind === 'message' && forDevice(invalid.device)(a.req)).length, 0);
    });
  });
});

describe('provider answers', () => {
  test('retry N times, then delivered: delivered exactly once, each attempt the same notification', async () => {
    const clock = new TestClock();
    await withNtf({ clock, clockTimers: true, dispatch: { backoffMs: 5, maxBackoffMs: 20, maxAttempts: 6 } }, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      await ctx.subscribe(d, q);
      let retries = 3;
      d.provider.respond = (req) => (req.kind === 'message' && retries-- > 0 ? { outcome: 'retry', reason: 'test: 503' } : { outcome: 'delivered' });
      await ctx.rc.send(q.sndId, bytes('m'), { notify: true });
      for (let i = 1; i <= 3; i++) {
        await clock.untilPending(`retry ${i} scheduled`);
        assert.equal(messageAttempts(d).length, i, `attempt ${i + 1} waits for its delay`);
        clock.advance(20);
      }
      const push = await d.nextPush('message');
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(clock.pending, [], 'no retry after the delivery');
      const attempts = messageAttempts(d);
      assert.equal(attempts.length, 4, '3 retries and the delivery');
      assert.deepEqual(attempts.map((a) => a.result?.outcome), ['retry', 'retry', 'retry', 'delivered']);
      assert.equal(d.provider.delivered.filter((r) => r.kind === 'message').length, 1, 'delivered exactly once');
      const [msgId] = await drain(ctx, q);
      for (const a of attempts) {
        const c = d.open(a.req.data);
        assert.ok(c.kind === 'message');
        assert.deepEqual(openEntries(c.entries, [q]).map((o) => o.msgId), [msgId]);
      }
      assert.equal(openEntries(push.entries, [q])[0]!.msgId, msgId);
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
    });
  });

  test('retries stop after maxAttempts; the token stays ACTIVE and the next NMSG pushes again', async () => {
    const clock = new TestClock();
    await withNtf({ clock, clockTimers: true, dispatch: { backoffMs: 5, maxBackoffMs: 20, maxAttempts: 3 } }, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      await ctx.subscribe(d, q);
      d.provider.respond = (req) => (req.kind === 'message' ? { outcome: 'retry', reason: 'test: down' } : { outcome: 'delivered' });
      await ctx.rc.send(q.sndId, bytes('m1'), { notify: true });
      for (let i = 1; i <= 2; i++) {
        await clock.untilPending(`retry ${i} scheduled`);
        clock.advance(20);
      }
      await d.provider.waitFor('3 attempts', () => messageAttempts(d).filter((a) => a.result).length === 3);
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(clock.pending, [], 'no fourth attempt scheduled');
      assert.equal(messageAttempts(d).length, 3, 'no fourth attempt');
      assert.deepEqual(await d.check(), { status: 'ACTIVE' });
      d.provider.respond = () => ({ outcome: 'delivered' });
      await ctx.rc.send(q.sndId, bytes('m2'), { notify: true });
      const push = await d.nextPush('message');
      const ids = await drain(ctx, q);
      assert.equal(openEntries(push.entries, [q])[0]!.msgId, ids[1]);
    });
  });

  test('a retry answer with afterMs is honoured', async () => {
    const clock = new TestClock();
    await withNtf({ clock, clockTimers: true, dispatch: { backoffMs: 1, maxBackoffMs: 1 } }, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      await ctx.subscribe(d, q);
      let first = true;
      d.provider.respond = (req) => {
        if (req.kind !== 'message' || !first) return { outcome: 'delivered' };
        first = false;
        return { outcome: 'retry', reason: 'test: 429', afterMs: 300 };
      };
      await ctx.rc.send(q.sndId, bytes('m'), { notify: true });
      await clock.untilPending('the retry scheduled');
      assert.deepEqual(clock.pending, [300], 'the retry waits afterMs, not the 1 ms backoff');
      clock.advance(299);
      assert.equal(messageAttempts(d).length, 1, 'not before afterMs');
      clock.advance(1);
      await d.nextPush('message');
      assert.equal(messageAttempts(d).length, 2);
    });
  });

  test('invalid: the token becomes INVALID(reason), visible in TCHK, and gets no more pushes', async () => {
    await withNtf({}, async (ctx) => {
      const d = await device(ctx.ntf);
      const q = await ctx.queue();
      await ctx.subscribe(d, q);
      d.provider.respond = (req) => (req.kind === 'message' ? { outcome: 'invalid', reason: 'UNREGISTERED' } : { outcome: 'delivered' });
      await ctx.rc.send(q.sndId, bytes('m1'), { notify: true });
      await d.provider.waitFor('the message push', () => messageAttempts(d).length > 0);
      await ctx.ntf.ntf.dispatcher.idle();
      assert.deepEqual(await d.check(), { status: 'INVALID', reason: 'UNREGISTERED' });
      assert.equal(messageAttempts(d).length, 1, 'an invalid answer is not retried');
      const before = await received(ctx.ntf.ntf);
      await ctx.rc.send(q.sndId, bytes('m2'), { notify: true });
      await until('the NMSG at the server', async () => (await received(ctx.ntf.ntf)) > before);
      await ctx.ntf.ntf.dispatcher.idle();
      assert.equal(messageAttempts(d).length, 1, 'no push to an INVALID token');
    });
  });

  test('a failing provider does not starve another', async () => {
    const slow = new CaptureProvider(['test']);
    const fast = new CaptureProvider(['fcm']);
    await withNtf({ providers: [slow, fast], dispatch: { concurrency: 2 } }, async (ctx) => {
      const stuck: Device[] = [];
      for (let i = 0; i < 3; i++) stuck.push(await device(ctx.ntf, { provider: slow }));
      const ok = await device(ctx.ntf, { provider: fast });
      const sq: Queue[] = [];
      for (const s of stuck) {
        const q = await ctx.queue();
        await ctx.subscribe(s, q);
        sq.push(q);
      }
      const oq = await ctx.queue();
      await ctx.subscribe(ok, oq);
      // from now on the slow provider never answers
      slow.respond = () => slow.hang();
      for (const q of sq) await ctx.rc.send(q.sndId, bytes('stuck'), { notify: true });
      await slow.waitFor('both slots of the slow provider taken', () => slow.pending === 2);
      for (let i = 0; i < 5; i++) {
        await ctx.rc.send(oq.sndId, bytes(`ok ${i}`), { notify: true });
        const push = await ok.nextPush('message', 3000);
        const [msgId] = await drain(ctx, oq);
        assert.equal(openEntries(push.entries, [oq])[0]!.msgId, msgId, `push ${i} to the other provider`);
      }
      assert.equal(slow.pending, 2, 'the slow provider still holds its pushes');
      assert.equal(slow.attempts.filter((a) => a.req.kind === 'message').length, 2, 'the third waits in its own queue');
      const lengths = ctx.ntf.ntf.dispatcher.queueLengths();
      assert.equal(lengths.get('test'), 1);
      assert.equal(lengths.get('fcm'), 0);
    });
  });
});
