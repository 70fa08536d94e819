// Profiles (docs/sdk.md §7.1): several identities on one device, each with its
// own contacts and name. They share the device token, since a notification
// server keeps one token per device (a verified TNEW replaces the device's
// others), so one push handler serves them all.
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { ContactError } from './contacts.ts';
import { b64, type Context } from './context.ts';
import type { Contact, Profile, Settings } from './records.ts';

const makeProfile = (crypto: CryptoSuite, now: number, name: string): Profile => ({ id: b64(crypto.randomBytes(12)), name, createdAt: now });

export function newProfile(ctx: Context, name: string): Profile {
  const p = makeProfile(ctx.crypto, ctx.now(), name);
  ctx.profiles.set(p.id, p);
  return p;
}

/** The profile `id`, or the active one; a ContactError if there is no such profile. */
export function profileOf(ctx: Context, id = ctx.settings.activeProfile): Profile {
  const p = ctx.profiles.get(id);
  if (!p) throw new ContactError('no such profile');
  return p;
}

const oldestFirst = (profiles: Iterable<Profile>) => [...profiles].sort((a, b) => a.createdAt - b.createdAt);

/** Profiles oldest first. */
export const profileList = (ctx: Context) => oldestFirst(ctx.profiles.values());

/**
 * The stored profiles, and the active one checked. A store written before
 * profiles existed has none: its name (kept in the settings then) becomes the
 * one profile, which every contact joins. `migrated`: the contacts moved into
 * a profile made now (to be written back with it); undefined when the
 * profiles were there.
 */
export function loadProfiles(
  stored: Profile[],
  settings: Settings & { name?: string },
  contacts: Map<string, Contact>,
  crypto: CryptoSuite,
  now: number,
): { profiles: Map<string, Profile>; migrated: Contact[] | undefined } {
  const profiles = new Map(stored.map((p) => [p.id, p]));
  let migrated: Contact[] | undefined;
  if (profiles.size === 0) {
    const p = makeProfile(crypto, now, settings.name ?? '');
    profiles.set(p.id, p);
    migrated = [...contacts.values()].filter((c) => !c.profileId);
    for (const c of migrated) c.profileId = p.id;
  }
  delete settings.name;
  if (!profiles.has(settings.activeProfile)) settings.activeProfile = oldestFirst(profiles.values())[0]!.id;
  return { profiles, migrated };
}
