// Queues as the memory store keeps them. A million queues must fit in well
// under a GiB: every ID and key is a latin1 string (one char per byte; a
// 24-byte ID is one ~40-byte heap string) instead of a Uint8Array (~100 bytes
// of object each, and a view keeps its whole record buffer alive). The ID
// strings are the store's map keys too. The QueueRecord and NotifierRecord
// fields are made on read: short-lived copies, cheap next to a command.
import { latin1, latin1Bytes } from '../../core/encoding.ts';
import type { KeptNotifier, KeptQueue, NotifierRecord, QueueRecord } from './store.ts';

const bytes = (s: string | undefined) => (s === undefined ? undefined : latin1Bytes(s));

export class StoredNotifier implements KeptNotifier {
  readonly id: string;
  private readonly authKey: string;
  private readonly dhSecret: string;
  /** The services map's key, shared by every queue of the service. */
  service: string | undefined;

  constructor(n: NotifierRecord, service: string | undefined) {
    this.id = latin1(n.notifierId);
    this.authKey = latin1(n.ntfAuthKey);
    this.dhSecret = latin1(n.rcvNtfDhSecret);
    this.service = service;
  }

  get notifierId(): Uint8Array {
    return latin1Bytes(this.id);
  }

  get ntfAuthKey(): Uint8Array {
    return latin1Bytes(this.authKey);
  }

  get rcvNtfDhSecret(): Uint8Array {
    return latin1Bytes(this.dhSecret);
  }

  get serviceId(): Uint8Array | undefined {
    return bytes(this.service);
  }
}

export class StoredQueue implements KeptQueue {
  readonly rcv: string;
  readonly snd: string;
  private readonly authKey: string;
  private readonly dhSecret: string;
  sndKey: string | undefined;
  suspended: boolean;
  notifier: StoredNotifier | undefined;

  constructor(q: QueueRecord) {
    this.rcv = latin1(q.rcvId);
    this.snd = latin1(q.sndId);
    this.authKey = latin1(q.rcvAuthKey);
    this.dhSecret = latin1(q.rcvDhSecret);
    this.sndKey = q.sndAuthKey && latin1(q.sndAuthKey);
    this.suspended = q.suspended;
    this.notifier = undefined; // linked by the store, which interns its service
  }

  get rcvId(): Uint8Array {
    return latin1Bytes(this.rcv);
  }

  get sndId(): Uint8Array {
    return latin1Bytes(this.snd);
  }

  get rcvAuthKey(): Uint8Array {
    return latin1Bytes(this.authKey);
  }

  get rcvDhSecret(): Uint8Array {
    return latin1Bytes(this.dhSecret);
  }

  get sndAuthKey(): Uint8Array | undefined {
    return bytes(this.sndKey);
  }
}
