// The relay's store interface. Reads and mutations are synchronous on an
// in-memory view; `flush()` is the durability barrier the server awaits before
// any reply leaves, so an implementation may write behind (a journal, a
// database transaction) as long as flush covers every mutation before it.

export interface NotifierRecord {
  notifierId: Uint8Array;
  ntfAuthKey: Uint8Array;
  /** X25519(relay's notifier DH key, recipient's notifier DH key): seals NMSG meta. */
  rcvNtfDhSecret: Uint8Array;
  /** SHA-256 of the service key of the notification server that subscribed it, if any. */
  serviceId?: Uint8Array;
}

export interface QueueRecord {
  rcvId: Uint8Array;
  sndId: Uint8Array;
  rcvAuthKey: Uint8Array;
  /** X25519(relay's queue DH key, recipient's DH key): seals delivered messages. */
  rcvDhSecret: Uint8Array;
  sndAuthKey?: Uint8Array;
  suspended: boolean;
  notifier?: NotifierRecord;
}

/** A notifier as the store returns it, with the latin1 strings of its ID and service ID. */
export interface KeptNotifier extends NotifierRecord {
  readonly id: string;
  readonly service: string | undefined;
}

/**
 * A queue as the store returns it, with the latin1 string of its recipient ID:
 * what the relay keys its subscriptions by, without making bytes to turn back
 * into that string on every message.
 */
export interface KeptQueue extends QueueRecord {
  readonly rcv: string;
  notifier?: KeptNotifier | undefined;
}

export interface StoredMessage {
  msgId: Uint8Array;
  ts: number;
  notify: boolean;
  body: Uint8Array;
}

/** The latest NMSG of a queue, kept until the notifier subscriber acknowledges it. */
export interface PendingNotification {
  nonce: Uint8Array;
  sealedMeta: Uint8Array;
  ts: number;
}

export interface StoreCounts {
  queues: number;
  messages: number;
  notifiers: number;
  pendingNotifications: number;
}

export interface QueueStore {
  byRecipient(rcvId: Uint8Array): KeptQueue | undefined;
  bySender(sndId: Uint8Array): KeptQueue | undefined;
  byNotifier(notifierId: Uint8Array): KeptQueue | undefined;
  queuesOfService(serviceId: Uint8Array): KeptQueue[];

  /** False if one of the IDs is taken (the caller retries with new ones). */
  createQueue(q: QueueRecord): boolean;
  secureQueue(rcvId: Uint8Array, sndAuthKey: Uint8Array): void;
  setNotifier(rcvId: Uint8Array, n: NotifierRecord): boolean;
  deleteNotifier(rcvId: Uint8Array): void;
  setService(rcvId: Uint8Array, serviceId: Uint8Array | undefined): void;
  suspendQueue(rcvId: Uint8Array): void;
  deleteQueue(rcvId: Uint8Array): void;

  addMessage(rcvId: Uint8Array, m: StoredMessage): void;
  peekMessage(rcvId: Uint8Array): StoredMessage | undefined;
  /** The message at this place in the queue, oldest = 0. */
  messageAt(rcvId: Uint8Array, index: number): StoredMessage | undefined;
  /** Deletes the oldest message if it has this ID. */
  ackMessage(rcvId: Uint8Array, msgId: Uint8Array): boolean;
  messageCount(rcvId: Uint8Array): number;
  /** Deletes messages older than `before` (ms); returns how many. */
  expireMessages(before: number): number;

  /** Keeps the latest NMSG of a queue until its notifier acknowledges it. */
  setPendingNotification(rcvId: Uint8Array, n: PendingNotification): void;
  pendingNotification(rcvId: Uint8Array): PendingNotification | undefined;
  clearPendingNotification(rcvId: Uint8Array): void;
  /** When the oldest kept NMSG was made (ms), if any. */
  oldestPendingNotification(): number | undefined;
  expirePendingNotifications(before: number): number;

  counts(): StoreCounts;
  /** Why the store can no longer persist changes (a failed journal write), if it cannot; the process must restart. */
  failure(): string | undefined;
  flush(): Promise<void>;
  close(): Promise<void>;
}
