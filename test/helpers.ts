// Shared fixtures: relays on loopback (in-process or as a real process) and clients.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { formatAddress, parseAddress } from '../src/core/address.ts';
import { nobleCrypto } from '../src/core/crypto/noble.ts';
import { nodeCrypto } from '../src/node/crypto.ts';
import type { CryptoSuite, KeyPair } from '../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { RelayClient, type RelayClientOptions, type RelayEvent } from '../src/relay/client.ts';
import { RelayServer, type RelayLimits } from '../src/relay/server.ts';
import type { CreationPolicy } from '../src/server/creation.ts';
import { openJournalQueueStore } from '../src/relay/store/journal.ts';
import { MemoryQueueStore } from '../src/relay/store/memory.ts';
import type { QueueStore } from '../src/relay/store/store.ts';
import { BlackholeProxy } from '../src/server/testkit/blackhole-proxy.ts';
import { sharedKey } from '../src/core/keys.ts';

export const crypto = nobleCrypto;
export const silent = pino({ level: 'silent' });

/** A trace-level logger whose output the test reads: the text, or the lines of one event. */
export function capturedLog(level = 'trace') {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const text = () => chunks.join('');
  return {
    log: pino({ level }, sink),
    text,
    events: (event: string): Array<Record<string, unknown>> =>
      text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.event === event),
  };
}

/** Resolves once `cond` holds, re-checked each time `source` emits `event`; fails after `ms`. */
export function untilEvent(source: Pick<EventEmitter, 'on' | 'off'>, event: string, cond: () => boolean, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (cond()) return resolve();
    const check = () => cond() && done(resolve);
    const timer = setTimeout(() => done(() => reject(new Error(`condition not met in ${ms} ms (woken by ${event})`))), ms);
    const done = (settle: () => void) => {
      clearTimeout(timer);
      source.off(event, check);
      settle();
    };
    source.on(event, check);
  });
}

/**
 * A trace-level logger that emits each log event by its name, for untilEvent():
 * a server's `connection_closed`, an Http2Pool's `apns_closed`, …
 */
export function eventLog(): { log: Logger; events: EventEmitter } {
  const events = new EventEmitter();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) {
        const e = line ? (JSON.parse(line) as { event?: unknown }) : {};
        if (typeof e.event === 'string') events.emit(e.event, e);
      }
      cb();
    },
  });
  return { log: pino({ level: 'trace' }, sink), events };
}

export function tmpDir(prefix = 'hush-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Creation limits out of the way, for tests that make hundreds of queues from loopback. */
export const MANY_QUEUES: Partial<CreationPolicy> = {
  perConnection: { burst: 1_000_000, perMinute: 1_000_000 },
  perAddress: { burst: 1_000_000, perMinute: 1_000_000 },
};

export interface TestRelay {
  server: RelayServer;
  address: string;
  store: QueueStore;
  stop(): Promise<void>;
}

export async function startRelay(
  opts: { store?: QueueStore; limits?: Partial<RelayLimits>; identity?: KeyPair; port?: number; now?: () => number; tls?: { cert: string; key: string }; proxyProtocol?: boolean; log?: Logger; crypto?: CryptoSuite; creation?: Partial<CreationPolicy> } = {},
): Promise<TestRelay> {
  const store = opts.store ?? new MemoryQueueStore();
  const server = new RelayServer({
    identity: opts.identity ?? nodeCrypto.ed25519KeyPair(),
    crypto: opts.crypto ?? nodeCrypto,
    store,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    log: opts.log ?? silent,
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.creation ? { creation: opts.creation } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
    ...(opts.proxyProtocol ? { proxyProtocol: true } : {}),
  });
  await server.start();
  return { server, address: server.address, store, stop: () => server.stop() };
}

export const journalStore = (dir: string) => openJournalQueueStore({ dir }).store;

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

/** Fresh keys from the client's crypto suite, NEW, and the secrets derived from the relay's keys. */
export async function newQueue(c: RelayClient, withNotifier = false): Promise<Queue> {
  const { crypto } = c;
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
    rcvDhSecret: sharedKey(crypto, rcvDh.privateKey, ids.srvDhKey, 'relay recipient')!,
  };
  if (ids.ntf)
    q.ntf = {
      auth: ntfAuth,
      dh: ntfDh,
      notifierId: ids.ntf.notifierId,
      rcvNtfDhSecret: sharedKey(crypto, ntfDh.privateKey, ids.ntf.srvNtfDhKey, 'relay notifier')!,
    };
  return q;
}

export const bytes = (s: string) => new TextEncoder().encode(s);

/**
 * X25519 public keys of small order, which servers and clients refuse (ERR KEY):
 * all-zero, a point of order 8, and p + 1 (= 1) with the ignored top bit set.
 */
export const SMALL_ORDER_KEYS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
].map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
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
