// In-memory relay store: the state every backend reads from. Each mutation is
// a StoreRecord, applied here and appended to the attached log (the journal).
import { equalBytes, latin1 } from '../../core/encoding.ts';
import { RecordedStore } from '../../server/recorded-store.ts';
import { StoredNotifier, StoredQueue } from './compact.ts';
import type { StoreRecord } from './records.ts';
import type {
  KeptQueue,
  NotifierRecord,
  PendingNotification,
  QueueRecord,
  QueueStore,
  StoreCounts,
  StoredMessage,
} from './store.ts';

export class MemoryQueueStore extends RecordedStore<StoreRecord> implements QueueStore {
  private readonly queues = new Map<string, StoredQueue>();
  private readonly senders = new Map<string, StoredQueue>();
  private readonly notifiers = new Map<string, StoredQueue>();
  /** serviceId → its queues, and the key string its queues' notifiers share. */
  private readonly services = new Map<string, { id: string; queues: Set<StoredQueue> }>();
  private readonly messages = new Map<string, StoredMessage[]>();
  private readonly pending = new Map<string, PendingNotification>();
  private messageTotal = 0;

  byRecipient = (rcvId: Uint8Array): KeptQueue | undefined => this.queues.get(latin1(rcvId));
  bySender = (sndId: Uint8Array): KeptQueue | undefined => this.senders.get(latin1(sndId));
  byNotifier = (notifierId: Uint8Array): KeptQueue | undefined => this.notifiers.get(latin1(notifierId));

  queuesOfService(serviceId: Uint8Array): KeptQueue[] {
    return [...(this.services.get(latin1(serviceId))?.queues ?? [])];
  }

  createQueue(q: QueueRecord): boolean {
    if (this.idTaken(q.rcvId) || this.idTaken(q.sndId) || (q.notifier && this.idTaken(q.notifier.notifierId)))
      return false;
    this.record({ t: 'QNEW', q });
    return true;
  }

  /** IDs of all three kinds share one space, so no ID is ever reused across roles. */
  private idTaken(id: Uint8Array): boolean {
    const k = latin1(id);
    return this.queues.has(k) || this.senders.has(k) || this.notifiers.has(k);
  }

  secureQueue(rcvId: Uint8Array, sndAuthKey: Uint8Array): void {
    this.record({ t: 'QKEY', rcvId, sndAuthKey });
  }

  setNotifier(rcvId: Uint8Array, n: NotifierRecord): boolean {
    if (this.idTaken(n.notifierId)) return false;
    this.record({ t: 'NSET', rcvId, n });
    return true;
  }

  deleteNotifier(rcvId: Uint8Array): void {
    this.record({ t: 'NDEL', rcvId });
  }

  setService(rcvId: Uint8Array, serviceId: Uint8Array | undefined): void {
    this.record(serviceId ? { t: 'NSVC', rcvId, serviceId } : { t: 'NSVC', rcvId });
  }

  suspendQueue(rcvId: Uint8Array): void {
    this.record({ t: 'QOFF', rcvId });
  }

  deleteQueue(rcvId: Uint8Array): void {
    this.record({ t: 'QDEL', rcvId });
  }

  addMessage(rcvId: Uint8Array, m: StoredMessage): void {
    this.record({ t: 'MADD', rcvId, m });
  }

  peekMessage(rcvId: Uint8Array): StoredMessage | undefined {
    return this.messageAt(rcvId, 0);
  }

  messageAt(rcvId: Uint8Array, index: number): StoredMessage | undefined {
    return this.messages.get(latin1(rcvId))?.[index];
  }

  ackMessage(rcvId: Uint8Array, msgId: Uint8Array): boolean {
    const head = this.peekMessage(rcvId);
    if (!head || !equalBytes(head.msgId, msgId)) return false;
    this.record({ t: 'MACK', rcvId, msgId });
    return true;
  }

  messageCount(rcvId: Uint8Array): number {
    return this.messages.get(latin1(rcvId))?.length ?? 0;
  }

  expireMessages(before: number): number {
    let n = 0;
    for (const [k, list] of this.messages) {
      const rcvId = this.queues.get(k)!.rcvId;
      while (list.length > 0 && list[0]!.ts < before) {
        this.record({ t: 'MACK', rcvId, msgId: list[0]!.msgId });
        n++;
      }
    }
    return n;
  }

  setPendingNotification(rcvId: Uint8Array, p: PendingNotification): void {
    this.record({ t: 'PSET', rcvId, p });
  }

  pendingNotification(rcvId: Uint8Array): PendingNotification | undefined {
    return this.pending.get(latin1(rcvId));
  }

  clearPendingNotification(rcvId: Uint8Array): void {
    if (this.pending.has(latin1(rcvId))) this.record({ t: 'PCLR', rcvId });
  }

  oldestPendingNotification(): number | undefined {
    // Kept in the order they were set (apply re-inserts), so the first is the oldest.
    return this.pending.values().next().value?.ts;
  }

  expirePendingNotifications(before: number): number {
    let n = 0;
    // Oldest first (see oldestPendingNotification): the first one not expired ends the sweep.
    for (const [k, p] of this.pending) {
      if (p.ts >= before) break;
      this.record({ t: 'PCLR', rcvId: this.queues.get(k)!.rcvId });
      n++;
    }
    return n;
  }

  counts(): StoreCounts {
    return {
      queues: this.queues.size,
      messages: this.messageTotal,
      notifiers: this.notifiers.size,
      pendingNotifications: this.pending.size,
    };
  }

  /** Applies a record to the in-memory state; records for unknown queues are ignored. */
  protected apply(r: StoreRecord): void {
    if (r.t === 'QNEW') {
      const q = new StoredQueue(r.q);
      this.queues.set(q.rcv, q);
      this.senders.set(q.snd, q);
      if (r.q.notifier) this.linkNotifier(q, r.q.notifier);
      return;
    }
    const k = latin1(r.rcvId);
    const q = this.queues.get(k);
    if (!q) return;
    switch (r.t) {
      case 'QKEY':
        q.sndKey = latin1(r.sndAuthKey);
        break;
      case 'NSET': // a pending NMSG was sealed for the old notifier: drop it
        this.unlinkNotifier(q);
        this.pending.delete(k);
        this.linkNotifier(q, r.n);
        break;
      case 'NDEL':
        this.unlinkNotifier(q);
        this.pending.delete(k);
        break;
      case 'NSVC':
        if (!q.notifier) break;
        this.unlinkService(q);
        q.notifier.service = r.serviceId && latin1(r.serviceId);
        this.linkService(q);
        break;
      case 'QOFF':
        q.suspended = true;
        break;
      case 'QDEL':
        this.unlinkNotifier(q);
        this.queues.delete(k);
        this.senders.delete(q.snd);
        this.messageTotal -= this.messages.get(k)?.length ?? 0;
        this.messages.delete(k);
        this.pending.delete(k);
        break;
      case 'MADD': {
        let list = this.messages.get(k);
        if (!list) this.messages.set(k, (list = []));
        list.push(r.m);
        this.messageTotal++;
        break;
      }
      case 'MACK': {
        const list = this.messages.get(k);
        if (!list || !list[0] || !equalBytes(list[0].msgId, r.msgId)) break;
        list.shift();
        this.messageTotal--;
        if (list.length === 0) this.messages.delete(k);
        break;
      }
      case 'PSET':
        this.pending.delete(k); // re-inserted last: Map order is the order they were made
        this.pending.set(k, r.p);
        break;
      case 'PCLR':
        this.pending.delete(k);
        break;
    }
  }

  private linkNotifier(q: StoredQueue, n: NotifierRecord): void {
    q.notifier = new StoredNotifier(n, n.serviceId && latin1(n.serviceId));
    this.notifiers.set(q.notifier.id, q);
    this.linkService(q);
  }

  private unlinkNotifier(q: StoredQueue): void {
    if (!q.notifier) return;
    this.unlinkService(q);
    this.notifiers.delete(q.notifier.id);
    q.notifier = undefined;
  }

  /** Adds the queue to its notifier's service, if any; the notifier then holds the service's one ID string. */
  private linkService(q: StoredQueue): void {
    const n = q.notifier;
    if (n?.service === undefined) return;
    let s = this.services.get(n.service);
    if (!s) this.services.set(n.service, (s = { id: n.service, queues: new Set() }));
    n.service = s.id;
    s.queues.add(q);
  }

  private unlinkService(q: StoredQueue): void {
    const id = q.notifier?.service;
    if (id === undefined) return;
    const s = this.services.get(id);
    s?.queues.delete(q);
    if (s?.queues.size === 0) this.services.delete(id);
  }

  /** Records that rebuild the live state (for compaction). */
  *liveRecords(): Generator<StoreRecord> {
    for (const [k, q] of this.queues) {
      yield { t: 'QNEW', q };
      for (const m of this.messages.get(k) ?? []) yield { t: 'MADD', rcvId: q.rcvId, m };
      const p = this.pending.get(k);
      if (p) yield { t: 'PSET', rcvId: q.rcvId, p };
    }
  }
}
