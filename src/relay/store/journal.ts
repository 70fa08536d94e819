// Journal store: a memory store with the journal (src/server/journal.ts)
// attached as its log, the journal replayed into it on open. It answers the
// store interface by delegating to the memory store, which logs every change.
import fs from 'node:fs';
import path from 'node:path';
import { Journal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord, type StoreRecord } from './records.ts';
import type { NotifierRecord, PendingNotification, QueueRecord, QueueStore, StoreCounts, StoredMessage } from './store.ts';

export interface JournalStoreOptions extends Omit<JournalOptions, 'file'> {
  dir: string;
}

const journalFile = (dir: string) => path.join(dir, 'relay.journal');
const codec = { encode: encodeRecord, decode: decodeRecord };

/** Sets aside a corrupt journal's records from the bad one on (src/server/journal.ts repairJournal). */
export function repairRelayJournal(dir: string) {
  const file = journalFile(dir);
  return { file, repair: repairJournal(file, codec) };
}

export class JournalQueueStore implements QueueStore {
  private readonly memory = new MemoryQueueStore();
  private readonly journal: Journal<StoreRecord>;

  private constructor({ dir, ...opts }: JournalStoreOptions) {
    fs.mkdirSync(dir, { recursive: true });
    const memory = this.memory;
    this.journal = new Journal(
      { ...opts, file: journalFile(dir) },
      codec,
      (r) => memory.load(r),
      () => memory.liveRecords(),
    );
    memory.attach(this.journal);
  }

  static open(opts: JournalStoreOptions): JournalQueueStore {
    return new JournalQueueStore(opts);
  }

  /** Bytes cut off a torn tail when opening. */
  get truncatedBytes(): number {
    return this.journal.truncatedBytes;
  }

  get journalBytes(): number {
    return this.journal.bytes;
  }

  compact(): void {
    this.journal.compact();
  }

  byRecipient(rcvId: Uint8Array): QueueRecord | undefined {
    return this.memory.byRecipient(rcvId);
  }

  bySender(sndId: Uint8Array): QueueRecord | undefined {
    return this.memory.bySender(sndId);
  }

  byNotifier(notifierId: Uint8Array): QueueRecord | undefined {
    return this.memory.byNotifier(notifierId);
  }

  queuesOfService(serviceId: Uint8Array): QueueRecord[] {
    return this.memory.queuesOfService(serviceId);
  }

  createQueue(q: QueueRecord): boolean {
    return this.memory.createQueue(q);
  }

  secureQueue(rcvId: Uint8Array, sndAuthKey: Uint8Array): void {
    this.memory.secureQueue(rcvId, sndAuthKey);
  }

  setNotifier(rcvId: Uint8Array, n: NotifierRecord): boolean {
    return this.memory.setNotifier(rcvId, n);
  }

  deleteNotifier(rcvId: Uint8Array): void {
    this.memory.deleteNotifier(rcvId);
  }

  setService(rcvId: Uint8Array, serviceId: Uint8Array | undefined): void {
    this.memory.setService(rcvId, serviceId);
  }

  suspendQueue(rcvId: Uint8Array): void {
    this.memory.suspendQueue(rcvId);
  }

  deleteQueue(rcvId: Uint8Array): void {
    this.memory.deleteQueue(rcvId);
  }

  addMessage(rcvId: Uint8Array, m: StoredMessage): void {
    this.memory.addMessage(rcvId, m);
  }

  peekMessage(rcvId: Uint8Array): StoredMessage | undefined {
    return this.memory.peekMessage(rcvId);
  }

  messageAt(rcvId: Uint8Array, index: number): StoredMessage | undefined {
    return this.memory.messageAt(rcvId, index);
  }

  ackMessage(rcvId: Uint8Array, msgId: Uint8Array): boolean {
    return this.memory.ackMessage(rcvId, msgId);
  }

  messageCount(rcvId: Uint8Array): number {
    return this.memory.messageCount(rcvId);
  }

  expireMessages(before: number): number {
    return this.memory.expireMessages(before);
  }

  setPendingNotification(rcvId: Uint8Array, p: PendingNotification): void {
    this.memory.setPendingNotification(rcvId, p);
  }

  pendingNotification(rcvId: Uint8Array): PendingNotification | undefined {
    return this.memory.pendingNotification(rcvId);
  }

  clearPendingNotification(rcvId: Uint8Array): void {
    this.memory.clearPendingNotification(rcvId);
  }

  oldestPendingNotification(): number | undefined {
    return this.memory.oldestPendingNotification();
  }

  expirePendingNotifications(before: number): number {
    return this.memory.expirePendingNotifications(before);
  }

  counts(): StoreCounts {
    return this.memory.counts();
  }

  failure(): string | undefined {
    return this.memory.failure();
  }

  flush(): Promise<void> {
    return this.memory.flush();
  }

  close(): Promise<void> {
    return this.memory.close();
  }
}
