// Browsers: a client whose state lives in an IndexedDB database of its own.
import { HushClient, type HushClientOptions } from './client.ts';
import { withPassphrase } from './store/encrypted.ts';
import { IndexedDbStore } from './store/indexeddb.ts';

/**
 * Opens a client on IndexedDB database `name` (created if missing), encrypted
 * with `passphrase` if given (EncryptedStore); closing the client closes the database.
 */
export async function openIndexedDbClient(
  name: string,
  { passphrase, ...opts }: Omit<HushClientOptions, 'store' | 'closeStore'> & { passphrase?: string },
): Promise<HushClient> {
  return HushClient.openOwning(await withPassphrase(await IndexedDbStore.open(name), passphrase, opts), opts);
}
