// /healthz and the store-failed metric after a store write fails: a relay and
// a notification server with journal stores whose writes are made to fail
// (the journal's io seam), and a notification server on PostgreSQL whose
// writes are refused by the database until it is fixed. Each runs with its
// ops endpoint (startWithOps), as `hush relay|ntf start` runs it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { NtfClient } from '../../src/ntf/client.ts';
import { NtfServer } from '../../src/ntf/server.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { openPostgresNtfStore } from '../../src/ntf/store/postgres.ts';
import type { NtfStore } from '../../src/ntf/store/store.ts';
import { RelayServer } from '../../src/relay/server.ts';
import { openJournalQueueStore } from '../../src/relay/store/journal.ts';
import type { JournalIo } from '../../src/server/journal.ts';
import { startWithOps, type Running } from '../../src/server/start.ts';
import { CaptureProvider } from '../../src/push/stand-ins/capture-provider.ts';
import { connect, newQueue, silent, tmpDir } from '../helpers.ts';

const OPS = { host: '127.0.0.1', port: 0 };

/** Journal writes that succeed until `broken` is set, then fail as a full disk does. */
function breakableDisk() {
  const disk = { broken: false, io: {} as JournalIo };
  disk.io.write = (fd, data, offset) => {
    if (disk.broken) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return fs.writeSync(fd, data, offset);
  };
  return disk;
}

async function healthz(port: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is exported`);
  return Number(line.slice(name.length + 1));
}

function ntfServer(store: NtfStore): NtfServer {
  return new NtfServer({
    identity: nodeCrypto.ed25519KeyPair(),
    serviceKey: nodeCrypto.x25519KeyPair(),
    crypto: nodeCrypto,
    store,
    providers: [new CaptureProvider(['test'])],
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
}

/** Registers a device token (TNEW): a command the store must persist. Resolves whether or not it was refused. */
async function registerToken(ntf: Running<NtfServer>, t: TestContext): Promise<boolean> {
  const client = await NtfClient.connect(ntf.server.address, { webSocket: nodeWebSocket(), timeoutMs: 10_000 });
  t.after(() => client.close());
  const device = { provider: 'test' as const, token: randomBytes(16) };
  return client.registerToken(device, nodeCrypto.x25519KeyPair(), nodeCrypto.x25519KeyPair().publicKey).then(
    () => true,
    () => false,
  );
}

describe('/healthz after a store failure', () => {
  it('relay: a failed journal write makes /healthz 503 with the reason and hush_relay_store_failed 1', async (t) => {
    const disk = breakableDisk();
    const { store } = openJournalQueueStore({ dir: tmpDir(), io: disk.io });
    const server = new RelayServer({ identity: nodeCrypto.ed25519KeyPair(), crypto: nodeCrypto, store, host: '127.0.0.1', port: 0, log: silent });
    const relay = await startWithOps(server, OPS, () => ({ connections: server.connections }));
    t.after(() => relay.stop());
    assert.deepEqual(await healthz(relay.metricsPort), { status: 200, body: { ok: true, connections: 0 } });
    assert.equal(await metric(relay.metricsPort, 'hush_relay_store_failed'), 0);

    const client = await connect(server.address);
    t.after(() => client.close());
    disk.broken = true;
    await assert.rejects(newQueue(client)); // NEW: its record cannot be written, so it is not confirmed

    const h = await healthz(relay.metricsPort);
    assert.equal(h.status, 503);
    assert.equal(h.body.ok, false);
    assert.match(String(h.body.reason), /store failed: journal write failed: ENOSPC/);
    assert.equal(typeof h.body.connections, 'number'); // the details stay
    assert.equal(await metric(relay.metricsPort, 'hush_relay_store_failed'), 1);
  });

  it('notification server: a failed journal write makes /healthz 503 with the reason and hush_ntf_store_failed 1', async (t) => {
    const disk = breakableDisk();
    const server = ntfServer(openJournalNtfStore(tmpDir(), { io: disk.io }).store);
    const ntf = await startWithOps(server, OPS, () => ({ connections: server.connections }));
    t.after(() => ntf.stop().catch(() => {})); // its last flush fails too: the disk is still full
    assert.equal((await healthz(ntf.metricsPort)).status, 200);
    assert.equal(await metric(ntf.metricsPort, 'hush_ntf_store_failed'), 0);

    disk.broken = true;
    assert.equal(await registerToken(ntf, t), false); // TNEW: its record cannot be written, so it is not confirmed

    const h = await healthz(ntf.metricsPort);
    assert.equal(h.status, 503);
    assert.equal(h.body.ok, false);
    assert.match(String(h.body.reason), /store failed: journal write failed: ENOSPC/);
    assert.equal(typeof h.body.connections, 'number');
    assert.equal(await metric(ntf.metricsPort, 'hush_ntf_store_failed'), 1);
  });
});

// ---- PostgreSQL (as test/ntf/store.test.ts: skipped with the reason when unreachable, except under CI) ----

const PG_URL = process.env.HUSH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const admin = new pg.Pool({ connectionString: PG_URL, max: 1, connectionTimeoutMillis: 5000 });
admin.on('error', () => {});
const pgDown = await admin.query('SELECT 1').then(
  () => undefined,
  (e: Error) => `PostgreSQL unreachable at ${PG_URL}: ${e.message || String(e)}`,
);
const pgSkip = pgDown && process.env.CI !== 'true' ? `${pgDown} (set HUSH_TEST_DATABASE_URL; under CI=true this fails)` : false;
const schema = `hush_test_ops_${randomBytes(4).toString('hex')}`;
after(async () => {
  if (!pgDown) await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`).catch(() => {});
  await admin.end();
});

describe('/healthz after a PostgreSQL store failure', () => {
  it('notification server: 503 while a refused write keeps memory ahead of the database; ok again once a later write commits it', { skip: pgSkip }, async (t) => {
    assert.equal(pgDown, undefined);
    const { store } = await openPostgresNtfStore({ url: PG_URL, schema });
    const server = ntfServer(store);
    const ntf = await startWithOps(server, OPS, () => ({}));
    t.after(() => ntf.stop());
    const tokens = `${pg.escapeIdentifier(schema)}.tokens`;
    // the database refuses every new token row, as a full or read-only database would
    await admin.query(`ALTER TABLE ${tokens} ADD CONSTRAINT refuse CHECK (false) NOT VALID`);
    assert.equal(await registerToken(ntf, t), false);
    const h = await healthz(ntf.metricsPort);
    assert.equal(h.status, 503);
    assert.match(String(h.body.reason), /store failed: PostgreSQL write failed: .*refuse/);
    assert.equal(await metric(ntf.metricsPort, 'hush_ntf_store_failed'), 1);

    await admin.query(`ALTER TABLE ${tokens} DROP CONSTRAINT refuse`);
    assert.equal(await registerToken(ntf, t), true); // its flush writes the refused token too
    assert.equal((await admin.query(`SELECT count(*)::int AS n FROM ${tokens}`)).rows[0].n, 2);
    assert.deepEqual(await healthz(ntf.metricsPort), { status: 200, body: { ok: true } });
    assert.equal(await metric(ntf.metricsPort, 'hush_ntf_store_failed'), 0);
  });
});
