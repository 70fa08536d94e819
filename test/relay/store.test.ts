// QueueStore conformance: one suite run against MemoryQueueStore and the
// journal store (the journal case also checks every state after a reopen),
// then journal-only durability tests: reopen after close and after a crash,
// torn tails, corruption in the middle (refused, then repaired), compaction,
// and unflushed records; last, the memory store's log seam the journal uses.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { crc32 as zlibCrc } from 'node:zlib';
import { JournalCorruptError, type RecordLog } from '../../src/server/journal.ts';
import { openJournalQueueStore, repairRelayJournal, type JournalStoreOptions } from '../../src/relay/store/journal.ts';
import { MemoryQueueStore } from '../../src/relay/store/memory.ts';
import type { StoreRecord } from '../../src/relay/store/records.ts';
import type {
  NotifierRecord,
  PendingNotification,
  QueueRecord,
  QueueStore,
  StoredMessage,
} from '../../src/relay/store/store.ts';
import { tmpDir } from '../helpers.ts';

// ---- record factories ----

const rand = (n: number) => new Uint8Array(randomBytes(n));
const newId = () => rand(24);
const newKey = () => rand(32);
const hex = (b: Uint8Array | undefined) => (b === undefined ? null : Buffer.from(b).toString('hex'));

function notifierRecord(serviceId?: Uint8Array): NotifierRecord {
  const n: NotifierRecord = { notifierId: newId(), ntfAuthKey: newKey(), rcvNtfDhSecret: newKey() };
  return serviceId ? { ...n, serviceId } : n;
}

function queueRecord(o: { notifier?: boolean; serviceId?: Uint8Array } = {}): QueueRecord {
  const q: QueueRecord = { rcvId: newId(), sndId: newId(), rcvAuthKey: newKey(), rcvDhSecret: newKey(), suspended: false };
  if (o.notifier) q.notifier = notifierRecord(o.serviceId);
  return q;
}

function message(ts: number, body = rand(1 + (ts % 50)), notify = ts % 2 === 0): StoredMessage {
  return { msgId: rand(12), ts, notify, body };
}

const pendingNtf = (ts: number): PendingNotification => ({ nonce: rand(12), sealedMeta: rand(40), ts });

/** An ID equal in bytes but a different view (non-zero byteOffset), as IDs parsed from a block are. */
function viewOf(id: Uint8Array): Uint8Array {
  const big = new Uint8Array(id.length + 16);
  big.set(id, 7);
  return big.subarray(7, 7 + id.length);
}

// ---- normalized views, comparable with deepEqual whatever the byte container ----

const normNotifier = (n: NotifierRecord | undefined) =>
  n && {
    notifierId: hex(n.notifierId),
    ntfAuthKey: hex(n.ntfAuthKey),
    rcvNtfDhSecret: hex(n.rcvNtfDhSecret),
    serviceId: hex(n.serviceId),
  };

const normQueue = (q: QueueRecord | undefined) =>
  q && {
    rcvId: hex(q.rcvId),
    sndId: hex(q.sndId),
    rcvAuthKey: hex(q.rcvAuthKey),
    rcvDhSecret: hex(q.rcvDhSecret),
    sndAuthKey: hex(q.sndAuthKey),
    suspended: q.suspended,
    notifier: normNotifier(q.notifier) ?? null,
  };

const normMessage = (m: StoredMessage | undefined) =>
  m && { msgId: hex(m.msgId), ts: m.ts, notify: m.notify, body: hex(m.body) };

const normPending = (p: PendingNotification | undefined) =>
  p && { nonce: hex(p.nonce), sealedMeta: hex(p.sealedMeta), ts: p.ts };

const serviceMembers = (s: QueueStore, serviceId: Uint8Array) =>
  s
    .queuesOfService(serviceId)
    .map((q) => hex(q.rcvId))
    .sort();

/**
 * The whole state reachable through the interface for these IDs. Destructive:
 * messages are read by peek+ack and pending notifications by take.
 */
function dump(s: QueueStore, rcvIds: Uint8Array[], serviceIds: Uint8Array[] = []) {
  const counts = s.counts();
  const services = serviceIds.map((id) => serviceMembers(s, id));
  const queues = rcvIds.map((rcvId) => {
    const q = s.byRecipient(rcvId);
    if (!q) {
      assert.equal(s.messageCount(rcvId), 0);
      assert.equal(s.peekMessage(rcvId), undefined);
      return null;
    }
    const bySnd = s.bySender(q.sndId);
    const byNtf = q.notifier && s.byNotifier(q.notifier.notifierId);
    const count = s.messageCount(rcvId);
    const messages = [];
    for (let m = s.peekMessage(rcvId); m; m = s.peekMessage(rcvId)) {
      messages.push(normMessage(m));
      assert.ok(s.ackMessage(rcvId, m.msgId), 'the head message can be acknowledged');
      assert.ok(messages.length <= count, 'no more messages than messageCount');
    }
    const pending = normPending(s.pendingNotification(rcvId)) ?? null;
    s.clearPendingNotification(rcvId);
    return {
      queue: normQueue(q),
      senderLookup: hex(bySnd?.rcvId),
      notifierLookup: byNtf ? hex(byNtf.rcvId) : null,
      count,
      messages,
      pending,
    };
  });
  return { counts, services, queues };
}

async function closeQuietly(s: QueueStore | undefined): Promise<void> {
  try {
    await s?.close();
  } catch {}
}

// ---- the conformance suite ----

interface Harness {
  store: QueueStore;
  /** The journal closes and opens its directory again; the memory store stays as it is. */
  reopen(s: QueueStore): Promise<QueueStore>;
  cleanup(): void;
}

/** The journal store as the relay opens it, its journal beside it for the figures tests read. */
function openJournal(o: JournalStoreOptions) {
  const { store, journal } = openJournalQueueStore(o);
  return Object.assign(store, { journal });
}
type JournalStore = ReturnType<typeof openJournal>;

const backends: Array<{ name: string; make(): Harness }> = [
  {
    name: 'MemoryQueueStore',
    make: () => ({ store: new MemoryQueueStore(), reopen: async (s) => s, cleanup() {} }),
  },
  {
    name: 'journal store',
    make() {
      const dir = tmpDir('hush-store-');
      return {
        store: openJournal({ dir }),
        async reopen(s) {
          await s.close();
          const again = openJournal({ dir });
          assert.equal(again.journal.truncatedBytes, 0, 'a cleanly closed journal has no torn tail');
          return again;
        },
        cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
];

/** Runs `body` with a fresh store of the backend; `check` runs on the state now and again after a reopen. */
async function withStore(
  b: (typeof backends)[number],
  body: (s: QueueStore, reopenAndCheck: (check: (s: QueueStore) => void) => Promise<QueueStore>) => Promise<void>,
) {
  const h = b.make();
  let current = h.store;
  try {
    await body(current, async (check) => {
      check(current);
      current = await h.reopen(current);
      check(current);
      return current;
    });
  } finally {
    await closeQuietly(current);
    h.cleanup();
  }
}

for (const backend of backends) {
  describe(`QueueStore conformance: ${backend.name}`, () => {
    test('createQueue: found by recipient, sender and notifier ID, and by no other', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q = queueRecord({ notifier: true });
        const plain = queueRecord();
        assert.equal(s0.createQueue(q), true);
        assert.equal(s0.createQueue(plain), true);
        await reopenAndCheck((s) => {
          assert.deepEqual(normQueue(s.byRecipient(q.rcvId)), normQueue(q));
          assert.deepEqual(normQueue(s.bySender(q.sndId)), normQueue(q));
          assert.deepEqual(normQueue(s.byNotifier(q.notifier!.notifierId)), normQueue(q));
          // the same bytes in another view (as parsed from a block) find the same queue
          assert.deepEqual(normQueue(s.byRecipient(viewOf(q.rcvId))), normQueue(q));
          assert.deepEqual(normQueue(s.bySender(viewOf(plain.sndId))), normQueue(plain));
          // an ID of one role does not open another role
          assert.equal(s.byRecipient(q.sndId), undefined);
          assert.equal(s.byRecipient(q.notifier!.notifierId), undefined);
          assert.equal(s.bySender(q.rcvId), undefined);
          assert.equal(s.byNotifier(q.rcvId), undefined);
          assert.equal(s.byNotifier(plain.rcvId), undefined);
          assert.equal(s.byRecipient(newId()), undefined);
          assert.equal(s.byRecipient(plain.rcvId)?.notifier, undefined);
          assert.deepEqual(s.counts(), { queues: 2, messages: 0, notifiers: 1, pendingNotifications: 0 });
        });
      }));

    test('createQueue and setNotifier refuse an ID already taken in any role', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const a = queueRecord({ notifier: true });
        assert.equal(s0.createQueue(a), true);
        const taken = [a.rcvId, a.sndId, a.notifier!.notifierId];
        for (const id of taken) {
          assert.equal(s0.createQueue({ ...queueRecord(), rcvId: id }), false, 'rcvId taken');
          assert.equal(s0.createQueue({ ...queueRecord(), sndId: id }), false, 'sndId taken');
          assert.equal(s0.createQueue({ ...queueRecord(), notifier: { ...notifierRecord(), notifierId: id } }), false);
        }
        assert.equal(s0.createQueue({ ...queueRecord(), rcvId: viewOf(a.rcvId) }), false, 'taken, in another view');
        const b = queueRecord();
        assert.equal(s0.createQueue(b), true);
        for (const id of taken) assert.equal(s0.setNotifier(b.rcvId, { ...notifierRecord(), notifierId: id }), false);
        assert.equal(s0.setNotifier(b.rcvId, { ...notifierRecord(), notifierId: b.sndId }), false);
        await reopenAndCheck((s) => {
          assert.deepEqual(normQueue(s.byRecipient(a.rcvId)), normQueue(a), 'the first queue is untouched');
          assert.deepEqual(normQueue(s.bySender(a.sndId)), normQueue(a));
          assert.deepEqual(normQueue(s.byNotifier(a.notifier!.notifierId)), normQueue(a));
          assert.deepEqual(normQueue(s.byRecipient(b.rcvId)), normQueue(b), 'refused setNotifier changed nothing');
          assert.deepEqual(s.counts(), { queues: 2, messages: 0, notifiers: 1, pendingNotifications: 0 });
        });
      }));

    test('secureQueue sets the sender key of that queue only', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q = queueRecord();
        const other = queueRecord();
        s0.createQueue(q);
        s0.createQueue(other);
        assert.equal(s0.byRecipient(q.rcvId)!.sndAuthKey, undefined);
        const k = newKey();
        s0.secureQueue(q.rcvId, k);
        await reopenAndCheck((s) => {
          assert.equal(hex(s.byRecipient(q.rcvId)!.sndAuthKey), hex(k));
          assert.equal(hex(s.bySender(q.sndId)!.sndAuthKey), hex(k));
          assert.equal(s.byRecipient(other.rcvId)!.sndAuthKey, undefined);
        });
      }));

    test('setNotifier replaces the notifier (dropping its pending NMSG); deleteNotifier removes it', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q = queueRecord();
        s0.createQueue(q);
        const n1 = notifierRecord();
        assert.equal(s0.setNotifier(q.rcvId, n1), true);
        assert.deepEqual(normNotifier(s0.byRecipient(q.rcvId)!.notifier), normNotifier(n1));
        assert.equal(hex(s0.byNotifier(n1.notifierId)?.rcvId), hex(q.rcvId));
        s0.setPendingNotification(q.rcvId, pendingNtf(10));
        assert.equal(s0.counts().pendingNotifications, 1);

        const n2 = notifierRecord();
        assert.equal(s0.setNotifier(q.rcvId, n2), true);
        let s1 = await reopenAndCheck((s) => {
          assert.equal(s.byNotifier(n1.notifierId), undefined, 'the old notifier ID is gone');
          assert.equal(hex(s.byNotifier(n2.notifierId)?.rcvId), hex(q.rcvId));
          assert.deepEqual(normNotifier(s.byRecipient(q.rcvId)!.notifier), normNotifier(n2));
          assert.deepEqual(s.counts(), { queues: 1, messages: 0, notifiers: 1, pendingNotifications: 0 });
        });
        assert.equal(s1.pendingNotification(q.rcvId), undefined, 'NMSG sealed for the old notifier dropped');

        // another queue with a pending NMSG: deleteNotifier drops both notifier and NMSG
        const r = queueRecord({ notifier: true });
        s1.createQueue(r);
        s1.setPendingNotification(r.rcvId, pendingNtf(20));
        s1.deleteNotifier(q.rcvId);
        s1.deleteNotifier(r.rcvId);
        s1 = await reopenAndCheck((s) => {
          assert.equal(s.byNotifier(n2.notifierId), undefined);
          assert.equal(s.byNotifier(r.notifier!.notifierId), undefined);
          assert.equal(s.byRecipient(q.rcvId)!.notifier, undefined);
          assert.equal(s.byRecipient(r.rcvId)!.notifier, undefined);
          assert.deepEqual(s.counts(), { queues: 2, messages: 0, notifiers: 0, pendingNotifications: 0 });
        });
        assert.equal(s1.pendingNotification(r.rcvId), undefined);
      }));

    test('setService and queuesOfService', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const S1 = newId();
        const S2 = newId();
        const a = queueRecord({ notifier: true });
        const b = queueRecord({ notifier: true });
        const c = queueRecord(); // no notifier: setService is a no-op
        const d = queueRecord({ notifier: true, serviceId: S2 }); // created with a service
        for (const q of [a, b, c, d]) assert.equal(s0.createQueue(q), true);
        assert.deepEqual(serviceMembers(s0, S2), [hex(d.rcvId)]);
        s0.setService(a.rcvId, S1);
        s0.setService(b.rcvId, S1);
        s0.setService(c.rcvId, S1);
        let s1 = await reopenAndCheck((s) => {
          assert.deepEqual(serviceMembers(s, S1), [hex(a.rcvId), hex(b.rcvId)].sort());
          assert.deepEqual(serviceMembers(s, S2), [hex(d.rcvId)]);
          assert.deepEqual(serviceMembers(s, newId()), []);
          assert.equal(hex(s.byRecipient(a.rcvId)!.notifier!.serviceId), hex(S1));
          assert.equal(hex(s.byNotifier(b.notifier!.notifierId)!.notifier!.serviceId), hex(S1));
          assert.equal(s.byRecipient(c.rcvId)!.notifier, undefined);
        });

        s1.setService(b.rcvId, S2); // moves
        s1.setService(a.rcvId, undefined); // leaves
        s1 = await reopenAndCheck((s) => {
          assert.deepEqual(serviceMembers(s, S1), []);
          assert.deepEqual(serviceMembers(s, S2), [hex(b.rcvId), hex(d.rcvId)].sort());
          assert.equal(s.byRecipient(a.rcvId)!.notifier!.serviceId, undefined);
          assert.equal(hex(s.byRecipient(a.rcvId)!.notifier!.notifierId), hex(a.notifier!.notifierId), 'notifier kept');
        });

        s1.setNotifier(b.rcvId, notifierRecord()); // new credentials: no service yet
        s1.deleteNotifier(d.rcvId);
        await reopenAndCheck((s) => {
          assert.deepEqual(serviceMembers(s, S2), []);
          assert.equal(s.counts().notifiers, 2);
        });
      }));

    test('suspendQueue marks that queue suspended and keeps its messages', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q = queueRecord({ notifier: true });
        const other = queueRecord();
        s0.createQueue(q);
        s0.createQueue(other);
        const m = message(5);
        s0.addMessage(q.rcvId, m);
        s0.suspendQueue(q.rcvId);
        await reopenAndCheck((s) => {
          assert.equal(s.byRecipient(q.rcvId)!.suspended, true);
          assert.equal(s.bySender(q.sndId)!.suspended, true);
          assert.equal(s.byRecipient(other.rcvId)!.suspended, false);
          assert.deepEqual(normMessage(s.peekMessage(q.rcvId)), normMessage(m));
          assert.equal(s.counts().messages, 1);
        });
      }));

    test('deleteQueue removes the queue, its messages, notifier, service link and pending NMSG', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const S = newId();
        const a = queueRecord({ notifier: true, serviceId: S });
        const b = queueRecord({ notifier: true, serviceId: S });
        s0.createQueue(a);
        s0.createQueue(b);
        for (let i = 0; i < 3; i++) s0.addMessage(a.rcvId, message(100 + i));
        const bm = message(200);
        s0.addMessage(b.rcvId, bm);
        s0.setPendingNotification(a.rcvId, pendingNtf(1));
        const bp = pendingNtf(2);
        s0.setPendingNotification(b.rcvId, bp);
        assert.deepEqual(s0.counts(), { queues: 2, messages: 4, notifiers: 2, pendingNotifications: 2 });
        s0.deleteQueue(a.rcvId);
        // later records for the deleted queue change nothing
        s0.addMessage(a.rcvId, message(300));
        s0.setPendingNotification(a.rcvId, pendingNtf(3));
        const s1 = await reopenAndCheck((s) => {
          assert.equal(s.byRecipient(a.rcvId), undefined);
          assert.equal(s.bySender(a.sndId), undefined);
          assert.equal(s.byNotifier(a.notifier!.notifierId), undefined);
          assert.equal(s.messageCount(a.rcvId), 0);
          assert.equal(s.peekMessage(a.rcvId), undefined);
          assert.deepEqual(serviceMembers(s, S), [hex(b.rcvId)]);
          assert.deepEqual(s.counts(), { queues: 1, messages: 1, notifiers: 1, pendingNotifications: 1 });
          assert.deepEqual(normQueue(s.byRecipient(b.rcvId)), normQueue(b), 'the other queue is intact');
          assert.deepEqual(normMessage(s.peekMessage(b.rcvId)), normMessage(bm));
        });
        assert.equal(s1.pendingNotification(a.rcvId), undefined);
        assert.deepEqual(normPending(s1.pendingNotification(b.rcvId)), normPending(bp));
      }));

    test('addMessage/peekMessage/ackMessage: FIFO, and only the head can be acknowledged', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q = queueRecord();
        const other = queueRecord();
        s0.createQueue(q);
        s0.createQueue(other);
        assert.equal(s0.peekMessage(q.rcvId), undefined);
        assert.equal(s0.ackMessage(q.rcvId, rand(12)), false, 'nothing to acknowledge');
        const ms = [message(1000, rand(300), true), message(1001, new Uint8Array(0), false), message(1002)];
        for (const m of ms) s0.addMessage(q.rcvId, m);
        const om = message(999);
        s0.addMessage(other.rcvId, om);
        assert.equal(s0.messageCount(q.rcvId), 3);
        assert.equal(s0.ackMessage(q.rcvId, ms[1]!.msgId), false, 'not the head');
        assert.equal(s0.ackMessage(q.rcvId, ms[2]!.msgId), false, 'not the head');
        assert.equal(s0.ackMessage(q.rcvId, om.msgId), false, "another queue's message");
        assert.equal(s0.messageCount(q.rcvId), 3);
        assert.deepEqual(normMessage(s0.peekMessage(q.rcvId)), normMessage(ms[0]));
        assert.equal(s0.ackMessage(q.rcvId, viewOf(ms[0]!.msgId)), true);
        assert.equal(s0.ackMessage(q.rcvId, ms[0]!.msgId), false, 'already acknowledged');
        const s1 = await reopenAndCheck((s) => {
          assert.deepEqual(normMessage(s.peekMessage(q.rcvId)), normMessage(ms[1]));
          assert.equal(s.messageCount(q.rcvId), 2);
          assert.deepEqual(normMessage(s.peekMessage(other.rcvId)), normMessage(om));
          assert.equal(s.counts().messages, 3);
        });
        assert.equal(s1.ackMessage(q.rcvId, ms[1]!.msgId), true);
        assert.deepEqual(normMessage(s1.peekMessage(q.rcvId)), normMessage(ms[2]));
        assert.equal(s1.ackMessage(q.rcvId, ms[2]!.msgId), true);
        await reopenAndCheck((s) => {
          assert.equal(s.peekMessage(q.rcvId), undefined);
          assert.equal(s.messageCount(q.rcvId), 0);
          assert.equal(s.messageCount(other.rcvId), 1);
          assert.deepEqual(s.counts(), { queues: 2, messages: 1, notifiers: 0, pendingNotifications: 0 });
        });
      }));

    test('expireMessages deletes messages older than the cutoff and counts them', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q1 = queueRecord();
        const q2 = queueRecord();
        const q3 = queueRecord();
        for (const q of [q1, q2, q3]) s0.createQueue(q);
        const m1 = [100, 200, 300].map((ts) => message(ts));
        const m2 = [150, 250].map((ts) => message(ts));
        for (const m of m1) s0.addMessage(q1.rcvId, m);
        for (const m of m2) s0.addMessage(q2.rcvId, m);
        assert.equal(s0.expireMessages(100), 0, 'strictly older only');
        assert.equal(s0.expireMessages(201), 3);
        const s1 = await reopenAndCheck((s) => {
          assert.deepEqual(normMessage(s.peekMessage(q1.rcvId)), normMessage(m1[2]));
          assert.deepEqual(normMessage(s.peekMessage(q2.rcvId)), normMessage(m2[1]));
          assert.equal(s.messageCount(q1.rcvId), 1);
          assert.equal(s.messageCount(q2.rcvId), 1);
          assert.equal(s.counts().messages, 2);
        });
        assert.equal(s1.expireMessages(1_000_000), 2);
        assert.equal(s1.expireMessages(1_000_000), 0);
        await reopenAndCheck((s) => {
          assert.equal(s.counts().messages, 0);
          assert.equal(s.peekMessage(q1.rcvId), undefined);
          assert.equal(s.counts().queues, 3, 'expiry keeps the queues');
        });
      }));

    test('pending notifications: the latest is kept until cleared, the oldest is known, expiry counts', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const q1 = queueRecord({ notifier: true });
        const q2 = queueRecord({ notifier: true });
        s0.createQueue(q1);
        s0.createQueue(q2);
        assert.equal(s0.pendingNotification(q1.rcvId), undefined);
        s0.setPendingNotification(q1.rcvId, pendingNtf(100));
        const latest = pendingNtf(110);
        s0.setPendingNotification(q1.rcvId, latest);
        assert.equal(s0.counts().pendingNotifications, 1, 'one per queue');
        let s1 = await reopenAndCheck((s) => assert.equal(s.counts().pendingNotifications, 1));
        assert.deepEqual(normPending(s1.pendingNotification(q1.rcvId)), normPending(latest));
        assert.deepEqual(normPending(s1.pendingNotification(q1.rcvId)), normPending(latest), 'kept until cleared');
        s1.clearPendingNotification(q1.rcvId);
        assert.equal(s1.pendingNotification(q1.rcvId), undefined, 'clear removes it');
        s1 = await reopenAndCheck((s) => assert.equal(s.counts().pendingNotifications, 0));
        assert.equal(s1.pendingNotification(q1.rcvId), undefined, 'clear is durable');

        const old = pendingNtf(100);
        const fresh = pendingNtf(300);
        s1.setPendingNotification(q1.rcvId, old);
        s1.setPendingNotification(q2.rcvId, fresh);
        assert.equal(s1.oldestPendingNotification(), 100);
        assert.equal(s1.expirePendingNotifications(100), 0, 'strictly older only');
        assert.equal(s1.expirePendingNotifications(200), 1);
        s1 = await reopenAndCheck((s) => {
          assert.equal(s.counts().pendingNotifications, 1);
          assert.equal(s.oldestPendingNotification(), 300);
        });
        assert.equal(s1.pendingNotification(q1.rcvId), undefined);
        assert.deepEqual(normPending(s1.pendingNotification(q2.rcvId)), normPending(fresh));
      }));

    test('counts() follows every kind of change', () =>
      withStore(backend, async (s0, reopenAndCheck) => {
        const qs = Array.from({ length: 5 }, (_, i) => queueRecord({ notifier: i % 2 === 0 }));
        for (const q of qs) s0.createQueue(q);
        qs.forEach((q, i) => {
          for (let j = 0; j <= i; j++) s0.addMessage(q.rcvId, message(1000 + j));
        });
        s0.setPendingNotification(qs[0]!.rcvId, pendingNtf(1));
        s0.setPendingNotification(qs[2]!.rcvId, pendingNtf(1));
        s0.setNotifier(qs[1]!.rcvId, notifierRecord());
        const s1 = await reopenAndCheck((s) =>
          assert.deepEqual(s.counts(), { queues: 5, messages: 15, notifiers: 4, pendingNotifications: 2 }),
        );
        s1.deleteQueue(qs[4]!.rcvId); // 5 messages, a notifier
        s1.deleteNotifier(qs[0]!.rcvId); // and its pending NMSG
        s1.ackMessage(qs[3]!.rcvId, s1.peekMessage(qs[3]!.rcvId)!.msgId);
        await reopenAndCheck((s) =>
          assert.deepEqual(s.counts(), { queues: 4, messages: 9, notifiers: 2, pendingNotifications: 1 }),
        );
      }));
  });
}

// ---- journal durability ----

const JOURNAL = 'relay.journal';
type Op = (s: QueueStore) => void;

/** A pseudo-random but repeatable sequence of operations (random values drawn up front). */
function scenario(seed: number, n: number) {
  let x = seed >>> 0;
  const next = () => {
    // mulberry32
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(a: T[]): T => a[Math.floor(next() * a.length)]!;
  const rcvIds: Uint8Array[] = [];
  const services = [newId(), newId()];
  const ops: Op[] = [];
  let ts = 1000;
  const create = () => {
    const q = queueRecord({ notifier: next() < 0.5 });
    rcvIds.push(q.rcvId);
    ops.push((s) => void s.createQueue(q));
  };
  for (let i = 0; i < 4; i++) create();
  for (let i = 0; i < n; i++) {
    const r = next();
    const id = pick(rcvIds);
    if (r < 0.05) create();
    else if (r < 0.4) {
      const m = message(ts++, rand(Math.floor(next() * 200)), next() < 0.3);
      ops.push((s) => s.addMessage(id, m));
    } else if (r < 0.55)
      ops.push((s) => {
        const h = s.peekMessage(id);
        if (h) s.ackMessage(id, h.msgId);
      });
    else if (r < 0.6) {
      const k = newKey();
      ops.push((s) => s.secureQueue(id, k));
    } else if (r < 0.65) {
      const nr = notifierRecord(next() < 0.5 ? pick(services) : undefined);
      ops.push((s) => void s.setNotifier(id, nr));
    } else if (r < 0.68) ops.push((s) => s.deleteNotifier(id));
    else if (r < 0.74) {
      const sv = next() < 0.8 ? pick(services) : undefined;
      ops.push((s) => s.setService(id, sv));
    } else if (r < 0.76) ops.push((s) => s.suspendQueue(id));
    else if (r < 0.78) ops.push((s) => s.deleteQueue(id));
    else if (r < 0.88) {
      const p = pendingNtf(ts++);
      ops.push((s) => s.setPendingNotification(id, p));
    } else if (r < 0.93) ops.push((s) => s.clearPendingNotification(id));
    else if (r < 0.97) {
      const cut = ts - 40;
      ops.push((s) => void s.expireMessages(cut));
    } else {
      const cut = ts - 20;
      ops.push((s) => void s.expirePendingNotifications(cut));
    }
  }
  return { ops, rcvIds, services };
}

const oracle = (ops: Op[]) => {
  const m = new MemoryQueueStore();
  for (const op of ops) op(m);
  return m;
};

const journalFile = (dir: string) => path.join(dir, JOURNAL);
const fileSize = (dir: string) => fs.statSync(journalFile(dir)).size;

/** Frame offsets of a journal file: u32 length, u32 CRC, record. */
function frameOffsets(data: Buffer): number[] {
  const offsets: number[] = [];
  let pos = 0;
  while (pos + 8 <= data.length) {
    offsets.push(pos);
    pos += 8 + data.readUInt32BE(pos);
  }
  assert.equal(pos, data.length, 'the journal is a whole number of frames');
  return offsets;
}

describe('journal store durability', () => {
  test('reopen after close restores exactly the same state', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { ops, rcvIds, services } = scenario(1, 600);
    const j = openJournal({ dir });
    for (const op of ops) op(j);
    const before = j.counts();
    assert.ok(before.queues > 5 && before.messages > 20 && before.pendingNotifications > 0, 'a non-trivial state');
    await j.close();
    const j2 = openJournal({ dir });
    try {
      assert.equal(j2.journal.truncatedBytes, 0);
      assert.deepEqual(j2.counts(), before);
      assert.deepEqual(dump(j2, rcvIds, services), dump(oracle(ops), rcvIds, services));
    } finally {
      await j2.close();
    }
    // the destructive dump (acks, takes) was itself journaled
    const j3 = openJournal({ dir });
    try {
      assert.equal(j3.counts().messages, 0);
      assert.equal(j3.counts().pendingNotifications, 0);
      assert.equal(j3.counts().queues, before.queues);
    } finally {
      await j3.close();
    }
  });

  test('a journal of many read chunks restores every message and notification intact (records own their bytes)', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const j = openJournal({ dir });
    const q = queueRecord({ notifier: true });
    j.createQueue(q);
    const sent = Array.from({ length: 500 }, (_, i) => message(i, rand(30_000 + i)));
    for (const m of sent) j.addMessage(q.rcvId, m);
    const p = pendingNtf(7);
    j.setPendingNotification(q.rcvId, p);
    await j.close();
    assert.ok(fileSize(dir) > 3 * (4 << 20), 'more than three read chunks');
    const j2 = openJournal({ dir });
    try {
      assert.deepEqual(
        Array.from({ length: sent.length }, (_, i) => normMessage(j2.messageAt(q.rcvId, i))),
        sent.map(normMessage),
      );
      assert.deepEqual(normPending(j2.pendingNotification(q.rcvId)), normPending(p));
    } finally {
      await j2.close();
    }
  });

  test('reopen without close (crash): everything flushed is restored, nothing unflushed', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { ops, rcvIds, services } = scenario(2, 500);
    const flushedOps = ops.slice(0, 400);
    const j = openJournal({ dir });
    let j2: JournalStore | undefined;
    try {
      for (const op of flushedOps) op(j);
      await j.flush();
      const flushedSize = fileSize(dir);
      assert.equal(j.journal.bytes, flushedSize);
      for (const op of ops.slice(400)) op(j); // never flushed: lost in the "crash"
      assert.ok(j.journal.bytes > flushedSize, 'the unflushed records are buffered');
      assert.equal(fileSize(dir), flushedSize, 'unflushed records are not in the file');

      j2 = openJournal({ dir }); // the first store is still open, as after kill -9
      assert.equal(j2.journal.truncatedBytes, 0);
      assert.deepEqual(dump(j2, rcvIds, services), dump(oracle(flushedOps), rcvIds, services));
    } finally {
      await closeQuietly(j2);
      await closeQuietly(j);
    }
  });

  test('a flush makes buffered records visible to a new reader', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const j = openJournal({ dir });
    const readers: JournalStore[] = [];
    try {
      const q = queueRecord({ notifier: true });
      j.createQueue(q);
      const m = message(7);
      j.addMessage(q.rcvId, m);
      assert.equal(fileSize(dir), 0, 'nothing written before flush');
      readers.push(openJournal({ dir }));
      assert.equal(readers[0]!.byRecipient(q.rcvId), undefined);
      await j.flush();
      assert.ok(fileSize(dir) > 0);
      readers.push(openJournal({ dir }));
      assert.deepEqual(normQueue(readers[1]!.byRecipient(q.rcvId)), normQueue(q));
      assert.deepEqual(normMessage(readers[1]!.peekMessage(q.rcvId)), normMessage(m));
    } finally {
      for (const r of readers) await closeQuietly(r);
      await closeQuietly(j);
    }
  });

  test('a torn tail is truncated and reported; earlier records are intact and appending continues', async (t) => {
    const { ops, rcvIds, services } = scenario(3, 200);
    // a real frame, to tear: the first frame of a journal holding one queue
    const donorDir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(donorDir, { recursive: true, force: true }));
    const donor = openJournal({ dir: donorDir });
    donor.createQueue(queueRecord({ notifier: true }));
    await donor.close();
    const frame = fs.readFileSync(journalFile(donorDir));
    assert.equal(frameOffsets(frame).length, 1);
    assert.ok(frame.length > 60);

    const tails: Array<[string, Buffer]> = [
      ['3 bytes of a header', frame.subarray(0, 3)],
      ['a header alone', frame.subarray(0, 8)],
      ['a header and half a record', frame.subarray(0, 30)],
      ['a frame short by one byte', frame.subarray(0, frame.length - 1)],
      ['random bytes', randomBytes(333)],
      ['a header claiming a huge record', Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6])],
      ['a whole frame with a bad CRC', Buffer.concat([frame.subarray(0, 4), Buffer.from([frame[4]! ^ 1]), frame.subarray(5)])],
      ['zeros (the file grew, its data never written)', Buffer.alloc(4096)],
    ];
    for (const [what, tail] of tails) {
      const dir = tmpDir('hush-journal-');
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const j = openJournal({ dir });
      for (const op of ops) op(j);
      await j.close();
      const good = fileSize(dir);
      fs.appendFileSync(journalFile(dir), tail);

      const j2 = openJournal({ dir });
      try {
        assert.equal(j2.journal.truncatedBytes, tail.length, `${what}: reported`);
        assert.equal(fileSize(dir), good, `${what}: cut off the file`);
        // appending after the cut: a new queue and message survive another reopen
        const q = queueRecord();
        const m = message(5);
        const more: Op[] = [(s) => void s.createQueue(q), (s) => s.addMessage(q.rcvId, m)];
        for (const op of more) op(j2);
        await j2.close();
        const j3 = openJournal({ dir });
        try {
          assert.equal(j3.journal.truncatedBytes, 0, `${what}: no tail left`);
          assert.deepEqual(normMessage(j3.peekMessage(q.rcvId)), normMessage(m), `${what}: appended after the cut`);
          const all = [...rcvIds, q.rcvId];
          assert.deepEqual(dump(j3, all, services), dump(oracle([...ops, ...more]), all, services), `${what}: state`);
        } finally {
          await j3.close();
        }
      } finally {
        await closeQuietly(j2);
      }
    }
  });

  test('a corrupt record with more after it refuses the open; repair keeps the rest aside and cuts there', async (t) => {
    // one record per operation, so frame k is operation k
    const qs = [queueRecord({ notifier: true }), queueRecord(), queueRecord()];
    const ops: Op[] = qs.map((q) => (s) => void s.createQueue(q));
    for (let i = 0; i < 12; i++) {
      const m = message(100 + i);
      const q = qs[i % 3]!;
      ops.push((s) => s.addMessage(q.rcvId, m));
    }
    const k = qs[1]!.rcvId;
    const key = newKey();
    ops.push((s) => s.secureQueue(k, key));
    const rcvIds = qs.map((q) => q.rcvId);

    const corruptions: Array<[string, (data: Buffer, off: number) => void]> = [
      ['a flipped CRC byte', (d, off) => void (d[off + 5]! ^= 0x01)],
      ['a flipped record byte', (d, off) => void (d[off + 12]! ^= 0x80)],
      ['an unknown record tag with a valid CRC', (d, off) => {
        const len = d.readUInt32BE(off);
        d[off + 8] = 200;
        d.writeUInt32BE(zlibCrc(d.subarray(off + 8, off + 8 + len)), off + 4);
      }],
      ['zeros in place of a frame', (d, off) => void d.fill(0, off, off + 8 + d.readUInt32BE(off))],
    ];
    for (const [what, corrupt] of corruptions) {
      const dir = tmpDir('hush-journal-');
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const j = openJournal({ dir });
      for (const op of ops) op(j);
      await j.close();
      const data = fs.readFileSync(journalFile(dir));
      const offsets = frameOffsets(data);
      assert.equal(offsets.length, ops.length, 'one frame per operation');
      const bad = 9;
      const at = offsets[bad]!;
      corrupt(data, at);
      fs.writeFileSync(journalFile(dir), data);

      assert.throws(
        () => openJournal({ dir, repairCommand: 'hush relay repair --dir X' }),
        (e) => {
          assert.ok(e instanceof JournalCorruptError, `${what}: ${e}`);
          assert.equal(e.offset, at, what);
          assert.match(e.message, new RegExp(`${journalFile(dir)}: corrupt record at byte ${at} of ${data.length}`), what);
          assert.match(e.message, /hush relay repair --dir X/, `${what}: says how to recover`);
          return true;
        },
      );
      assert.deepEqual(fs.readFileSync(journalFile(dir)), data, `${what}: a refused open changes nothing`);

      const { file, repair } = repairRelayJournal(dir);
      assert.equal(file, journalFile(dir));
      assert.deepEqual(repair, { offset: at, keptBytes: data.length - at, keptIn: `${journalFile(dir)}.corrupt-${at}`, records: bad }, what);
      assert.deepEqual(fs.readFileSync(repair!.keptIn), data.subarray(at), `${what}: the rest is kept`);
      assert.equal(fileSize(dir), at, `${what}: the journal is cut at the bad record`);
      assert.equal(repairRelayJournal(dir).repair, undefined, `${what}: nothing left to repair`);

      const j2 = openJournal({ dir });
      try {
        assert.equal(j2.journal.truncatedBytes, 0, what);
        assert.deepEqual(dump(j2, rcvIds), dump(oracle(ops.slice(0, bad)), rcvIds), `${what}: state up to the bad record`);
      } finally {
        await j2.close();
      }
    }
  });

  test('compaction shrinks the journal and a reopen gives the same state', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const S = newId();
    const qs = [queueRecord({ notifier: true, serviceId: S }), queueRecord(), queueRecord({ notifier: true }), queueRecord()];
    const ops: Op[] = [];
    const j = openJournal({ dir, compactMinBytes: 4096, compactRatio: 2 });
    const run = (op: Op) => {
      ops.push(op);
      op(j);
    };
    let maxSize = 0;
    let shrinks = 0;
    let written = 0;
    let last = 0;
    try {
      for (const q of qs) run((s) => void s.createQueue(q));
      const k = newKey();
      run((s) => s.secureQueue(qs[1]!.rcvId, k));
      run((s) => s.suspendQueue(qs[3]!.rcvId));
      for (let i = 0; i < 3 * qs.length; i++) {
        const m = message(i, rand(100));
        const q = qs[i % qs.length]!;
        run((s) => s.addMessage(q.rcvId, m));
      }
      const p = pendingNtf(1);
      run((s) => s.setPendingNotification(qs[2]!.rcvId, p));
      await j.flush();
      last = fileSize(dir);
      written = last;
      for (let i = 0; i < 1500; i++) {
        const q = qs[i % qs.length]!;
        const m = message(1000 + i, rand(200));
        const before = j.journal.bytes;
        run((s) => s.addMessage(q.rcvId, m));
        run((s) => void s.ackMessage(q.rcvId, s.peekMessage(q.rcvId)!.msgId));
        written += j.journal.bytes - before;
        await j.flush();
        const size = fileSize(dir);
        assert.equal(j.journal.bytes, size, 'the journal bytes are the file size after a flush');
        if (size < last) shrinks++;
        last = size;
        maxSize = Math.max(maxSize, size);
      }
      assert.ok(written > 400_000, `enough traffic (${written} bytes)`);
      assert.ok(shrinks >= 10, `compacted repeatedly (${shrinks} times)`);
      assert.ok(maxSize < 20_000, `the journal stays small (max ${maxSize} bytes)`);
      assert.equal(fs.existsSync(journalFile(dir) + '.compact'), false, 'no temporary file left');
      assert.deepEqual(j.counts(), { queues: 4, messages: 12, notifiers: 2, pendingNotifications: 1 });
    } finally {
      await closeQuietly(j);
    }
    const rcvIds = qs.map((q) => q.rcvId);
    const j2 = openJournal({ dir, compactMinBytes: 4096, compactRatio: 2 });
    try {
      assert.equal(j2.journal.truncatedBytes, 0);
      assert.deepEqual(dump(j2, rcvIds, [S]), dump(oracle(ops), rcvIds, [S]));
    } finally {
      await j2.close();
    }
  });

  test('a large journal is compacted when opened, with the same state', async (t) => {
    const dir = tmpDir('hush-journal-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const { ops, rcvIds, services } = scenario(4, 300);
    const j = openJournal({ dir }); // default threshold: never compacts here
    for (const op of ops) op(j);
    const q = queueRecord();
    const churn: Op[] = [(s) => void s.createQueue(q)];
    for (let i = 0; i < 400; i++) {
      const m = message(5000 + i, rand(300));
      churn.push((s) => s.addMessage(q.rcvId, m));
      churn.push((s) => void s.ackMessage(q.rcvId, m.msgId));
    }
    for (const op of churn) op(j);
    await j.close();
    const big = fileSize(dir);
    assert.ok(big > 100_000);
    const j2 = openJournal({ dir, compactMinBytes: 1024, compactRatio: 2 });
    try {
      assert.ok(fileSize(dir) < big / 4, `compacted on open (${big} → ${fileSize(dir)} bytes)`);
    } finally {
      await j2.close();
    }
    const j3 = openJournal({ dir });
    try {
      const all = [...rcvIds, q.rcvId];
      assert.deepEqual(dump(j3, all, services), dump(oracle([...ops, ...churn]), all, services));
    } finally {
      await j3.close();
    }
  });
});

describe('MemoryQueueStore with a log attached (what the journal store composes)', () => {
  test('the log gets every change, and loading its records rebuilds the same state', async () => {
    const { ops, rcvIds, services } = scenario(5, 400);
    const appended: StoreRecord[] = [];
    let flushes = 0;
    const log: RecordLog<StoreRecord> = {
      append: (r) => void appended.push(r),
      flush: () => void flushes++,
      close() {},
      failure: () => 'disk full',
    };
    const m = new MemoryQueueStore();
    m.attach(log);
    for (const op of ops) op(m);
    await m.flush();
    assert.equal(flushes, 1);
    assert.equal(m.failure(), 'disk full', 'the log says why it cannot persist');
    const replayed = new MemoryQueueStore();
    for (const r of appended) replayed.load(r);
    assert.deepEqual(replayed.counts(), m.counts());
    assert.deepEqual(dump(replayed, rcvIds, services), dump(oracle(ops), rcvIds, services));
    const live = new MemoryQueueStore();
    for (const r of m.liveRecords()) live.load(r);
    assert.deepEqual(dump(live, rcvIds, services), dump(m, rcvIds, services));
  });
});
