// The SDK's state as stored (src/sdk/store/store.ts): one JSON record per key.
// Bytes are written as {"$b": base64url} so records stay plain JSON for any store.
import { fromBase64Url, toBase64Url } from '../core/encoding.ts';
import type { KeyPair } from '../core/crypto/suite.ts';
import type { SubStatus, TokenStatus } from '../ntf/protocol.ts';
import type { DeviceToken } from '../push/device.ts';
import type { CallMedia } from './content.ts';
import type { Ratchet, Role } from './e2e.ts';

export type NotificationMode = 'instant' | 'periodic' | 'off';
export type PreviewMode = 'message' | 'contact' | 'hidden';

export interface Settings {
  /** The profile new contacts go to unless another is named. */
  activeProfile: string;
  mode: NotificationMode;
  preview: PreviewMode;
  /** Interval of check pushes in periodic mode (at least 20). */
  periodicMinutes: number;
  /** The device's push token, as the app last gave it. */
  device?: DeviceToken;
  /** false: contacts made from now on start muted (absent: true). */
  newContactNotifications?: boolean;
}

/** The device token as registered at the notification server. */
export interface TokenRecord {
  server: string;
  device: DeviceToken;
  tknAuth: KeyPair;
  tknDh: KeyPair;
  tokenId?: Uint8Array;
  /** X25519(tknDh, the server's key): what pushes are opened with. */
  secret?: Uint8Array;
  status: TokenStatus;
  /** TCRN minutes the server was last given. */
  cron?: number;
}

/** One of the user's identities on this device: its own contacts and name, one device token for all. */
export interface Profile {
  id: string;
  /** The display name sent to contacts made in this profile. */
  name: string;
  createdAt: number;
}

export type ContactState = 'invited' | 'accepted' | 'requested' | 'ready';

/** What has a receive queue of mine: a contact, or my contact address. */
export interface Receiver {
  id: string;
  /** The profile it belongs to (an address: the profile contacts made through it join). */
  profileId: string;
  /** My receive queue. */
  rcv: { relay: string; rcvId: Uint8Array; sndId: Uint8Array; rcvAuth: KeyPair; rcvDhSecret: Uint8Array };
  ntf: {
    /** The user's choice: notifications for this contact (false = muted); always true for the address. */
    enabled: boolean;
    notifier?: { notifierId: Uint8Array; ntfAuth: KeyPair; rcvNtfDhSecret: Uint8Array };
    subId?: Uint8Array;
    subStatus?: SubStatus;
  };
  /** Message IDs lately received, base64url, newest last: a redelivery is recognized. */
  seen: string[];
}

/** My contact address: a queue anyone may send a contact request to (docs/sdk.md §2, §4.6). */
export interface AddressRecord extends Receiver {
  id: typeof ADDRESS_ID;
  createdAt: number;
  /** The address key: requests are encrypted to its public half. */
  key: KeyPair;
  /** Requesters' e2e keys (base64url) lately handled, newest last: a request sent again is recognized. */
  requesters: string[];
}

/** A contact request waiting for the user's answer. */
export interface RequestRecord {
  /** base64url of 12 random bytes; the contact keeps it if the request is accepted. */
  id: string;
  /** The address's profile when it came: the contact joins it. */
  profileId: string;
  name: string;
  receivedAt: number;
  /** The requester's e2e key. */
  key: Uint8Array;
  /** The requester's queue, where the answer goes. */
  reply: { relay: string; sndId: Uint8Array; sndAuthKey: Uint8Array };
  /** The request's chains (§3.1, `e2e request`) after the request: the answer is sealed with them. */
  ratchet: Ratchet;
}

export const ADDRESS_ID = 'address';

export interface Contact extends Receiver {
  /** The contact's display name ('' until they tell it). */
  name: string;
  /**
   * The name I give this contact (in the hello or the ready), fixed when the
   * contact is made: a ready sent again must be the same plaintext under the same key.
   */
  myName: string;
  state: ContactState;
  createdAt: number;
  /** The contact's queue that I send to. */
  snd?: { relay: string; sndId: Uint8Array; sndAuthKey: Uint8Array };
  e2e: { role: Role; key: KeyPair; ratchet?: Ratchet };
  /** Messages not yet read (the badge counts them). */
  unread: number;
  /** When a notification was last shown for this chat (rate limit). */
  lastNotifiedAt: number;
  /** Events the rate limit held back since; the chat's next notification counts them. */
  held?: number;
  /** Calls received and still ringing (absent: none), for the answer and decline actions. */
  calls?: Array<{ id: string; media: CallMedia; expiresAt: number }>;
}

/** A sealed message waiting for its relay to take it (docs/sdk.md §4.6). */
export interface OutgoingMessage {
  id: string;
  contactId: string;
  kind: 'hello' | 'request' | 'answer' | 'text' | 'call' | 'call-reply';
  /** Its place in the contact's outbox: the order it goes in. */
  seq: number;
  /** A first message's queue, sent to unsigned (a hello, a request); absent: the contact's send queue, signed. */
  to?: { relay: string; sndId: Uint8Array };
  envelope: Uint8Array;
  notify: boolean;
  createdAt: number;
  /** Tries that could not hand it to the relay. */
  attempts: number;
}

export const KEYS = {
  settings: 'settings',
  token: 'token',
  profile: 'profile:',
  contact: 'contact:',
  outbox: 'outbox:',
  address: 'address',
  request: 'request:',
} as const;

/** A message's key: by contact, then in send order. */
export const outboxKey = (m: OutgoingMessage) => `${KEYS.outbox}${m.contactId}:${String(m.seq).padStart(10, '0')}`;

/**
 * The record as JSON, bytes as {"$b": base64url}. Walked before stringify,
 * not through a replacer (one call per value, the slow path of
 * JSON.stringify: half the cost of saving a contact); parts without bytes are
 * not copied. Bytes are caught before toJSON: a Node Buffer (a Uint8Array an
 * app may pass as a device token) would turn itself into {type, data}.
 */
export const serialize = (v: unknown) => JSON.stringify(withBytesEncoded(v));

function withBytesEncoded(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $b: toBase64Url(v) };
  if (typeof v !== 'object' || v === null || typeof (v as { toJSON?: unknown }).toJSON === 'function') return v;
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const x = withBytesEncoded(v[i]);
      if (copy) copy.push(x);
      else if (x !== v[i]) (copy = v.slice(0, i)).push(x);
    }
    return copy ?? v;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  let copy: Record<string, unknown> | undefined;
  for (let i = 0; i < keys.length; i++) {
    const x = withBytesEncoded(o[keys[i]!]);
    if (!copy && x !== o[keys[i]!]) {
      copy = Object.create(null) as Record<string, unknown>; // a key "__proto__" stays a key
      for (let j = 0; j < i; j++) copy[keys[j]!] = o[keys[j]!];
    }
    if (copy) copy[keys[i]!] = x;
  }
  return copy ?? v;
}

export const deserialize = <T>(s: string): T =>
  JSON.parse(s, (_k, x) => {
    if (x && typeof x === 'object' && typeof x.$b === 'string' && Object.keys(x).length === 1) {
      const b = fromBase64Url(x.$b);
      if (!b) throw new Error('bad bytes in a stored record');
      return b;
    }
    return x;
  }) as T;
