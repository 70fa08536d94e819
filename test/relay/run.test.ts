// The `hush relay init|start` commands as a user runs them: files and address
// of init, config errors, health and metrics endpoints, TLS, SIGTERM, and logs
// that carry no queue IDs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { openMessage } from '../../src/relay/client.ts';
import { openJournalQueueStore } from '../../src/relay/store/journal.ts';
import { bytes, connect as connectWith, crypto, newQueue, text, tmpDir, type Queue, type TestClient } from '../helpers.ts';
import { HushProcess } from '../process.ts';



/** Clients with a generous timeout: the machine may be busy with the relay processes. */
const connect = (address: string, opts: Parameters<typeof connectWith>[1] = {}) => connectWith(address, { timeoutMs: 15_000, ...opts });

const hush = (args: string[], env: Record<string, string> = {}) => new HushProcess(args, env).result();

interface Running {
  proc: HushProcess;
  address: string;
  fingerprint: string;
  metricsPort: number;
}

const EPHEMERAL = { HUSH_RELAY_PORT: '0', HUSH_RELAY_METRICS_PORT: '0' };

async function start(dir: string, env: Record<string, string> = {}): Promise<Running> {
  const proc = new HushProcess(['relay', 'start', '--dir', dir], { ...EPHEMERAL, ...env });
  try {
    const m = await proc.waitFor(/relay address: (hush(?:\+ws)?:\/\/([A-Za-z0-9_-]{43})@[^\s:]+:(\d+))/);
    const mp = await proc.waitFor(/metrics port: (\d+)/);
    return { proc, address: m[1]!, fingerprint: m[2]!, metricsPort: Number(mp[1]) };
  } catch (e) {
    await proc.dispose();
    throw e;
  }
}

async function init(dir: string, ...args: string[]): Promise<string> {
  const r = await hush(['relay', 'init', '--dir', dir, ...args]);
  assert.equal(r.code, 0, r.stderr);
  const m = /address: (hush\S+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return m[1]!;
}

/** base64url(SHA-256(raw Ed25519 public key)), computed independently of src/. */
function fingerprintOfKeyFile(file: string): string {
  const jwk = createPublicKey(createPrivateKey(fs.readFileSync(file))).export({ format: 'jwk' });
  return createHash('sha256').update(Buffer.from(jwk.x!, 'base64url')).digest('base64url');
}

const fingerprintOf = (address: string) => /^hush(?:\+ws)?:\/\/([A-Za-z0-9_-]{43})@/.exec(address)?.[1];

const dirs: string[] = [];
const scratch = (prefix = 'hush-cli-') => {
  const d = tmpDir(prefix);
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('hush relay init', () => {
  test('creates identity.key (0600) and relay.json, and prints the matching address', async () => {
    const dir = path.join(scratch(), 'relay');
    const address = await init(dir, '--host', '127.0.0.1', '--port', '6123');
    const files = fs.readdirSync(dir).sort();
    assert.deepEqual(files, ['identity.key', 'relay.json']);
    assert.equal(fs.statSync(path.join(dir, 'identity.key')).mode & 0o777, 0o600, 'identity.key readable by the owner only');
    assert.equal(fs.statSync(dir).mode & 0o077, 0, 'the relay directory is private');
    assert.equal(createPrivateKey(fs.readFileSync(path.join(dir, 'identity.key'))).asymmetricKeyType, 'ed25519');
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'relay.json'), 'utf8')), { host: '127.0.0.1', port: 6123 });
    assert.match(address, /^hush\+ws:\/\/[A-Za-z0-9_-]{43}@127\.0\.0\.1:6123$/);
    assert.equal(fingerprintOf(address), fingerprintOfKeyFile(path.join(dir, 'identity.key')));

    // the relay started from it has that identity
    const r = await start(dir);
    try {
      assert.equal(r.fingerprint, fingerprintOf(address));
      const c = await connect(r.address);
      await c.ping();
      c.close();
    } finally {
      await r.proc.dispose();
    }
  });

  test('refuses to initialize twice, and leaves the files alone', async () => {
    const dir = scratch();
    await init(dir);
    const key = fs.readFileSync(path.join(dir, 'identity.key'));
    const config = fs.readFileSync(path.join(dir, 'relay.json'));
    const r = await hush(['relay', 'init', '--dir', dir, '--port', '7000']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already initialized/);
    assert.ok(r.stderr.includes(path.join(dir, 'identity.key')), 'names the file');
    assert.doesNotMatch(r.stdout, /address:/);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'identity.key')), key);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'relay.json')), config);
  });
});

describe('hush relay init: bad arguments', () => {
  for (const port of ['abc', '0', '70000', '12x'])
    test(`--port ${port} is refused before anything is created`, async () => {
      const dir = path.join(scratch(), 'relay');
      const r = await hush(['relay', 'init', '--dir', dir, '--port', port]);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, /--port/);
      assert.doesNotMatch(r.stdout, /address:/);
      assert.equal(fs.existsSync(dir), false);
    });
});

describe('hush relay start: bad configuration exits non-zero naming the setting', () => {
  const cases: Array<{ what: string; env?: Record<string, string>; json?: string; expect: RegExp[] }> = [
    { what: 'HUSH_RELAY_PORT=abc', env: { HUSH_RELAY_PORT: 'abc' }, expect: [/\bport\b/, /HUSH_RELAY_PORT/] },
    { what: 'HUSH_RELAY_PORT=70000', env: { HUSH_RELAY_PORT: '70000' }, expect: [/\bport\b/, /HUSH_RELAY_PORT/] },
    {
      what: 'HUSH_RELAY_MAX_MESSAGE_BYTES over the limit',
      env: { HUSH_RELAY_MAX_MESSAGE_BYTES: '99999' },
      expect: [/limits\.maxMessageBytes/, /HUSH_RELAY_MAX_MESSAGE_BYTES/],
    },
    {
      what: 'HUSH_RELAY_FSYNC=yes',
      env: { HUSH_RELAY_FSYNC: 'yes' },
      expect: [/store\.fsync/, /HUSH_RELAY_FSYNC/],
    },
    {
      what: 'an unknown key in relay.json',
      json: JSON.stringify({ host: '127.0.0.1', port: 5223, colour: 'blue' }),
      expect: [/colour/, /relay\.json/],
    },
    {
      what: 'an unknown nested key in relay.json',
      json: JSON.stringify({ host: '127.0.0.1', port: 5223, limits: { queueQuotum: 5 } }),
      expect: [/queueQuotum/, /limits/, /relay\.json/],
    },
    {
      what: 'a bad value in relay.json',
      json: JSON.stringify({ host: '127.0.0.1', port: 5223, limits: { queueQuota: -3 } }),
      expect: [/limits\.queueQuota/, /relay\.json/],
    },
    { what: 'invalid JSON', json: '{ "host": "127.0.0.1", "port": 5223, }', expect: [/relay\.json/, /not valid JSON/] },
    { what: 'a JSON array', json: '[1, 2]', expect: [/relay\.json/, /JSON object/] },
  ];
  // One `hush relay init`, copied for each case: what is tested is start.
  let initialized: string | undefined;
  for (const c of cases)
    test(c.what, async () => {
      if (!initialized) await init((initialized = scratch()));
      const dir = scratch();
      fs.cpSync(initialized, dir, { recursive: true });
      if (c.json !== undefined) fs.writeFileSync(path.join(dir, 'relay.json'), c.json);
      const r = await hush(['relay', 'start', '--dir', dir], { ...EPHEMERAL, ...c.env });
      assert.equal(r.signal, null, `exited by itself (not killed after the timeout): ${r.stdout}`);
      assert.equal(r.code, 1, r.stderr);
      for (const re of c.expect) assert.match(r.stderr, re);
      assert.doesNotMatch(r.stdout, /relay address/);
      assert.equal(fs.existsSync(path.join(dir, 'store')), false, 'nothing started');
    });
});

describe('a running relay: health, metrics, logs, SIGTERM', () => {
  let dir: string;
  let relay: Running;
  const clients: TestClient[] = [];
  const queues: Queue[] = [];
  const bodies = ['first secret body', 'second secret body', 'third secret body'];

  before(async () => {
    dir = scratch();
    await init(dir);
    // the most verbose logging, so anything a handler logs shows up
    relay = await start(dir, { HUSH_LOG_LEVEL: 'trace' });
  });
  after(async () => {
    for (const c of clients) c.close();
    await relay?.proc.dispose();
  });

  const get = (p: string) => fetch(`http://127.0.0.1:${relay.metricsPort}${p}`, { signal: AbortSignal.timeout(5000) });

  test('/healthz answers 200 JSON before any traffic', async () => {
    const res = await get('/healthz');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const h = (await res.json()) as Record<string, unknown>;
    assert.equal(h.ok, true);
    assert.equal(h.queues, 0);
    assert.equal(h.messages, 0);
    assert.equal((await get('/nope')).status, 404);
  });

  test('/metrics and /healthz count queues, messages and commands after traffic', async () => {
    const a = await connect(relay.address);
    const b = await connect(relay.address);
    clients.push(a, b);
    queues.push(await newQueue(a, true), await newQueue(a));
    const [q1, q2] = queues as [Queue, Queue];
    for (const body of bodies) await b.send(q1.sndId, bytes(body), { notify: true });
    await b.send(q2.sndId, bytes('to q2'));
    await a.subscribe(q2.rcvId, q2.rcvAuth.privateKey);
    const e = await a.nextEvent('MSG');
    const m = openMessage(crypto, q2.rcvDhSecret, e as Extract<typeof e, { type: 'MSG' }>)!;
    assert.equal(text(m.body), 'to q2');
    await a.ack(q2.rcvId, q2.rcvAuth.privateKey, m.msgId);
    // errors: a wrong key, an unknown queue
    await assert.rejects(a.get(q1.rcvId, q2.rcvAuth.privateKey), /AUTH/);
    await assert.rejects(b.send(crypto.randomBytes(24), bytes('nobody')), /AUTH/);

    const res = await get('/metrics');
    assert.equal(res.status, 200);
    const metrics = await res.text();
    const value = (line: string) => {
      const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(metrics);
      assert.ok(m, `${line} in /metrics`);
      return Number(m[1]);
    };
    assert.equal(value('hush_relay_queues'), 2);
    assert.equal(value('hush_relay_messages_stored'), 3);
    assert.equal(value('hush_relay_notifiers'), 1);
    assert.equal(value('hush_relay_notifications_unacked'), 1, 'NMSG kept: no notifier has acknowledged it');
    assert.equal(value('hush_relay_commands_total{command="NEW"}'), 2);
    assert.equal(value('hush_relay_commands_total{command="SEND"}'), 5);
    assert.equal(value('hush_relay_commands_total{command="SUB"}'), 1);
    assert.equal(value('hush_relay_commands_total{command="ACK"}'), 1);
    assert.equal(value('hush_relay_messages_sent_total'), 4);
    assert.equal(value('hush_relay_messages_delivered_total'), 1);
    assert.equal(value('hush_relay_errors_total{error="AUTH"}'), 2);
    assert.equal(value('hush_relay_notifications_total{outcome="stored"}'), 3);
    assert.equal(value('hush_relay_connections'), 2);

    const h = (await (await get('/healthz')).json()) as Record<string, unknown>;
    assert.deepEqual(
      { ok: h.ok, queues: h.queues, messages: h.messages, notifiers: h.notifiers, pending: h.pendingNotifications, connections: h.connections },
      { ok: true, queues: 2, messages: 3, notifiers: 1, pending: 1, connections: 2 },
    );
  });

  test('SIGTERM stops the relay with exit code 0, keeping its state', async () => {
    assert.equal(queues.length, 2, 'runs after the traffic test');
    let onClose!: (reason: string) => void;
    const closed = new Promise<string>((resolve) => (onClose = resolve));
    const c = await connect(relay.address, { onClose });
    clients.push(c);
    await c.ping(); // the relay holds the session: its shutdown must close it
    relay.proc.kill('SIGTERM');
    const r = await relay.proc.result(15_000);
    assert.equal(r.signal, null, 'exited by itself, not killed by the timeout');
    assert.equal(r.code, 0, r.stderr);
    assert.match(await closed, /connection closed/);

    const again = await start(dir);
    try {
      const c = await connect(again.address);
      const q1 = queues[0]!;
      const m = await c.get(q1.rcvId, q1.rcvAuth.privateKey);
      assert.ok(m, 'the messages survived the shutdown');
      assert.equal(text(openMessage(crypto, q1.rcvDhSecret, m)!.body), bodies[0]);
      c.close();
    } finally {
      again.proc.kill('SIGTERM');
      assert.equal((await again.proc.result(15_000)).code, 0);
    }
  });

  test('the logs name no queue ID, key or body from the traffic', () => {
    assert.ok(!relay.proc.running, 'runs after the SIGTERM test');
    const logs = relay.proc.stdout + relay.proc.stderr;
    assert.match(logs, /relay_started/, 'the logs were captured');
    const secrets: Uint8Array[] = [];
    for (const q of queues) {
      secrets.push(q.rcvId, q.sndId, q.rcvAuth.publicKey, q.rcvDh.publicKey);
      if (q.ntf) secrets.push(q.ntf.notifierId, q.ntf.auth.publicKey, q.ntf.dh.publicKey);
    }
    assert.ok(secrets.length >= 9);
    for (const s of secrets) {
      const b = Buffer.from(s);
      for (const enc of ['hex', 'base64', 'base64url'] as const) {
        const needle = b.toString(enc).replace(/=+$/, '');
        assert.ok(!logs.includes(needle), `a ${enc} ID or key in the logs`);
      }
      assert.ok(!logs.includes(b.toString('latin1')), 'raw ID bytes in the logs');
      assert.ok(!logs.includes(JSON.stringify([...b]).slice(1, -1)), 'an ID as a byte list in the logs');
    }
    for (const body of bodies) assert.ok(!logs.includes(body), 'a message body in the logs');
  });
});

describe('store settings', () => {
  /** A journal of one queue and `n` sent-and-acknowledged messages: large, with almost nothing live. */
  async function churnedJournal(dir: string, n: number): Promise<number> {
    const j = openJournalQueueStore({ dir: path.join(dir, 'store') }).store;
    const rcvId = crypto.randomBytes(24);
    j.createQueue({ rcvId, sndId: crypto.randomBytes(24), rcvAuthKey: crypto.randomBytes(32), rcvDhSecret: crypto.randomBytes(32), suspended: false });
    for (let i = 0; i < n; i++) {
      const msgId = crypto.randomBytes(12);
      j.addMessage(rcvId, { msgId, ts: i, notify: false, body: crypto.randomBytes(800) });
      j.ackMessage(rcvId, msgId);
    }
    await j.close();
    return fs.statSync(path.join(dir, 'store', 'relay.journal')).size;
  }
  const journalSize = (dir: string) => fs.statSync(path.join(dir, 'store', 'relay.journal')).size;

  for (const [mb, compacts] of [
    ['1', true],
    ['4096', false], // 4096 << 20 is 0 in 32 bits: this once compacted every journal
  ] as const)
    test(`HUSH_RELAY_COMPACT_MIN_MB=${mb}: a 1.3 MB journal ${compacts ? 'is' : 'is not'} compacted on start`, async () => {
      const dir = scratch();
      await init(dir);
      const size = await churnedJournal(dir, 1500);
      assert.ok(size > 1.2 * 1024 * 1024, `${size}`);
      const relay = await start(dir, { HUSH_RELAY_COMPACT_MIN_MB: mb });
      try {
        if (compacts) assert.ok(journalSize(dir) < 1024, `compacted to ${journalSize(dir)} bytes`);
        else assert.equal(journalSize(dir), size);
        const h = (await (await fetch(`http://127.0.0.1:${relay.metricsPort}/healthz`)).json()) as Record<string, unknown>;
        assert.equal(h.queues, 1);
        assert.equal(h.messages, 0);
      } finally {
        await relay.proc.dispose();
      }
    });
});

describe('TLS', () => {
  const openssl = promisify(execFile);
  const makeCert = async (dir: string) => {
    await openssl(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', 'key.pem', '-out', 'cert.pem'],
      { cwd: dir, timeout: 30_000 },
    );
    return { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  };

  test('HUSH_RELAY_TLS_CERT/KEY: a hush:// address, and clients work over wss', async () => {
    const certDir = scratch('hush-tls-');
    const { cert, key } = await makeCert(certDir);
    const dir = scratch();
    await init(dir);
    const relay = await start(dir, { HUSH_RELAY_TLS_CERT: cert, HUSH_RELAY_TLS_KEY: key, HUSH_RELAY_PUBLIC_HOST: 'localhost' });
    const clients: TestClient[] = [];
    try {
      assert.match(relay.address, /^hush:\/\/[A-Za-z0-9_-]{43}@localhost:\d+$/);
      const port = relay.address.split(':').at(-1)!;
      const viaIp = relay.address.replace('@localhost:', '@127.0.0.1:');

      // the certificate checked against its own CA (the address names the certificate's host)
      const verified = await connect(relay.address, { webSocket: nodeWebSocket({ ca: fs.readFileSync(cert) }) });
      // and the default: any certificate, the pinned identity is what counts
      const unverified = await connect(viaIp, { webSocket: nodeWebSocket() });
      clients.push(verified, unverified);
      const q = await newQueue(verified);
      await unverified.send(q.sndId, bytes('over tls'));
      const m = await verified.get(q.rcvId, q.rcvAuth.privateKey);
      assert.ok(m);
      assert.equal(text(openMessage(crypto, q.rcvDhSecret, m)!.body), 'over tls');
      await verified.ack(q.rcvId, q.rcvAuth.privateKey, m.msgId);
      assert.equal(await verified.get(q.rcvId, q.rcvAuth.privateKey), undefined);

      // a certificate from another CA is refused when a CA is given
      const other = await makeCert(scratch('hush-tls-'));
      await assert.rejects(connect(relay.address, { webSocket: nodeWebSocket({ ca: fs.readFileSync(other.cert) }), timeoutMs: 3000 }));
      // plain WebSocket to the TLS port does not work
      await assert.rejects(connect(`hush+ws://${relay.fingerprint}@127.0.0.1:${port}`, { timeoutMs: 3000 }));
    } finally {
      for (const c of clients) c.close();
      await relay.proc.dispose();
    }
  });
});
