// Shared fixtures: relays on loopback (in-process or as a real process) and clients.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { formatAddress, parseAddress } from '../src/core/address.ts';
import { nobleCrypto } from '../src/core/crypto/noble.ts';
import { nodeCrypto } from '../src/core/crypto/node.ts';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { RelayClient, type RelayClientOptions, type RelayEvent } from '../src/relay/client.ts';
import { RelayServer, type RelayLimits } from '../src/relay/server.ts';
import { JournalQueueStore } from '../src/relay/store/journal.ts';
import { MemoryQueueStore } from '../src/relay/store/memory.ts';
import type { QueueStore } from '../src/relay/store/store.ts';
import { BlackholeProxy } from '../src/server/testkit/blackhole-proxy.ts';

export const crypto = nobleCrypto;
export const silent = pino({ level: 'silent' });

export function tmpDir(prefix = 'hush-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestRelay {
  server: RelayServer;
  address: string;
  store: QueueStore;
  stop(): Promise<void>;
}

export async function startRelay(
  opts: { store?: QueueStore; limits?: Partial<RelayLimits>; identity?: KeyPair; port?: number; now?: () => number; tls?: { cert: string; key: string }; log?: Logger } = {},
): Promise<TestRelay> {
  const store = opts.store ?? new MemoryQueueStore();
  const server = new RelayServer({
    identity: opts.identity ?? nodeCrypto.ed25519KeyPair(),
    crypto: nodeCrypto,
    store,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    log: opts.log ?? silent,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
  });
  await server.start();
  return { server, address: server.address, store, stop: () => server.stop() };
}

export const journalStore = (dir: string) => JournalQueueStore.open({ dir });

/** A connected client that records the events it receives. */
export interface TestClient extends RelayClient {
  events: RelayEvent[];
  nextEvent(type?: RelayEvent['type'], timeoutMs?: number): Promise<RelayEvent>;
}

export async function connect(address: string, opts: RelayClientOptions = {}): Promise<TestClient> {
  const events: RelayEvent[] = [];
  const waiters: Array<() => void> = [];
  const client = (await RelayClient.connect(address, {
    webSocket: nodeWebSocket(),
    timeoutMs: 5000,
    ...opts,
    onEvent: (e) => {
      events.push(e);
      opts.onEvent?.(e);
      for (const w of waiters.splice(0)) w();
    },
  })) as TestClient;
  client.events = events;
  client.nextEvent = async (type, timeoutMs = 3000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = events.findIndex((e) => type === undefined || e.type === type);
      if (i >= 0) return events.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type ?? 'event'} within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  };
  return client;
}

/** A recipient's keys and a queue made with them. */
export interface Queue {
  rcvAuth: KeyPair;
  rcvDh: KeyPair;
  rcvId: Uint8Array;
  sndId: Uint8Array;
  rcvDhSecret: Uint8Array;
  ntf?: { auth: KeyPair; dh: KeyPair; notifierId: Uint8Array; rcvNtfDhSecret: Uint8Array };
}

export async function newQueue(c: RelayClient, withNotifier = false): Promise<Queue> {
  const rcvAuth = crypto.x25519KeyPair();
  const rcvDh = crypto.x25519KeyPair();
  const ntfAuth = crypto.x25519KeyPair();
  const ntfDh = crypto.x25519KeyPair();
  const ids = await c.newQueue(
    rcvAuth,
    rcvDh.publicKey,
    withNotifier ? { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: ntfDh.publicKey } : undefined,
  );
  const q: Queue = {
    rcvAuth,
    rcvDh,
    rcvId: ids.rcvId,
    sndId: ids.sndId,
    rcvDhSecret: crypto.x25519(rcvDh.privateKey, ids.srvDhKey)!,
  };
  if (ids.ntf)
    q.ntf = {
      auth: ntfAuth,
      dh: ntfDh,
      notifierId: ids.ntf.notifierId,
      rcvNtfDhSecret: crypto.x25519(ntfDh.privateKey, ids.ntf.srvNtfDhKey)!,
    };
  return q;
}

export const bytes = (s: string) => new TextEncoder().encode(s);
export const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Keepalive settings that notice a dead link in a fraction of a second. */
export const FAST_KEEPALIVE = { keepalive: { intervalMs: 100, timeoutMs: 200 } };

/** A BlackholeProxy in front of the server at `address`, and the same address through it (closed by close()). */
export async function proxied(address: string): Promise<{ proxy: BlackholeProxy; address: string }> {
  const a = parseAddress(address);
  if (!a.ok) throw new Error(a.error);
  const proxy = new BlackholeProxy(a.value.port);
  await proxy.listen();
  return { proxy, address: formatAddress({ ...a.value, port: proxy.port }) };
}
