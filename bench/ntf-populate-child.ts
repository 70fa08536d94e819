// Pre-populates stores for the notification server's 1,000,000-subscription
// restart benchmark, through the stores' own APIs, in a process of its own.
//   node --import tsx bench/ntf-populate-child.ts relay|journal|postgres <spec.json>
//
// relay:    the relay's journal store (openJournalQueueStore) gets one queue per
//           subscription, with notifier credentials whose serviceId is
//           SHA-256 of the notification server's service key: the state the
//           relay has after that server NSUB'd them, so its NSUBS covers them.
// journal:  the notification server's journal store (openJournalNtfStore),
// postgres: its PostgreSQL store (openPostgresNtfStore) in spec.pgSchema;
//           both get `tokens` ACTIVE apns tokens with `subsPerToken` ACTIVE
//           subscriptions each, at spec.relayAddress, naming the relay's notifier IDs.
// Notifier IDs come from a ChaCha20 key stream seeded by spec.seed, so the
// three invocations agree on them without passing a million IDs around.
// Auth keys are real X25519 pairs from a pool of spec.pool (cycled): the relay
// holds the public halves, the notification server the private ones.
import { createCipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { latin1 } from '../src/core/encoding.ts';
import { openJournalNtfStore } from '../src/ntf/store/journal.ts';
import { openPostgresNtfStore } from '../src/ntf/store/postgres.ts';
import type { NtfStore, SubRecord, TokenRecord } from '../src/ntf/store/store.ts';
import { openJournalQueueStore } from '../src/relay/store/journal.ts';

interface Spec {
  seed: string;
  tokens: number;
  subsPerToken: number;
  /** [publicHex, privateHex] X25519 pairs. */
  pool: [string, string][];
  serviceId: string;
  relayStoreDir: string;
  ntfStoreDir: string;
  relayAddress: string;
  pgUrl: string;
  pgSchema: string;
}

const [mode, specFile] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(specFile!, 'utf8')) as Spec;
const pool = spec.pool.map(([pub, priv]) => ({ pub: new Uint8Array(Buffer.from(pub, 'hex')), priv: new Uint8Array(Buffer.from(priv, 'hex')) }));
const total = spec.tokens * spec.subsPerToken;
const ID = 24;

/** The notifier IDs of subscriptions [from, from + n), deterministically from the seed. */
function notifierIds(from: number, n: number): Buffer {
  const iv = Buffer.alloc(16);
  // ChaCha20 in node takes a 16-byte IV: 4-byte little-endian block counter, then the nonce.
  const startByte = from * ID;
  const block = Math.floor(startByte / 64);
  iv.writeUInt32LE(block, 0);
  const c = createCipheriv('chacha20', Buffer.from(spec.seed, 'hex'), iv);
  const skip = startByte - block * 64;
  const out = c.update(Buffer.alloc(skip + n * ID));
  return out.subarray(skip);
}

const t0 = performance.now();
const CHUNK = 50_000;

if (mode === 'relay') {
  const serviceId = new Uint8Array(Buffer.from(spec.serviceId, 'hex'));
  const { store } = openJournalQueueStore({ dir: spec.relayStoreDir, compactMinBytes: 2 ** 40 });
  for (let from = 0; from < total; from += CHUNK) {
    const n = Math.min(CHUNK, total - from);
    const ids = notifierIds(from, n);
    const rnd = randomBytes(n * (ID + ID + 32 + 32));
    for (let i = 0; i < n; i++) {
      const r = rnd.subarray(i * 112, (i + 1) * 112);
      const k = pool[(from + i) % pool.length]!;
      const ok = store.createQueue({
        rcvId: new Uint8Array(r.subarray(0, 24)),
        sndId: new Uint8Array(r.subarray(24, 48)),
        rcvAuthKey: k.pub,
        rcvDhSecret: new Uint8Array(r.subarray(48, 80)),
        suspended: false,
        notifier: {
          notifierId: new Uint8Array(ids.subarray(i * ID, (i + 1) * ID)),
          ntfAuthKey: k.pub,
          rcvNtfDhSecret: new Uint8Array(r.subarray(80, 112)),
          serviceId,
        },
      });
      if (!ok) throw new Error('queue ID collision');
    }
    await store.flush();
  }
  await store.close();
} else if (mode === 'journal' || mode === 'postgres') {
  let store: NtfStore;
  if (mode === 'journal') store = openJournalNtfStore(spec.ntfStoreDir, { compactMinBytes: 2 ** 40 }).store;
  else store = (await openPostgresNtfStore({ url: spec.pgUrl, schema: spec.pgSchema })).store;
  const TOKENS_PER_FLUSH = 10_000;
  for (let t0k = 0; t0k < spec.tokens; t0k += TOKENS_PER_FLUSH) {
    const nt = Math.min(TOKENS_PER_FLUSH, spec.tokens - t0k);
    const ids = notifierIds(t0k * spec.subsPerToken, nt * spec.subsPerToken);
    for (let i = 0; i < nt; i++) {
      const t = t0k + i;
      const k = pool[t % pool.length]!;
      const r = randomBytes(ID + 32 + 32 + 32);
      const token: TokenRecord = {
        tokenId: latin1(r.subarray(0, ID)),
        device: { provider: 'apns', token: new Uint8Array(r.subarray(ID, ID + 32)) },
        tknAuthKey: k.pub,
        tknDhKey: k.pub,
        srvDhKey: k.pub,
        tknDhSecret: new Uint8Array(r.subarray(ID + 32, ID + 64)),
        status: { status: 'ACTIVE' },
        code: new Uint8Array(r.subarray(ID + 64, ID + 96)),
        cronMinutes: 0,
        cronNextAt: 0,
        statusAt: Date.now(),
        verified: true,
      };
      if (!store.createToken(token)) throw new Error('token ID collision');
      const subIds = randomBytes(ID * spec.subsPerToken);
      for (let j = 0; j < spec.subsPerToken; j++) {
        const s = i * spec.subsPerToken + j;
        const sub: SubRecord = {
          subId: latin1(subIds.subarray(j * ID, (j + 1) * ID)),
          tokenId: token.tokenId,
          relay: spec.relayAddress,
          notifierId: latin1(ids.subarray(s * ID, (s + 1) * ID)),
          ntfAuthKey: latin1(pool[(t * spec.subsPerToken + j) % pool.length]!.priv),
          status: 'ACTIVE',
        };
        if (!store.createSub(sub)) throw new Error('subscription collision');
      }
    }
    await store.flush();
  }
  await store.close();
} else {
  console.error('usage: ntf-populate-child.ts relay|journal|postgres <spec.json>');
  process.exit(64);
}
console.log(JSON.stringify({ mode, records: total, ms: Math.round(performance.now() - t0) }));
process.exit(0);
