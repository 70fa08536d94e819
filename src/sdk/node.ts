// The SDK for Node: node:crypto, the `ws` WebSocket and a file store filled in.
import { nodeCrypto } from '../node/crypto.ts';
import { nodeWebSocket } from '../node/websocket.ts';
import { HushClient, type HushClientOptions } from './client.ts';
import { withPassphrase } from './store/encrypted.ts';
import { FileStore } from './store/file.ts';

export * from './index.ts';
export { FileStore };

/** What openNodeClient fills in: OpenSSL's ChaCha20-Poly1305, X25519 and SHA-256 run many times faster than the portable @noble code. */
export const nodeSeams = () => ({ crypto: nodeCrypto, webSocket: nodeWebSocket() });

/**
 * Opens a client whose state lives in `file` (created if missing), encrypted
 * with `passphrase` if given (EncryptedStore); closing the client closes the file.
 */
export async function openNodeClient(
  file: string,
  { passphrase, ...opts }: Omit<HushClientOptions, 'store' | 'closeStore'> & { passphrase?: string },
): Promise<HushClient> {
  const store = await withPassphrase(await FileStore.open(file), passphrase, opts);
  return HushClient.openOwning(store, { ...nodeSeams(), ...opts });
}
