// The client's state as stored (docs/sdk.md §7): read whole when the client
// takes its store (open, reload); from then on the in-memory records are the truth.
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { MIN_CRON_MINUTES } from '../ntf/protocol.ts';
import type { Context } from './context.ts';
import { loadProfiles } from './profiles.ts';
import { deserialize, KEYS, type AddressRecord, type Contact, type OutgoingMessage, type Profile, type RequestRecord, type Settings } from './records.ts';
import type { ClientStore } from './store/store.ts';

export const DEFAULT_SETTINGS: Settings = { activeProfile: '', mode: 'instant', preview: 'message', periodicMinutes: MIN_CRON_MINUTES };

/** The client's records as stored (a new store: default settings, no token, no contacts). */
export async function loadState(
  store: ClientStore,
  crypto: CryptoSuite,
  now: number,
): Promise<Pick<Context, 'settings' | 'profiles' | 'token' | 'contacts' | 'outbox' | 'address' | 'requests'> & { migrated: Contact[] | undefined }> {
  const settingsText = await store.get(KEYS.settings);
  const tokenText = await store.get(KEYS.token);
  const addressText = await store.get(KEYS.address);
  const requests = new Map<string, RequestRecord>();
  for (const r of await records<RequestRecord>(store, KEYS.request)) requests.set(r.id, r);
  const settings: Settings = settingsText ? deserialize(settingsText) : { ...DEFAULT_SETTINGS };
  const contacts = new Map<string, Contact>();
  for (const c of await records<Contact>(store, KEYS.contact)) contacts.set(c.id, c);
  const outbox = new Map<string, OutgoingMessage[]>();
  // Keys sort by contact, then in send order.
  for (const m of await records<OutgoingMessage>(store, KEYS.outbox)) {
    const list = outbox.get(m.contactId);
    if (list) list.push(m);
    else outbox.set(m.contactId, [m]);
  }
  const { profiles, migrated } = loadProfiles(await records<Profile>(store, KEYS.profile), settings, contacts, crypto, now);
  return {
    settings,
    profiles,
    token: tokenText ? deserialize(tokenText) : undefined,
    contacts,
    outbox,
    address: addressText ? deserialize<AddressRecord>(addressText) : undefined,
    requests,
    migrated,
  };
}

/** Every record under a key prefix, in key order. */
async function records<T>(store: ClientStore, prefix: string): Promise<T[]> {
  const out: T[] = [];
  for (const key of await store.keys(prefix)) {
    const text = await store.get(key);
    if (text) out.push(deserialize<T>(text));
  }
  return out;
}
