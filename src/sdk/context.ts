// The state the SDK's parts share: loaded from the store at open, changed in
// memory and written back record by record. In-memory records are the truth
// while the client runs; `save` writes their current state.
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { toBase64Url } from '../core/encoding.ts';
import type { NtfClient } from '../ntf/client.ts';
import type { RelayClient } from '../relay/client.ts';
import type { ConnectionPool } from './connections.ts';
import type { KeyedLock, WriteGate } from './lock.ts';
import {
  ADDRESS_ID,
  KEYS,
  outboxKey,
  serialize,
  type AddressRecord,
  type Contact,
  type OutgoingMessage,
  type Profile,
  type Receiver,
  type RequestRecord,
  type Settings,
  type TokenRecord,
} from './records.ts';
import type { ClientStore } from './store/store.ts';
import type { Words } from './words.ts';

export interface Context {
  crypto: CryptoSuite;
  store: ClientStore;
  relays: ConnectionPool<RelayClient>;
  ntf: ConnectionPool<NtfClient>;
  /** Relays this client makes its receive queues on. */
  relayAddresses: string[];
  /** The notification server its device token goes to. */
  ntfServer: string | undefined;
  settings: Settings;
  profiles: Map<string, Profile>;
  token: TokenRecord | undefined;
  contacts: Map<string, Contact>;
  /** Each contact's messages not yet taken by its relay, oldest first. */
  outbox: Map<string, OutgoingMessage[]>;
  /** My contact address, if I made one, and the requests to it waiting for an answer. */
  address: AddressRecord | undefined;
  requests: Map<string, RequestRecord>;
  /** Most requests kept waiting; more are refused. */
  maxRequests: number;
  locks: KeyedLock;
  /** The user-visible strings (words.ts). */
  words: Words;
  /** The chat on screen: its events make no notification. */
  openChat: string | undefined;
  /** Every store write goes through it: none while the client does not hold the store. */
  writes: WriteGate;
  now: () => number;
  /** Reports a failure of background work (the app may log it; it carries no keys or IDs). */
  fail: (what: string, e: unknown) => void;
}

export const b64 = toBase64Url;

/** Every record with a receive queue of mine: the contacts, then the address. */
export const receivers = (ctx: Context): Receiver[] => [...ctx.contacts.values(), ...(ctx.address ? [ctx.address] : [])];

/** Whether the record is still this client's (not deleted meanwhile). */
export const isCurrent = (ctx: Context, r: Receiver) => ctx.contacts.get(r.id) === r || ctx.address === r;

/**
 * Writes the given records' current state, all in one store write. A record
 * deleted meanwhile is not written back by work that still held it.
 */
export function save(
  ctx: Context,
  what: {
    contacts?: Iterable<Receiver>;
    settings?: boolean;
    token?: boolean;
    deleted?: string[];
    outbox?: OutgoingMessage[];
    outboxDone?: OutgoingMessage[];
    profiles?: Iterable<Profile>;
    deletedProfiles?: string[];
    requests?: Iterable<RequestRecord>;
    deletedRequests?: string[];
  },
) {
  const entries: Array<[string, string | undefined]> = [];
  for (const p of what.profiles ?? []) if (ctx.profiles.get(p.id) === p) entries.push([KEYS.profile + p.id, serialize(p)]);
  for (const id of what.deletedProfiles ?? []) entries.push([KEYS.profile + id, undefined]);
  for (const c of what.contacts ?? []) if (isCurrent(ctx, c)) entries.push([c === ctx.address ? KEYS.address : KEYS.contact + c.id, serialize(c)]);
  for (const id of what.deleted ?? []) entries.push([id === ADDRESS_ID ? KEYS.address : KEYS.contact + id, undefined]);
  for (const m of what.outbox ?? []) if (ctx.contacts.has(m.contactId)) entries.push([outboxKey(m), serialize(m)]);
  for (const m of what.outboxDone ?? []) entries.push([outboxKey(m), undefined]);
  for (const r of what.requests ?? []) if (ctx.requests.get(r.id) === r) entries.push([KEYS.request + r.id, serialize(r)]);
  for (const id of what.deletedRequests ?? []) entries.push([KEYS.request + id, undefined]);
  if (what.settings) entries.push([KEYS.settings, serialize(ctx.settings)]);
  if (what.token) entries.push([KEYS.token, ctx.token ? serialize(ctx.token) : undefined]);
  return ctx.writes.run(() => ctx.store.write(entries));
}
