// `hush gateway init|add-server|start` as an operator runs them, and the
// notification server's one switch between providers built in and a gateway.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadGatewayConfig } from '../../src/gateway/config.ts';
import { keyHash } from '../../src/gateway/server.ts';
import { createProviders } from '../../src/push/config.ts';
import { FcmTestServer } from '../../src/push/stand-ins/fcm-server.ts';
import { createVapidKey } from '../../src/push/webpush/vapid.ts';
import { generatePemKeyPair } from '../../src/server/identity.ts';
import { loadNtfConfig } from '../../src/ntf/config.ts';
import { ConfigError } from '../../src/server/config.ts';
import { tmpDir } from '../helpers.ts';
import { HushProcess } from '../process.ts';

const hush = (args: string[], env: Record<string, string> = {}) => new HushProcess(args, env).result();

test('init prints the seal key, add-server a key kept only as its hash; start serves /healthz and /metrics', { timeout: 60_000 }, async (t) => {
  const dir = tmpDir('hush-gateway-cli-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const init = await hush(['gateway', 'init', '--dir', dir]);
  assert.equal(init.code, 0, init.stderr);
  const sealKey = /seal key: ([A-Za-z0-9_-]{43})/.exec(init.stdout)?.[1];
  assert.ok(sealKey, init.stdout);
  assert.equal((fs.statSync(path.join(dir, 'seal.key')).mode & 0o777).toString(8), '600');
  const again = await hush(['gateway', 'init', '--dir', dir]);
  assert.notEqual(again.code, 0, 'a second init does not replace the key');

  const add = await hush(['gateway', 'add-server', '--dir', dir, '--name', 'ntf-1', '--rate', '50']);
  assert.equal(add.code, 0, add.stderr);
  const key = /\n(hgw_[A-Za-z0-9_-]{43})\n/.exec(add.stdout)?.[1];
  assert.ok(key, add.stdout);
  const cfg = fs.readFileSync(path.join(dir, 'gateway.json'), 'utf8');
  assert.equal(cfg.includes(key), false, 'the key itself is not stored');
  assert.deepEqual(JSON.parse(cfg).servers, [{ name: 'ntf-1', keyHash: keyHash(key), ratePerSecond: 50, burst: 100, dailyQuota: 0 }]);
  const dup = await hush(['gateway', 'add-server', '--dir', dir, '--name', 'ntf-1']);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /a server named ntf-1 exists/);
  const noName = await hush(['gateway', 'add-server', '--dir', dir]);
  assert.equal(noName.code, 64);

  const proc = new HushProcess(['gateway', 'start', '--dir', dir], { HUSH_GATEWAY_PORT: '0', HUSH_GATEWAY_METRICS_PORT: '0' });
  t.after(() => proc.dispose());
  const url = (await proc.waitFor(/push gateway address: (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
  const metricsPort = (await proc.waitFor(/metrics port: (\d+)/))[1]!;
  assert.match(proc.stdout, new RegExp(`seal key: ${sealKey}`));
  const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
  assert.deepEqual(await health.json(), { ok: true, providers: [], inFlight: 0 });
  assert.match(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), /hush_gateway_in_flight 0/);
  // without TLS (loopback only) the API is HTTP/2 in clear (h2c), as a notification server's gateway.url takes it
  assert.match(url, /^http:/);
  proc.kill('SIGTERM');
  assert.equal((await proc.result()).code, 0);
});

test('the gateway refuses to listen beyond loopback without TLS', async (t) => {
  const dir = tmpDir('hush-gateway-cli-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await hush(['gateway', 'init', '--dir', dir, '--host', '0.0.0.0']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /tls: tls is required unless the gateway listens on loopback only/);
  assert.equal(fs.existsSync(path.join(dir, 'seal.key')), false, 'no key made: init can be run again');
});

test('ntf.json: providers built in or a gateway, not both', (t) => {
  const dir = tmpDir('hush-ntf-cfg-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (c: object) => fs.writeFileSync(path.join(dir, 'ntf.json'), JSON.stringify(c));
  const gateway = { url: 'https://push.example.org:5225', key: 'hgw_0123456789abcdef0123' };
  const apns = { keyId: 'K', teamId: 'T', keyFile: '/k.p8', topic: 'app' };
  write({ gateway });
  assert.equal(loadNtfConfig(dir, {}).gateway?.url, gateway.url);
  write({ gateway, apns });
  assert.throws(() => loadNtfConfig(dir, {}), (e: Error) => e instanceof ConfigError && /gateway: either a gateway or providers built in, not both/.test(e.message));
  write({});
  assert.throws(() => loadNtfConfig(dir, { HUSH_NTF_GATEWAY_URL: 'ftp://x', HUSH_NTF_GATEWAY_KEY: gateway.key }), /gateway\.url: .*\(from env HUSH_NTF_GATEWAY_URL\)/);
});

test('provider settings make the providers they name', async (t) => {
  const dir = tmpDir('hush-providers-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const apnsKey = generatePemKeyPair('ec', { namedCurve: 'prime256v1' }).privateKey;
  fs.writeFileSync(path.join(dir, 'apns.p8'), apnsKey);
  fs.writeFileSync(path.join(dir, 'vapid.pem'), createVapidKey().privateKey);
  const fcm = await FcmTestServer.start();
  t.after(() => fcm.close());
  fs.writeFileSync(path.join(dir, 'sa.json'), JSON.stringify(fcm.serviceAccount()));
  fs.writeFileSync(
    path.join(dir, 'gateway.json'),
    JSON.stringify({
      apns: { host: 'sandbox', keyId: 'KEYID12345', teamId: 'TEAMID1234', keyFile: path.join(dir, 'apns.p8'), topic: 'app' },
      fcm: { serviceAccountFile: path.join(dir, 'sa.json') },
      webpush: { vapidKeyFile: path.join(dir, 'vapid.pem'), subject: 'mailto:ops@hush.example' },
    }),
  );
  const providers = createProviders(loadGatewayConfig(dir, {}));
  t.after(() => Promise.all(providers.map((p) => p.close())));
  assert.deepEqual(providers.map((p) => p.serves), [['apns-sandbox'], ['fcm'], ['webpush']]);
  assert.match(providers[2]!.applicationServerKey ?? '', /^[A-Za-z0-9_-]{87}$/);
  fs.writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ webpush: { vapidKeyFile: 'x', subject: 'ops@hush.example' } }));
  assert.throws(() => loadGatewayConfig(dir, {}), /webpush\.subject: a mailto: or https: URI/);
});
