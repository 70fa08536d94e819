// End to end with a REAL relay process: a device registers and verifies its
// token by opening the verification push, a recipient sets notifier
// credentials at the relay (NKEY) and hands them to the NTF server (SNEW), a
// sender SENDs with notify, and the push the device gets opens — push secret,
// then the notifier DH secret — to exactly that message's ID and timestamp.
// Then the relay is killed -9 and restarted, and the NTF server is stopped and
// started again on its journal, with notifications flowing across both.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { nodeCrypto } from '../../src/node/crypto.ts';
import type { KeyPair } from '../../src/core/crypto/suite.ts';
import type { NtfClient } from '../../src/ntf/client.ts';
import type { SubStatus } from '../../src/ntf/protocol.ts';
import { type DeviceToken, PUSH_DATA_SIZE } from '../../src/push/device.ts';
import { openPush, type PushContent } from '../../src/ntf/payload.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { openMessage, openMeta } from '../../src/relay/client.ts';
import { bytes, connect, crypto, newQueue, text, tmpDir, type Queue, type TestClient } from '../helpers.ts';
import { CaptureProvider, hex, RECONNECT_MAX_MS, RelayProcess, startNtf, TestClock, until, type TestNtf } from './helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

const kp = () => crypto.x25519KeyPair();

/** A recipient's queue with notifier credentials made by NKEY (not NEW). */
interface NtfQueue {
  q: Queue;
  ntfAuth: KeyPair;
  notifierId: Uint8Array;
  rcvNtfDhSecret: Uint8Array;
  subId: Uint8Array;
}

interface Phone {
  device: DeviceToken;
  tknAuth: KeyPair;
  tokenId: Uint8Array;
  secret: Uint8Array;
}

interface E2E {
  relay: RelayProcess;
  ntf: TestNtf;
  ntfDir: string;
  identity: KeyPair;
  serviceKey: KeyPair;
  nc: NtfClient;
  phone: Phone;
  /** Relay clients, closed at the end. */
  relayClient(): Promise<TestClient>;
  /** A queue, NKEY, SNEW, and its subscription ACTIVE. */
  subscribedQueue(rc: TestClient): Promise<NtfQueue>;
  schk(q: NtfQueue): Promise<SubStatus>;
  untilStatus(qs: NtfQueue[], status: SubStatus, timeoutMs?: number): Promise<void>;
  /** Takes message pushes until each queue's entry opens to the expected msgId; checks ts against GET. */
  expectNotified(sent: Array<{ nq: NtfQueue; body: string }>, rc: TestClient, timeoutMs?: number): Promise<void>;
  /** Starts a new NTF server on the same journal, identity and service key. */
  restartNtf(stopped: () => Promise<void>): Promise<void>;
}

/** `clock`: the NTF servers' relay reconnects (and push retries) wait for it. */
async function withE2E(fn: (e: E2E) => Promise<void>, clock?: TestClock): Promise<void> {
  const relay = await RelayProcess.start();
  const ntfDir = tmpDir('hush-ntf-store-');
  const identity = nodeCrypto.ed25519KeyPair();
  const serviceKey = nodeCrypto.x25519KeyPair();
  const clients: TestClient[] = [];
  const servers: TestNtf[] = [];
  try {
    const start = async () => {
      const t = await startNtf({ store: openJournalNtfStore(ntfDir).store, identity, serviceKey, ...(clock ? { clock, clockTimers: true } : {}) });
      servers.push(t);
      return t;
    };
    const ntf = await start();
    const p = ntf.provider;
    const nc = await ntf.client();

    // ---- TNEW → the phone opens the verification push → TVFY → ACTIVE ----
    const device: DeviceToken = { provider: 'test', token: bytes('e2e-phone-token') };
    const tknAuth = kp();
    const tknDh = kp();
    const { tokenId, srvDhKey } = await nc.registerToken(device, tknAuth, tknDh.publicKey);
    const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
    const vreq = await p.next((r) => r.kind === 'verification');
    assert.equal(vreq.data.length, PUSH_DATA_SIZE);
    const v = openPush(crypto, secret, vreq.data);
    assert.ok(v?.kind === 'verification', 'the verification push opens on the phone');
    await nc.verifyToken(tokenId, tknAuth.privateKey, v.code);
    assert.deepEqual(await nc.checkToken(tokenId, tknAuth.privateKey), { status: 'ACTIVE' });

    const e: E2E = {
      relay,
      ntf,
      ntfDir,
      identity,
      serviceKey,
      nc,
      phone: { device, tknAuth, tokenId, secret },
      async relayClient() {
        const c = await connect(relay.address, { timeoutMs: 10_000 });
        clients.push(c);
        return c;
      },
      async subscribedQueue(rc) {
        const q = await newQueue(rc, false);
        const ntfAuth = kp();
        const ntfDh = kp();
        const nid = await rc.enableNotifications(q.rcvId, q.rcvAuth.privateKey, ntfAuth.publicKey, ntfDh.publicKey);
        const rcvNtfDhSecret = sharedKey(crypto, ntfDh.privateKey, nid.srvNtfDhKey, 'relay notifier')!;
        const subId = await e.nc.createSubscription(tokenId, tknAuth.privateKey, relay.address, nid.notifierId, ntfAuth.privateKey);
        const nq = { q, ntfAuth, notifierId: nid.notifierId, rcvNtfDhSecret, subId };
        await e.untilStatus([nq], 'ACTIVE');
        return nq;
      },
      schk: (nq) => e.nc.checkSubscription(nq.subId, tknAuth.privateKey),
      async untilStatus(qs, status, timeoutMs = 10_000) {
        let last: SubStatus[] = [];
        await until(`subscriptions ${status}`, async () => {
          last = await Promise.all(qs.map((nq) => e.schk(nq)));
          return last.every((s) => s === status);
        }, timeoutMs).catch((err: Error) => {
          throw new Error(`${err.message} (last: ${last.join(', ')})`);
        });
      },
      async expectNotified(sent, rc, timeoutMs = 15_000) {
        // what GET returns for each queue: the message the push must name
        const expected = new Map<string, { msgId: Uint8Array; ts: number }>();
        for (const { nq, body } of sent) {
          const msg = await rc.get(nq.q.rcvId, nq.q.rcvAuth.privateKey);
          assert.ok(msg, 'the message waits at the relay');
          const m = openMessage(crypto, nq.q.rcvDhSecret, msg);
          assert.ok(m);
          assert.equal(text(m.body), body);
          expected.set(hex(nq.notifierId), { msgId: m.msgId, ts: m.ts });
          await rc.ack(nq.q.rcvId, nq.q.rcvAuth.privateKey, m.msgId);
        }
        const seen = new Set<string>();
        const deadline = Date.now() + timeoutMs;
        while (seen.size < expected.size) {
          const req = await e.ntf.provider.next((r) => r.kind === 'message', Math.max(1, deadline - Date.now()));
          assert.equal(req.data.length, PUSH_DATA_SIZE);
          assert.deepEqual([req.device.provider, hex(req.device.token)], [device.provider, hex(device.token)]);
          const c: PushContent | undefined = openPush(crypto, secret, req.data);
          assert.ok(c?.kind === 'message', 'a message push opens on the phone');
          for (const entry of c.entries) {
            const want = expected.get(hex(entry.notifierId));
            if (!want) continue; // an older queue's entry, sent again
            const nq = sent.find((s) => hex(s.nq.notifierId) === hex(entry.notifierId))!.nq;
            const meta = openMeta(crypto, nq.rcvNtfDhSecret, entry);
            assert.ok(meta, 'the entry opens with the recipient\'s notifier secret');
            // an earlier push may carry this queue's previous message; the latest must come
            if (hex(meta.msgId) !== hex(want.msgId)) continue;
            assert.equal(meta.ts, want.ts, 'the timestamp is the one GET returns');
            seen.add(hex(entry.notifierId));
          }
        }
      },
      async restartNtf(stopped) {
        await e.ntf.stop();
        await stopped();
        e.ntf = await start();
        e.nc = await e.ntf.client();
      },
    };
    await fn(e);
  } finally {
    for (const c of clients) c.close();
    for (const s of servers) await s.stop();
    await relay.stop();
    fs.rmSync(ntfDir, { recursive: true, force: true });
  }
}

test('TNEW → verification push → TVFY → NKEY → SNEW → SEND with notify: the push opens to that message', { timeout: 120_000 }, async () => {
  await withE2E(async (e) => {
    const rc = await e.relayClient();
    const nq = await e.subscribedQueue(rc);
    const sender = await e.relayClient();
    await sender.send(nq.q.sndId, bytes('hello over a real relay'), { notify: true });
    await e.expectNotified([{ nq, body: 'hello over a real relay' }], rc);
    // a second message: the next push names the new message, not the first
    await sender.send(nq.q.sndId, bytes('second'), { notify: true });
    await e.expectNotified([{ nq, body: 'second' }], rc);
    // a SEND without notify pushes nothing
    const pushes = e.ntf.provider.delivered.length;
    await sender.send(nq.q.sndId, bytes('quiet'));
    await sender.send(nq.q.sndId, bytes('loud'), { notify: true });
    await e.ntf.provider.waitFor('the push for the loud message', () => e.ntf.provider.delivered.length > pushes);
    assert.equal(e.ntf.provider.delivered.length, pushes + 1, 'one push for two SENDs, one with notify');
  });
});

test('relay killed -9 and restarted: INACTIVE while down, ACTIVE after, and a message sent right after is notified', { timeout: 120_000 }, async () => {
  const clock = new TestClock();
  await withE2E(async (e) => {
    const rc = await e.relayClient();
    const nqs = [await e.subscribedQueue(rc), await e.subscribedQueue(rc), await e.subscribedQueue(rc)];
    await e.relay.kill();
    await e.untilStatus(nqs, 'INACTIVE');
    // still INACTIVE after failed reconnection attempts: the server keeps retrying, it does not give up the subscriptions
    for (let i = 0; i < 3; i++) {
      await clock.untilPending('a reconnection scheduled');
      clock.advance(RECONNECT_MAX_MS);
    }
    await clock.untilPending('the last reconnection attempt failed');
    assert.deepEqual(await Promise.all(nqs.map((nq) => e.schk(nq))), ['INACTIVE', 'INACTIVE', 'INACTIVE']);
    await e.relay.restart();
    // right after the restart, before the NTF server is back (its next attempt waits for the clock)
    const rc2 = await e.relayClient();
    const sent = nqs.map((nq, i) => ({ nq, body: `after restart ${i}` }));
    for (const s of sent) await rc2.send(s.nq.q.sndId, bytes(s.body), { notify: true });
    assert.equal((await e.relay.healthz()).pendingNotifications, 3, 'the relay keeps the NMSGs for the NTF server');
    clock.advance(RECONNECT_MAX_MS);
    await e.untilStatus(nqs, 'ACTIVE', 20_000);
    await e.expectNotified(sent, rc2);
    // and live notifications still flow
    await rc2.send(nqs[1]!.q.sndId, bytes('later'), { notify: true });
    await e.expectNotified([{ nq: nqs[1]!, body: 'later' }], rc2);
  }, clock);
});

test('messages sent while the NTF server was down are notified once it is back (the relay kept the NMSG)', { timeout: 120_000 }, async () => {
  await withE2E(async (e) => {
    const rc = await e.relayClient();
    const nqs = [await e.subscribedQueue(rc), await e.subscribedQueue(rc)];
    const sender = await e.relayClient();
    await sender.send(nqs[0]!.q.sndId, bytes('before'), { notify: true });
    await e.expectNotified([{ nq: nqs[0]!, body: 'before' }], rc);
    const sent = [
      { nq: nqs[0]!, body: 'while down 0' },
      { nq: nqs[1]!, body: 'while down 1' },
    ];
    const connections = Number((await e.relay.healthz()).connections);
    await e.restartNtf(async () => {
      // "Down" as the relay sees it: an NMSG sent to a connection that is closing but
      // not yet closed at the relay is lost (NMSG delivery is not acknowledged).
      await until('the relay to see the NTF server gone', async () => Number((await e.relay.healthz()).connections) === connections - 1);
      for (const s of sent) await sender.send(s.nq.q.sndId, bytes(s.body), { notify: true });
      const h = await e.relay.healthz();
      assert.equal(h.pendingNotifications, 2, 'the relay keeps the NMSGs while no notifier is subscribed');
    });
    assert.ok(e.ntf.provider instanceof CaptureProvider);
    // the token and its subscriptions came back from the journal
    assert.deepEqual(await e.nc.checkToken(e.phone.tokenId, e.phone.tknAuth.privateKey), { status: 'ACTIVE' });
    await e.untilStatus(nqs, 'ACTIVE');
    await e.expectNotified(sent, rc);
  });
});
