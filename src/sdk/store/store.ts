// Where the SDK keeps its state: contacts with their queue and message keys,
// the device token, settings. A small string key-value interface, so that any
// platform can provide one (memory, a file in Node, IndexedDB in browsers,
// AsyncStorage or SQLite in React Native). Values are JSON written by the SDK.
//
// The SDK writes a record before it acknowledges what the record depends on
// (an ACK to the relay after the message's ratchet step is stored), so a store
// must make a write() durable before its promise resolves, and apply all of
// one write()'s entries or none.
//
// Clients in several processes may share a store (an app and its push
// extension) if it has a lock (./lock.ts) that excludes all but one holder.
// A store that keeps values in memory re-reads them when its lock is taken.
import type { StoreLock } from './lock.ts';

export interface ClientStore {
  /** The value under `key`, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Sets (a string) or deletes (undefined) each key, all at once or not at all. */
  write(entries: ReadonlyArray<readonly [key: string, value: string | undefined]>): Promise<void>;
  /** Every key that starts with `prefix`, in ascending order. */
  keys(prefix: string): Promise<string[]>;
  /** Releases files or database handles; the store is not used after this. */
  close(): Promise<void>;
  /** Its one-writer lock, if it has one (HushClientOptions.lock may give one instead). */
  readonly lock?: StoreLock;
}
