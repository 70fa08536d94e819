// The notification server's store interface. As with the relay, reads and
// mutations are synchronous on an in-memory view, and `flush()` is the
// durability barrier awaited before any reply leaves. IDs and keys are held as
// latin1 strings (one char per byte): a million subscriptions fit in a few
// hundred MB, where Uint8Arrays would cost ~100 bytes of overhead each.
import type { DeviceToken, SubStatus, TokenStatus } from '../protocol.ts';

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
}

/** Stored statuses; INACTIVE is derived from the relay connection, never stored. */
export type StoredSubStatus = Exclude<SubStatus, 'INACTIVE'>;

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
  sub(subId: string): SubRecord | undefined;
  subOfNotifier(relay: string, notifierId: string): SubRecord | undefined;
  subsOfToken(tokenId: string): Iterable<SubRecord>;
  subsOfRelay(relay: string): Iterable<SubRecord>;
  relays(): Iterable<string>;
  /** Newest last notifications of a token, oldest first, at most `limit`. */
  lastNotifications(tokenId: string, limit: number): LastNotification[];

  /** False if the ID is taken. */
  createToken(t: TokenRecord): boolean;
  setTokenStatus(tokenId: string, status: TokenStatus): void;
  /** TRPL: a new device token and code; status REGISTERED. */
  replaceDevice(tokenId: string, device: DeviceToken, code: Uint8Array): void;
  /** A new code for a repeated TNEW; status REGISTERED. */
  renewCode(tokenId: string, code: Uint8Array): void;
  setCron(tokenId: string, minutes: number, nextAt: number): void;
  /** Deletes the token with its subscriptions and last notifications. */
  deleteToken(tokenId: string): void;

  /** False if the token is unknown, the ID is taken or (relay, notifierId) is subscribed already. */
  createSub(s: SubRecord): boolean;
  setSubStatus(subId: string, status: StoredSubStatus): void;
  deleteSub(subId: string): void;
  setLastNotification(tokenId: string, n: LastNotification): void;

  counts(): NtfStoreCounts;
  flush(): Promise<void>;
  close(): Promise<void>;
}
