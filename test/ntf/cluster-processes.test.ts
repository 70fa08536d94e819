// Three notification server processes (`hush ntf start`) on one PostgreSQL
// database behind HAProxy (deploy/haproxy/ntf-cluster.cfg, as shipped), three
// relays, phones on the APNs test server. Commands spread across the
// instances; every relay is held by one instance; kill -9 of an instance under
// load: its relays are taken over and the last message of every queue is
// pushed (nothing lost); an instance cut off from its database gives up its
// leases and fails /healthz, and comes back when the database does; a killed
// instance restarted rejoins and takes its share again; and no relay ever saw
// two connections fight over the service (its ENDS counter stays 0).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { fromBase64Url } from '../../src/core/encoding.ts';
import { sharedKey } from '../../src/core/keys.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { NtfClient } from '../../src/ntf/client.ts';
import { openPush } from '../../src/ntf/payload.ts';
import { openMeta } from '../../src/relay/client.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { BlackholeProxy } from '../../src/server/testkit/blackhole-proxy.ts';
import { bytes, connect, crypto, MANY_QUEUES, newQueue, startRelay, tmpDir, type Queue, type TestClient, type TestRelay } from '../helpers.ts';
import { freePort, HushProcess, ROOT } from '../process.ts';
import { until } from './helpers.ts';
import { PG_URL, pgDown } from '../pg.ts';

const TOPIC = 'chat.hush.cluster';
const LEASE_SECONDS = 4;

const down = await pgDown();
const haproxy = fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : undefined;
const skip = process.env.CI === 'true' ? false : (down ?? (haproxy ? false : 'haproxy not installed (apt-get install haproxy)'));

interface Instance {
  dir: string;
  port: number;
  ops: number;
  /** Its database URL: instance 3's goes through a proxy the test can cut. */
  db: string;
  proc?: HushProcess;
}

interface Phone {
  token: string;
  secret: Uint8Array;
  q: Queue;
  relay: TestRelay;
}

test('three instances behind HAProxy: spread, one holder per relay, kill -9 under load, database lost, rejoin', { skip, timeout: 240_000 }, async (t) => {
  const schema = `hush_cluster_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Pool({ connectionString: PG_URL, max: 2 });
  t.after(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`).catch(() => {});
    await admin.end();
  });
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  t.after(() => apns.close());
  const team = apns.keys.create();
  const relays = await Promise.all([1, 2, 3].map(() => startRelay({ creation: MANY_QUEUES })));
  t.after(() => Promise.all(relays.map((r) => r.stop())));
  const pgPort = Number(new URL(PG_URL).port || 5432);
  const dbProxy = new BlackholeProxy(pgPort, new URL(PG_URL).hostname);
  await dbProxy.listen();
  t.after(() => dbProxy.close());

  // ---- three instances sharing one identity and service key
  const instances: Instance[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = tmpDir(`hush-ntf-cluster-${i + 1}-`);
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const init = await new HushProcess(['ntf', 'init', '--dir', dir]).result();
    assert.equal(init.code, 0, `ntf init failed: ${init.stderr}${init.stdout}`);
    if (i > 0) for (const key of ['identity.key', 'service.key']) fs.copyFileSync(path.join(instances[0]!.dir, key), path.join(dir, key));
    fs.writeFileSync(path.join(dir, 'apns.p8'), team.privateKey);
    fs.writeFileSync(path.join(dir, 'apns-ca.pem'), apns.ca);
    const configFile = path.join(dir, 'ntf.json');
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    const db = i === 2 ? PG_URL.replace(`:${pgPort}/`, `:${dbProxy.port}/`) : PG_URL;
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        ...config,
        proxyProtocol: true,
        store: { backend: 'postgres', databaseUrl: db, schema },
        apns: { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile: path.join(dir, 'apns.p8'), topic: TOPIC, caFile: path.join(dir, 'apns-ca.pem') },
        relays: { allow: ['127.0.0.1'] },
        cluster: { leaseSeconds: LEASE_SECONDS, renewSeconds: 1 },
      }),
    );
    instances.push({ dir, port: await freePort(), ops: await freePort(), db });
  }
  const launch = async (inst: Instance) => {
    const proc = new HushProcess(['ntf', 'start', '--dir', inst.dir], {
      HUSH_LOG_LEVEL: 'warn',
      HUSH_NTF_PORT: String(inst.port),
      HUSH_NTF_METRICS_PORT: String(inst.ops),
    });
    t.after(() => proc.dispose());
    inst.proc = proc;
    return (await proc.waitFor(/notification server address: (\S+)/))[1]!;
  };
  const address = await launch(instances[0]!);
  for (const inst of instances.slice(1)) await launch(inst);

  // ---- HAProxy with the shipped config
  const lbPort = await freePort();
  const env: Record<string, string> = { ...process.env, HUSH_LB_BIND: `127.0.0.1:${lbPort}` } as Record<string, string>;
  instances.forEach((inst, i) => {
    env[`HUSH_NTF${i + 1}`] = `127.0.0.1:${inst.port}`;
    env[`HUSH_NTF${i + 1}_OPS`] = String(inst.ops);
  });
  const lb: ChildProcess = spawn(haproxy ?? 'haproxy', ['-db', '-f', path.join(ROOT, 'deploy/haproxy/ntf-cluster.cfg')], { env, stdio: 'ignore' });
  t.after(() => lb.kill('SIGKILL'));
  const lbAddress = address.replace(/:\d+$/, `:${lbPort}`);
  const clients: NtfClient[] = [];
  t.after(() => clients.forEach((c) => c.close()));
  const client = async () => {
    const c = await until('a connection through HAProxy', () => NtfClient.connect(lbAddress, { webSocket: nodeWebSocket(), timeoutMs: 10_000 }).catch(() => undefined), 15_000);
    clients.push(c);
    return c;
  };

  // ---- phones: each command on its own connection, so round robin spreads them
  const rcs: TestClient[] = await Promise.all(relays.map((r) => connect(r.address)));
  t.after(() => rcs.forEach((c) => c.close()));
  const phones: Phone[] = [];
  for (let i = 0; i < 6; i++) {
    const token = randomBytes(32);
    const hexToken = token.toString('hex');
    const tknAuth = crypto.x25519KeyPair();
    const tknDh = crypto.x25519KeyPair();
    const { tokenId, srvDhKey } = await (await client()).registerToken({ provider: 'apns', token }, tknAuth, tknDh.publicKey);
    const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
    const push = await until('the verification push', () => apns.pushes.find((p) => p.token === hexToken), 15_000);
    const v = openPush(crypto, secret, fromBase64Url(push.payload.d as string)!);
    assert.ok(v?.kind === 'verification');
    await (await client()).verifyToken(tokenId, tknAuth.privateKey, v.code);
    const relay = relays[i % 3]!;
    const q = await newQueue(rcs[i % 3]!, true);
    const subId = await (await client()).createSubscription(tokenId, tknAuth.privateKey, relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
    const checker = await client();
    await until('subscription ACTIVE', async () => (await checker.checkSubscription(subId, tknAuth.privateKey)) === 'ACTIVE', 20_000);
    phones.push({ token: hexToken, secret, q, relay });
  }
  const commandsAt = await Promise.all(instances.map((inst) => metric(inst.ops, 'hush_ntf_commands_total')));
  assert.ok(commandsAt.every((n) => n > 0), `every instance answered commands: ${commandsAt}`);

  // ---- every relay held by one instance, and spread
  const holders = async () => {
    const rows = (await admin.query<{ name: string; owner: string }>(`SELECT name, owner FROM ${pg.escapeIdentifier(schema)}.leases WHERE name LIKE 'relay:%' AND expires_at > now()`)).rows;
    return new Map(rows.map((r) => [r.name.slice(6), r.owner]));
  };
  await until('each instance holding one relay', async () => {
    const h = await holders();
    return relays.every((r) => h.has(r.address)) && new Set(h.values()).size === 3;
  }, 30_000);
  for (const inst of instances) assert.equal(await metric(inst.ops, 'hush_ntf_relays_held'), 1);

  // ---- kill -9 under load: a round of messages in flight as the holder of relay 0 dies, another
  // while it is dead; once its relays are taken over, every queue's newest message is pushed.
  const round = () => Promise.all(phones.map((p) => rcs[relays.indexOf(p.relay)]!.send(p.q.sndId, bytes('m'), { notify: true })));
  await round();
  await lastMessagesPushed(apns, phones, rcs, relays);
  // Instance IDs are host name:port.
  const victimId = (await holders()).get(relays[0]!.address)!;
  const killed = instances.find((inst) => victimId.endsWith(`:${inst.port}`))!;
  assert.ok(killed, `the holder ${victimId} is one of the instances`);
  const inFlight = round();
  killed.proc!.kill('SIGKILL');
  await inFlight;
  await killed.proc!.exited;
  await round();
  await until('relay 0 taken over', async () => {
    const owner = (await holders()).get(relays[0]!.address);
    return owner !== undefined && owner !== victimId;
  }, 20_000);
  await lastMessagesPushed(apns, phones, rcs, relays);

  // ---- the killed instance restarted: rejoins and takes its share again
  await launch(killed);
  await until('the restarted instance holding a relay again', async () => new Set((await holders()).values()).has(victimId), 30_000);

  // ---- instance 3 loses its database: gives up its leases and fails /healthz; the others take its relays
  const cut = instances[2]!;
  const cutId = `:${cut.port}`;
  await until('instance 3 holding a relay', async () => [...(await holders()).values()].some((o) => o.endsWith(cutId)), 30_000);
  dbProxy.partitioned = true;
  dbProxy.blackhole();
  await until('instance 3 unhealthy', async () => (await health(cut.ops)) === 503, 20_000);
  await until('instance 3 holding no relay', async () => (await metric(cut.ops, 'hush_ntf_relays_held')) === 0, 20_000);
  await until('its relays held by the others', async () => {
    const h = await holders();
    return relays.every((r) => h.has(r.address)) && ![...h.values()].some((o) => o.endsWith(cutId));
  }, 20_000);
  for (const p of phones) await rcs[relays.indexOf(p.relay)]!.send(p.q.sndId, bytes('while cut off'), { notify: true });
  await lastMessagesPushed(apns, phones, rcs, relays);
  dbProxy.partitioned = false;
  await until('instance 3 healthy again', async () => (await health(cut.ops)) === 200, 30_000);
  await until('instance 3 holding a relay again', async () => [...(await holders()).values()].some((o) => o.endsWith(cutId)), 30_000);

  for (const r of relays) assert.equal((await r.server.metrics.serviceTakeovers.get()).values[0]?.value ?? 0, 0, 'no relay saw two instances fight over the service');
});

/** Every queue's newest message (read from the relay by its recipient) was pushed to its phone. */
async function lastMessagesPushed(apns: ApnsTestServer, phones: Phone[], rcs: TestClient[], relays: TestRelay[]): Promise<void> {
  for (const p of phones) {
    const rc = rcs[relays.indexOf(p.relay)]!;
    let last: Uint8Array | undefined;
    for (;;) {
      const m = await rc.get(p.q.rcvId, p.q.rcvAuth.privateKey);
      if (!m) break;
      last = m.msgId;
      await rc.ack(p.q.rcvId, p.q.rcvAuth.privateKey, m.msgId);
    }
    assert.ok(last, 'messages were sent');
    const want = Buffer.from(last).toString('hex');
    await until(
      'the newest message of every queue pushed',
      () =>
        apns.pushes.some((x) => {
          if (x.token !== p.token || x.headers['apns-push-type'] !== 'alert') return false;
          const c = openPush(crypto, p.secret, fromBase64Url(x.payload.d as string)!);
          return c?.kind === 'message' && c.entries.some((e) => Buffer.from(openMeta(crypto, p.q.ntf!.rcvNtfDhSecret, e)?.msgId ?? []).toString('hex') === want);
        }),
      20_000,
    );
  }
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(' ').at(-1));
  return sum;
}

const health = async (port: number) => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.status ?? 0;
