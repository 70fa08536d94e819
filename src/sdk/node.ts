// The SDK for Node: the `ws` WebSocket and a file store filled in.
import { nodeWebSocket } from '../node/websocket.ts';
import { HushClient, type HushClientOptions } from './client.ts';
import { FileStore } from './store/file.ts';

export * from './index.ts';
export { FileStore };

/** Opens a client whose state lives in `file` (created if missing); closing the client closes the file. */
export async function openNodeClient(file: string, opts: Omit<HushClientOptions, 'store' | 'closeStore'>): Promise<HushClient> {
  return HushClient.openOwning(await FileStore.open(file), { webSocket: nodeWebSocket(), ...opts });
}
