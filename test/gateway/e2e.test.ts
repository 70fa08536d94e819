// End to end through a separate push gateway process: a REAL relay process →
// the notification server (its only provider: GatewayProvider) → `hush gateway
// start` (a separate process holding the APNs credentials) → the APNs test
// server. The device registered a token sealed to the gateway's key: the
// notification server stores and forwards only the sealed form, the APNs test
// server sees the clear token, and the device opens both pushes it gets.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { fromBase64Url, latin1 } from '../../src/core/encoding.ts';
import { addServer, initGateway } from '../../src/gateway/run.ts';
import { GatewayProvider } from '../../src/push/gateway/provider.ts';
import { apnsToken as apnsDevice, sealedToken } from '../../src/sdk/index.ts';
import { openJournalNtfStore } from '../../src/ntf/store/journal.ts';
import { openPush, type PushContent } from '../../src/ntf/payload.ts';
import { openMessage, openMeta } from '../../src/relay/client.ts';
import { ApnsTestServer, type ApnsRecordedPush } from '../../src/push/stand-ins/apns-server.ts';
import { bytes, connect, crypto, newQueue, text, tmpDir } from '../helpers.ts';
import { HushProcess } from '../process.ts';
import { RelayProcess, startNtf, until } from '../ntf/helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

const TOPIC = 'chat.hush.e2e';

test('relay → NTF → gateway process → APNs test server, with a sealed device token', { timeout: 120_000 }, async (t) => {
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  t.after(() => apns.close());
  const team = apns.keys.create();

  // ---- the gateway: its own directory and process, the APNs credentials only there
  const gwDir = tmpDir('hush-gateway-');
  t.after(() => fs.rmSync(gwDir, { recursive: true, force: true }));
  const sealKey = initGateway({ dir: gwDir });
  fs.writeFileSync(path.join(gwDir, 'apns.p8'), team.privateKey);
  fs.writeFileSync(path.join(gwDir, 'apns-ca.pem'), apns.ca);
  const cfgFile = path.join(gwDir, 'gateway.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  Object.assign(cfg, {
    port: 0,
    metrics: { port: 0 },
    apns: { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile: path.join(gwDir, 'apns.p8'), topic: TOPIC, caFile: path.join(gwDir, 'apns-ca.pem') },
  });
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const key = addServer(gwDir, { name: 'e2e-ntf' });
  const gateway = new HushProcess(['gateway', 'start', '--dir', gwDir], { HUSH_LOG_LEVEL: 'info' });
  t.after(() => gateway.dispose());
  const url = (await gateway.waitFor(/push gateway address: (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
  assert.match(gateway.stdout, new RegExp(`seal key: ${sealKey}`));

  // ---- relay process and notification server
  const relay = await RelayProcess.start();
  t.after(() => relay.stop());
  const ntfDir = tmpDir('hush-ntf-store-');
  t.after(() => fs.rmSync(ntfDir, { recursive: true, force: true }));
  const ntf = await startNtf({ store: openJournalNtfStore(ntfDir).store, providers: [new GatewayProvider({ url, key })] });
  t.after(() => ntf.stop());
  const nc = await ntf.client();

  // ---- the phone: an APNs token, sealed by the SDK to the gateway's key (as /v1/info gives it) before the NTF server sees it
  const apnsToken = randomBytes(32);
  const sealed = sealedToken(apnsDevice(apnsToken), sealKey);
  const tknAuth = crypto.x25519KeyPair();
  const tknDh = crypto.x25519KeyPair();
  const { tokenId, srvDhKey } = await nc.registerToken(sealed, tknAuth, tknDh.publicKey);
  const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
  const hexToken = apnsToken.toString('hex');
  const nextPush = async (n: number): Promise<ApnsRecordedPush> => {
    await until(`APNs push ${n}`, () => apns.pushes.length >= n, 15_000);
    const p = apns.pushes[n - 1]!;
    assert.equal(p.token, hexToken, 'Apple gets the clear device token');
    assert.equal(p.headers['apns-topic'], TOPIC);
    return p;
  };
  const open = (p: ApnsRecordedPush): PushContent => {
    const c = openPush(crypto, secret, fromBase64Url(p.payload.d as string)!);
    assert.ok(c, 'the push opens on the phone');
    return c;
  };

  const verification = open(await nextPush(1));
  assert.ok(verification.kind === 'verification');
  await nc.verifyToken(tokenId, tknAuth.privateKey, verification.code);
  assert.deepEqual(await nc.checkToken(tokenId, tknAuth.privateKey), { status: 'ACTIVE' });

  // ---- a queue with notifier credentials, subscribed at the NTF server; a message with notify
  const rc = await connect(relay.address, { timeoutMs: 10_000 });
  t.after(() => rc.close());
  const q = await newQueue(rc, false);
  const ntfAuth = crypto.x25519KeyPair();
  const ntfDh = crypto.x25519KeyPair();
  const nid = await rc.enableNotifications(q.rcvId, q.rcvAuth.privateKey, ntfAuth.publicKey, ntfDh.publicKey);
  const subId = await nc.createSubscription(tokenId, tknAuth.privateKey, relay.address, nid.notifierId, ntfAuth.privateKey);
  await until('subscription ACTIVE', async () => (await nc.checkSubscription(subId, tknAuth.privateKey)) === 'ACTIVE', 10_000);
  const sender = await connect(relay.address, { timeoutMs: 10_000 });
  t.after(() => sender.close());
  await sender.send(q.sndId, bytes('hi through the gateway'), { notify: true });

  const p = await nextPush(2);
  assert.equal(p.headers['apns-push-type'], 'alert');
  const content = open(p);
  assert.ok(content.kind === 'message');
  const entry = content.entries.at(-1)!;
  const meta = openMeta(crypto, sharedKey(crypto, ntfDh.privateKey, nid.srvNtfDhKey, 'relay notifier')!, entry);
  const msg = await rc.get(q.rcvId, q.rcvAuth.privateKey);
  assert.ok(meta && msg);
  const m = openMessage(crypto, q.rcvDhSecret, msg);
  assert.equal(m && text(m.body), 'hi through the gateway');
  assert.equal(Buffer.from(meta.msgId).toString('hex'), Buffer.from(msg.msgId).toString('hex'), 'the push names the waiting message');

  // ---- the NTF server never held the clear token: not in its store, not on disk
  const stored = ntf.ntf.store.token(latin1(tokenId));
  assert.equal(stored?.device.provider, 'sealed');
  assert.equal(Buffer.from(stored.device.token).equals(Buffer.from(sealed.token)), true);
  await ntf.stop();
  for (const f of walk(ntfDir)) {
    const b = fs.readFileSync(f);
    assert.equal(b.includes(apnsToken), false, `${f} holds the clear token`);
    assert.equal(b.includes(Buffer.from(hexToken)), false, `${f} holds the clear token in hex`);
  }
  assert.ok(walk(ntfDir).some((f) => fs.readFileSync(f).includes(Buffer.from(sealed.token))), 'the journal holds the sealed form');
  // nor does the gateway log it
  assert.equal((gateway.stdout + gateway.stderr).includes(hexToken), false);
});

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}
