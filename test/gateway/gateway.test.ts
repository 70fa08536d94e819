// The push gateway: sealed device tokens, its HTTP API parsed strictly, and
// GatewayServer + GatewayProvider (the notification server's side) delivering
// through the APNs test server — with authentication, rate limits and quotas.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import { nobleCrypto } from '../../src/core/crypto/noble.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { GatewayProvider } from '../../src/push/gateway/provider.ts';
import { Limiter } from '../../src/gateway/limits.ts';
import { decodePushRequest, decodePushResult, encodePushRequest, INFO_PATH, PUSH_PATH } from '../../src/push/gateway/protocol.ts';
import { openDeviceToken, sealDeviceToken, SEALED_TOKEN_SIZE, SEALED_VERSION } from '../../src/push/gateway/sealed-token.ts';
import { GatewayServer, keyHash, type ServerAccount } from '../../src/gateway/server.ts';
import { type DeviceToken, PUSH_DATA_SIZE, type PushKind } from '../../src/push/device.ts';
import { ApnsProvider } from '../../src/push/apns/provider.ts';
import type { PushRequest } from '../../src/push/provider.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { TEST_CERT, TEST_CERT_KEY } from '../../src/push/stand-ins/tls.ts';
import { silent, SMALL_ORDER_KEYS } from '../helpers.ts';
import { TestClock } from '../ntf/helpers.ts';

const TOPIC = 'chat.hush.app';
const apnsDevice = (): DeviceToken => ({ provider: 'apns', token: randomBytes(32) });
const push = (device: DeviceToken, kind: PushKind = 'message'): PushRequest => ({ device, kind, data: randomBytes(PUSH_DATA_SIZE) });
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('sealed device tokens', () => {
  const gw = nodeCrypto.x25519KeyPair();

  it('open at the gateway to the clear token, sealed by the portable (noble) suite', () => {
    for (const device of [
      apnsDevice(),
      { provider: 'fcm', token: new TextEncoder().encode('f'.repeat(163)) },
      { provider: 'webpush', token: randomBytes(1080) },
    ] satisfies DeviceToken[]) {
      const sealed = sealDeviceToken(nobleCrypto, gw.publicKey, device);
      assert.equal(sealed.provider, 'sealed');
      // one size whatever the provider and token: the notification server learns neither
      assert.equal(sealed.token.length, SEALED_TOKEN_SIZE);
      assert.equal(Buffer.from(sealed.token).includes(Buffer.from(device.token)), false);
      const opened = openDeviceToken(nodeCrypto, gw, sealed.token);
      assert.deepEqual(opened && { provider: opened.provider, token: hex(opened.token) }, { provider: device.provider, token: hex(device.token) });
    }
  });

  it('two seals of one token are unlinkable; another key, a flipped bit or a wrong size do not open', () => {
    const d = apnsDevice();
    const a = sealDeviceToken(nodeCrypto, gw.publicKey, d).token;
    const b = sealDeviceToken(nodeCrypto, gw.publicKey, d).token;
    assert.notEqual(hex(a), hex(b));
    assert.equal(openDeviceToken(nodeCrypto, nodeCrypto.x25519KeyPair(), a), undefined);
    for (const i of [0, 5, 40, a.length - 1]) {
      const t = a.slice();
      t[i]! ^= 1;
      assert.equal(openDeviceToken(nodeCrypto, gw, t), undefined, `bit flipped at ${i}`);
    }
    assert.equal(openDeviceToken(nodeCrypto, gw, a.subarray(1)), undefined);
    assert.throws(() => sealDeviceToken(nodeCrypto, gw.publicKey, { provider: 'sealed', token: a }), /cannot seal/);
    assert.throws(() => sealDeviceToken(nodeCrypto, gw.publicKey, { provider: 'webpush', token: randomBytes(1300) }), /too long/);
  });

  it('a gateway key or an ephemeral key of small order is refused: it would give a key anyone knows', () => {
    /** A token sealed by hand (docs/push.md §5) from `ephPub` and the X25519 result `ikm`. */
    const forge = (ephPub: Uint8Array, ikm: Uint8Array) => {
      const key = nodeCrypto.hkdfSha256(ikm, new Uint8Array([...ephPub, ...gw.publicKey]), new TextEncoder().encode('hush/2 sealed token'), 32);
      const plain = new Uint8Array(1200);
      plain.set([0, 8, 4, ...new TextEncoder().encode('apns'), 0, 1, 7]); // long(tag apns ‖ long(0x07))
      const aad = Uint8Array.of(SEALED_VERSION, ...gw.publicKey);
      return new Uint8Array([SEALED_VERSION, ...ephPub, ...nodeCrypto.seal(key, new Uint8Array(12), plain, aad)]);
    };
    const eph = nodeCrypto.x25519KeyPair();
    assert.deepEqual(openDeviceToken(nodeCrypto, gw, forge(eph.publicKey, nodeCrypto.x25519(eph.privateKey, gw.publicKey)!))?.token, Uint8Array.of(7));
    for (const weak of SMALL_ORDER_KEYS) {
      assert.throws(() => sealDeviceToken(nobleCrypto, weak, apnsDevice()), /bad gateway key/);
      // Sealed with the key an all-zero X25519 result would give: it must not open.
      assert.equal(openDeviceToken(nodeCrypto, gw, forge(weak, new Uint8Array(32))), undefined);
    }
  });

  it('random bytes never open and never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: SEALED_TOKEN_SIZE + 2 }), (b) => {
        assert.equal(openDeviceToken(nodeCrypto, gw, b), undefined);
      }),
      { numRuns: 300 },
    );
  });
});

describe('gateway HTTP API encoding', () => {
  it('round-trips a push request and every kind of result', () => {
    const r = push(apnsDevice(), 'check');
    const d = decodePushRequest(encodePushRequest(r));
    assert.ok(d.ok);
    assert.deepEqual([d.value.device.provider, hex(d.value.device.token), d.value.kind, hex(d.value.data)], ['apns', hex(r.device.token), 'check', hex(r.data)]);
    for (const res of [
      { outcome: 'delivered' },
      { outcome: 'retry', reason: 'x' },
      { outcome: 'retry', reason: 'x', afterMs: 1500 },
      { outcome: 'invalid', reason: 'EXPIRED' },
      { outcome: 'failed', reason: 'y' },
    ] as const)
      assert.deepEqual(decodePushResult(JSON.stringify(res)), { ok: true, value: res });
  });

  it('refuses anything else, clearly, and never throws', () => {
    const good = JSON.parse(encodePushRequest(push(apnsDevice())));
    const bad: unknown[] = [
      'not json',
      [],
      { ...good, extra: 1 },
      { ...good, provider: 'carrier-pigeon' },
      { ...good, kind: 'loud' },
      { ...good, token: '' },
      { ...good, token: 42 },
      { ...good, data: 'AAAA' },
      { ...good, token: '!!!' },
    ];
    for (const b of bad) {
      const r = decodePushRequest(typeof b === 'string' ? b : JSON.stringify(b));
      assert.equal(r.ok, false, JSON.stringify(b).slice(0, 60));
    }
    for (const b of ['{}', '{"outcome":"invalid","reason":"NOPE"}', '{"outcome":"retry","reason":"x","afterMs":-1}', '{"outcome":"delivered","x":1}', 'null'])
      assert.equal(decodePushResult(b).ok, false, b);
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
        decodePushRequest(s);
        decodePushResult(s);
      }),
      { numRuns: 500 },
    );
  });
});

describe('limits', () => {
  it('a token bucket refills at the rate; a daily quota resets at UTC midnight', () => {
    let now = Date.UTC(2026, 10, 22, 23, 59, 0);
    const l = new Limiter({ ratePerSecond: 2, burst: 3, dailyQuota: 5 }, () => now);
    assert.deepEqual([l.admit().ok, l.admit().ok, l.admit().ok], [true, true, true]);
    assert.deepEqual(l.admit(), { ok: false, why: 'rate', retryAfterSeconds: 1 });
    now += 1000; // two more
    assert.deepEqual([l.admit().ok, l.admit().ok], [true, true]);
    now += 10_000;
    assert.deepEqual(l.admit(), { ok: false, why: 'quota', retryAfterSeconds: 49 });
    now += 49_000; // a new day
    assert.equal(l.admit().ok, true);
  });
});

interface Rig {
  apns: ApnsTestServer;
  gateway: GatewayServer;
  sealKey: { publicKey: Uint8Array; privateKey: Uint8Array };
  key: string;
  client(over?: { key?: string }): GatewayProvider;
}

async function rig(t: TestContext, account: Partial<ServerAccount> = {}, opts: { tls?: boolean; clock?: TestClock } = {}): Promise<Rig> {
  const apns = await ApnsTestServer.start({ topics: [TOPIC] });
  const team = apns.keys.create();
  const provider = new ApnsProvider({ host: apns.url, ca: apns.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: TOPIC });
  const key = `hgw_${randomBytes(32).toString('base64url')}`;
  const sealKey = nodeCrypto.x25519KeyPair();
  const gateway = new GatewayServer({
    host: '127.0.0.1',
    port: 0,
    ...(opts.tls ? { tls: { cert: TEST_CERT, key: TEST_CERT_KEY } } : {}),
    sealKey,
    crypto: nodeCrypto,
    providers: [provider],
    servers: [{ name: 'ntf-a', keyHash: keyHash(key), ratePerSecond: 1000, burst: 2000, dailyQuota: 0, ...account }],
    log: silent,
    ...(opts.clock ? { now: opts.clock.now } : {}),
  });
  await gateway.start();
  const clients: GatewayProvider[] = [];
  t.after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await gateway.stop();
    await apns.close();
  });
  return {
    apns,
    gateway,
    sealKey,
    key,
    client(over = {}) {
      const c = new GatewayProvider({ url: gateway.url, key: over.key ?? key, ...(opts.tls ? { ca: apns.ca } : {}), requestTimeoutMs: 3000 });
      clients.push(c);
      return c;
    },
  };
}

describe('GatewayServer ↔ GatewayProvider ↔ APNs test server', () => {
  it('delivers clear and sealed tokens; Apple sees the clear token, the caller never needs it', async (t) => {
    const r = await rig(t, {}, { tls: true });
    const c = r.client();
    const clear = apnsDevice();
    assert.deepEqual(await c.send(push(clear)), { outcome: 'delivered' });
    const hidden = apnsDevice();
    const req = push(hidden, 'verification');
    assert.deepEqual(await c.send({ ...req, device: sealDeviceToken(nobleCrypto, r.sealKey.publicKey, hidden) }), { outcome: 'delivered' });
    assert.deepEqual(r.apns.pushes.map((p) => p.token), [hex(clear.token), hex(hidden.token)]);
    assert.equal(r.apns.pushes[1]!.payload.d, Buffer.from(req.data).toString('base64url'), 'the sealed push data passes unchanged');
    assert.equal(r.apns.pushes[1]!.headers['apns-push-type'], 'background');
  });

  it("passes the provider's verdicts through: invalid tokens, retry-after, a seal for another gateway", async (t) => {
    const r = await rig(t);
    const c = r.client();
    const gone = apnsDevice();
    r.apns.replyTo(hex(gone.token), { status: 410, reason: 'Unregistered' });
    assert.deepEqual(await c.send(push(gone)), { outcome: 'invalid', reason: 'UNREGISTERED' });
    const busy = apnsDevice();
    r.apns.replyTo(hex(busy.token), { status: 429, reason: 'TooManyRequests', retryAfter: 7 });
    const res = await c.send(push(busy));
    assert.equal(res.outcome, 'retry');
    assert.equal(res.outcome === 'retry' && res.afterMs, 7000);
    const foreign = sealDeviceToken(nodeCrypto, nodeCrypto.x25519KeyPair().publicKey, apnsDevice());
    assert.deepEqual(await c.send(push(foreign)), { outcome: 'invalid', reason: 'BAD' });
    assert.deepEqual(await c.send(push({ provider: 'fcm', token: randomBytes(40) })), { outcome: 'failed', reason: 'NO_PROVIDER' });
    assert.equal(r.apns.pushes.length, 0);
  });

  it('refuses an unknown key; rate-limits and applies the quota per server, with retry-after', async (t) => {
    const clock = new TestClock(Date.UTC(2026, 10, 22, 12)); // noon: the quota's UTC day ends 12 hours later
    const r = await rig(t, { ratePerSecond: 1, burst: 3, dailyQuota: 4 }, { clock });
    assert.deepEqual(await r.client({ key: 'hgw_not-a-key-of-ours-at-all' }).send(push(apnsDevice())), { outcome: 'failed', reason: 'gateway: unauthorized' });
    const c = r.client();
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await c.send(push(apnsDevice())));
    assert.deepEqual(results.slice(0, 3).map((x) => x.outcome), ['delivered', 'delivered', 'delivered']);
    assert.deepEqual(results[3], { outcome: 'retry', reason: 'gateway: rate_limited', afterMs: 1000 });
    clock.advance(1000);
    assert.equal((await c.send(push(apnsDevice()))).outcome, 'delivered');
    const q = await c.send(push(apnsDevice()));
    assert.deepEqual(q, { outcome: 'retry', reason: 'gateway: quota_exceeded', afterMs: 12 * 3_600_000 - 1000 });
    assert.equal(r.apns.pushes.length, 4);
    const m = await r.gateway.metrics.registry.getSingleMetricAsString('hush_gateway_requests_total');
    assert.match(m, /server="ntf-a",result="rate"} 1/);
    assert.match(m, /server="ntf-a",result="quota"} 1/);
    assert.match(m, /server="",result="unauthorized"} 1/);
  });

  it('answers malformed requests with clear HTTP errors, and publishes its seal key', async (t) => {
    const r = await rig(t);
    const session = http2.connect(r.gateway.url);
    t.after(() => session.close());
    const call = (headers: http2.OutgoingHttpHeaders, body?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const s = session.request(headers);
        let b = '';
        let status = 0;
        s.setEncoding('utf8');
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (d: string) => (b += d));
        s.on('end', () => resolve({ status, body: b }));
        s.on('error', reject);
        s.end(body);
      });
    const auth = { authorization: `Bearer ${r.key}` };
    assert.equal((await call({ ':method': 'POST', ':path': PUSH_PATH }, '{}')).status, 401);
    const bad = await call({ ':method': 'POST', ':path': PUSH_PATH, ...auth }, '{"provider":"apns"}');
    assert.equal(bad.status, 400);
    assert.match(bad.body, /bad_request/);
    assert.equal((await call({ ':method': 'POST', ':path': PUSH_PATH, ...auth }, 'x'.repeat(9000))).status, 413);
    assert.equal((await call({ ':method': 'GET', ':path': PUSH_PATH, ...auth })).status, 405);
    assert.equal((await call({ ':method': 'GET', ':path': '/nope' })).status, 404);
    const info = await call({ ':method': 'GET', ':path': INFO_PATH });
    assert.equal(info.status, 200);
    assert.deepEqual(JSON.parse(info.body), { sealKey: Buffer.from(r.sealKey.publicKey).toString('base64url'), providers: ['apns'] });
  });

  it('a gateway that is gone: retry, not lost; it delivers once it is back', async (t) => {
    const r = await rig(t);
    const c = r.client();
    const url = r.gateway.url;
    await r.gateway.stop();
    const res = await c.send(push(apnsDevice()));
    assert.equal(res.outcome, 'retry');
    const again = new GatewayServer({
      host: '127.0.0.1',
      port: Number(new URL(url).port),
      sealKey: r.sealKey,
      crypto: nodeCrypto,
      providers: [new ApnsProvider({ host: r.apns.url, ca: r.apns.ca, ...teamOf(r.apns), topic: TOPIC })],
      servers: [{ name: 'ntf-a', keyHash: keyHash(r.key), ratePerSecond: 10, burst: 10, dailyQuota: 0 }],
    });
    await again.start();
    t.after(() => again.stop());
    assert.deepEqual(await c.send(push(apnsDevice())), { outcome: 'delivered' });
  });
});

function teamOf(apns: ApnsTestServer) {
  const team = apns.keys.create();
  return { keyId: team.keyId, teamId: team.teamId, key: team.privateKey };
}
