// The notification server's store interface. As with the relay, reads and
// mutations are synchronous on an in-memory view, and `flush()` is the
// durability barrier awaited before any reply leaves. IDs and keys are held as
// latin1 strings (one char per byte): a million subscriptions fit in a few
// hundred MB, where Uint8Arrays would cost ~100 bytes of overhead each.
import { isSubStatus, type SubStatus, type TokenStatus } from '../protocol.ts';
import type { DeviceToken } from '../../push/device.ts';

export interface TokenRecord {
  tokenId: string;
  device: DeviceToken;
  tknAuthKey: Uint8Array;
  /** The device's DH key, to recognize a repeated TNEW. */
  tknDhKey: Uint8Array;
  srvDhKey: Uint8Array;
  /** X25519(server key, tknDhKey): seals every push to this device. */
  tknDhSecret: Uint8Array;
  status: TokenStatus;
  code: Uint8Array;
  /** Periodic check pushes every this many minutes; 0 = off. */
  cronMinutes: number;
  /** When the next one is due (ms); 0 when off. */
  cronNextAt: number;
  /**
   * When the status last changed (ms): set by TNEW and by every status change,
   * new device token (TRPL) or new code. Expiry counts from it. 0: unknown
   * (stored before this field; the first expiry sweep stamps it).
   */
  statusAt: number;
  /** The token has been ACTIVE (verified) at some time: a longer grace once it is not. */
  verified: boolean;
}

/** Stored statuses; INACTIVE is derived from the relay connection, never stored. */
export type StoredSubStatus = Exclude<SubStatus, 'INACTIVE'>;
export const isStoredSubStatus = (s: string): s is StoredSubStatus => s !== 'INACTIVE' && isSubStatus(s);

export interface SubRecord {
  subId: string;
  tokenId: string;
  /** The relay's address as given in SNEW. */
  relay: string;
  notifierId: string;
  /** The notifier's X25519 private key: the server authorizes NSUB with it. */
  ntfAuthKey: string;
  status: StoredSubStatus;
}

/** The latest NMSG of one subscription, kept for the token's next push. */
export interface LastNotification {
  subId: string;
  nonce: Uint8Array;
  sealedMeta: Uint8Array;
  /** When it arrived (ms): pushes carry the newest ones. */
  ts: number;
}

/** A kept notification, and whether a push is still owed for it. */
export interface StoredNotification extends LastNotification {
  /**
   * No push is owed: one a provider accepted carried it, or the token was not
   * ACTIVE when it arrived or has left ACTIVE since. False: pending.
   */
  pushed: boolean;
}

/** A notification (by its subscription and nonce) that a push carried. */
export interface SentNotification {
  subId: string;
  nonce: Uint8Array;
}

export interface NtfStoreCounts {
  tokens: Record<TokenStatus['status'], number>;
  subscriptions: Record<StoredSubStatus, number>;
}

export interface NtfStore {
  token(tokenId: string): TokenRecord | undefined;
  /** The token registered for this device with this auth key (a repeated TNEW). */
  tokenOfDevice(device: DeviceToken, tknAuthKey: Uint8Array): TokenRecord | undefined;
  /** Tokens with periodic pushes on. */
  cronTokens(): Iterable<TokenRecord>;
  /** Tokens that are not ACTIVE: what expiry looks at. */
  inactiveTokens(): Iterable<TokenRecord>;
  sub(subId: string): SubRecord | undefined;
  subOfNotifier(relay: string, notifierId: string): SubRecord | undefined;
  subsOfToken(tokenId: string): Iterable<SubRecord>;
  /** How many subscriptions the token has. O(1). */
  subscriptionCount(tokenId: string): number;
  subsOfRelay(relay: string): Iterable<SubRecord>;
  relays(): Iterable<string>;
  /** Tokens of this device (provider and token bytes), whatever their auth keys. */
  tokensOfDevice(device: DeviceToken): Iterable<TokenRecord>;
  /** Newest last notifications of a token, oldest first, at most `limit`. */
  lastNotifications(tokenId: string, limit: number): StoredNotification[];
  lastNotification(tokenId: string, subId: string): StoredNotification | undefined;
  /** Pending notifications (not `pushed`): how many, and when the oldest arrived. O(1). */
  pendingPushes(): { count: number; oldestTs: number | undefined };
  /** Tokens with a pending notification that arrived before `before` (ms). */
  pendingTokens(before: number): Set<string>;

  /** False if the ID is taken. */
  createToken(t: TokenRecord): boolean;
  /**
   * The status, and `at` as its statusAt. Any status but ACTIVE (here, and by
   * replaceDevice and renewCode) ends the token's pending notifications; ACTIVE
   * marks it verified.
   */
  setTokenStatus(tokenId: string, status: TokenStatus, at: number): void;
  /** TRPL: a new device token and code; status REGISTERED since `at`. */
  replaceDevice(tokenId: string, device: DeviceToken, code: Uint8Array, at: number): void;
  /** A new code for a repeated TNEW; status REGISTERED since `at`. */
  renewCode(tokenId: string, code: Uint8Array, at: number): void;
  setCron(tokenId: string, minutes: number, nextAt: number): void;
  /** Deletes the token with its subscriptions and last notifications. */
  deleteToken(tokenId: string): void;

  /** False if the token is unknown, the ID is taken or (relay, notifierId) is subscribed already. */
  createSub(s: SubRecord): boolean;
  setSubStatus(subId: string, status: StoredSubStatus): void;
  deleteSub(subId: string): void;
  /** Keeps `n` as the subscription's latest notification: pending if the token is ACTIVE. */
  setLastNotification(tokenId: string, n: LastNotification): void;
  /** A provider accepted a push carrying these: the ones still kept with the same nonce are no longer pending. */
  markPushed(tokenId: string, sent: SentNotification[]): void;

  counts(): NtfStoreCounts;
  /** Why the store can no longer persist changes (a failed write), if it cannot; the process must restart. */
  failure(): string | undefined;
  flush(): Promise<void>;
  close(): Promise<void>;
}
