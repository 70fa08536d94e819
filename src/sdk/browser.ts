// Browsers: a client whose state lives in an IndexedDB database of its own.
import { HushClient, type HushClientOptions } from './client.ts';
import { IndexedDbStore } from './store/indexeddb.ts';

/** Opens a client on IndexedDB database `name` (created if missing); closing the client closes the database. */
export async function openIndexedDbClient(name: string, opts: Omit<HushClientOptions, 'store' | 'closeStore'>): Promise<HushClient> {
  return HushClient.openOwning(await IndexedDbStore.open(name), opts);
}
