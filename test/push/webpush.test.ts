// Web Push: RFC 8291 encryption (Appendix A vectors, http_ece both ways), the
// subscription token, VAPID, WebPushProvider against the Web Push test server,
// and that server against web-push (a client nobody here wrote) and against
// hand-made bad requests.
import assert from 'node:assert/strict';
import { isPublicAddress, NOT_PUBLIC, publicOnlyLookup } from '../../src/server/address-guard.ts';
import { createCipheriv, createECDH, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { generatePemKeyPair } from '../../src/server/identity.ts';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import webpush from 'web-push';
import { type DeviceToken, MAX_DEVICE_TOKEN, PUSH_DATA_SIZE, type PushKind } from '../../src/push/device.ts';
import { DEFAULT_TTL_SECONDS, type PushRequest } from '../../src/push/provider.ts';
import { WebPushTestServer, type WebPushTestServerOptions } from '../../src/push/stand-ins/webpush-server.ts';
import {
  decryptWebPush,
  deriveWebPushKeys,
  encryptWebPush,
  HEADER_LENGTH,
  MAX_WEBPUSH_PLAINTEXT,
  WebPushDecryptError,
} from '../../src/push/webpush/ece.ts';
import { MESSAGE_TOPIC, WebPushProvider, type WebPushConfig } from '../../src/push/webpush/provider.ts';
import {
  decodeWebPushSubscription,
  encodeWebPushSubscription,
  MAX_ENDPOINT,
  MAX_WEBPUSH_TOKEN,
  webPushSubscriptionJSON,
  type WebPushSubscriptionJSON,
} from '../../src/push/webpush/subscription.ts';
import { createVapidKey, loadVapidKey, MAX_VAPID_LIFETIME_SECONDS, VapidSigner } from '../../src/push/webpush/vapid.ts';
import { eventLog, untilEvent } from '../helpers.ts';
import { decodeJwt, providersOf, testClock } from './helpers.ts';

const require = createRequire(import.meta.url);
/** http_ece (npm, the Mozilla implementation) has no types. */
const httpEce = require('http_ece') as {
  encrypt(b: Buffer, p: { version: 'aes128gcm'; privateKey: ReturnType<typeof createECDH>; dh: Buffer; authSecret: Buffer; rs?: number }): Buffer;
  decrypt(b: Buffer, p: { version: 'aes128gcm'; privateKey: ReturnType<typeof createECDH>; authSecret: Buffer }): Buffer;
};

const b64 = (s: string) => Buffer.from(s, 'base64url');
const KINDS: PushKind[] = ['verification', 'message', 'check'];
const SUBJECT = 'mailto:ops@hush.example';

// ---- RFC 8291 Appendix A
const V = {
  plaintext: Buffer.from('When I grow up, I want to be a watermelon'),
  asPriv: b64('yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw'),
  asPub: b64('BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8'),
  uaPriv: b64('q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94'),
  uaPub: b64('BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4'),
  auth: b64('BTBZMqHH6r4Tts7J_aSIgg'),
  salt: b64('DGv6ra1nlYgDCS1FRnbzlw'),
  ecdh: b64('kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs'),
  prkKey: b64('Snr3JMxaHVDXHWJn5wdC52WjpCtd2EIEGBykDcZW32k'),
  ikm: b64('S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg'),
  prk: b64('09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc'),
  cek: b64('oIhVW04MRdy2XN9CiKLxTg'),
  nonce: b64('4h_95klXJ5E_qnoN'),
  body: b64(
    'DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN',
  ),
};

/** A user agent's keys, as a browser makes them. */
function uaKeys() {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return { ecdh, pub: ecdh.getPublicKey(), priv: ecdh.getPrivateKey(), auth: randomBytes(16) };
}

/** A body built by hand around any padded record content (to test what our encoder never makes). */
function handmadeBody(ua: ReturnType<typeof uaKeys>, padded: Buffer, opts: { rs?: number; idlen?: number } = {}): Buffer {
  const as = createECDH('prime256v1');
  as.generateKeys();
  const salt = randomBytes(16);
  const { cek, nonce } = deriveWebPushKeys({ ecdhSecret: as.computeSecret(ua.pub), authSecret: ua.auth, uaPublic: ua.pub, asPublic: as.getPublicKey(), salt });
  const c = createCipheriv('aes-128-gcm', cek, nonce);
  const ct = Buffer.concat([c.update(padded), c.final(), c.getAuthTag()]);
  const rs = Buffer.alloc(4);
  rs.writeUInt32BE(opts.rs ?? 4096);
  return Buffer.concat([salt, rs, Buffer.of(opts.idlen ?? 65), as.getPublicKey(), ct]);
}

describe('RFC 8291 aes128gcm', () => {
  it('reproduces the Appendix A body byte for byte, and its key schedule', () => {
    const body = encryptWebPush({ plaintext: V.plaintext, uaPublic: V.uaPub, authSecret: V.auth, salt: V.salt, asKeyPair: { privateKey: V.asPriv }, recordSize: 4096 });
    assert.equal(body.length, 144);
    assert.equal(Buffer.from(body).toString('base64url'), V.body.toString('base64url'));

    const as = createECDH('prime256v1');
    as.setPrivateKey(V.asPriv);
    assert.deepEqual(as.getPublicKey(), V.asPub);
    const ecdhSecret = as.computeSecret(V.uaPub);
    assert.deepEqual(ecdhSecret, V.ecdh);
    const k = deriveWebPushKeys({ ecdhSecret, authSecret: V.auth, uaPublic: V.uaPub, asPublic: V.asPub, salt: V.salt });
    assert.deepEqual(Buffer.from(k.prkKey), V.prkKey);
    assert.deepEqual(Buffer.from(k.ikm), V.ikm);
    assert.deepEqual(Buffer.from(k.prk), V.prk);
    assert.deepEqual(Buffer.from(k.cek), V.cek);
    assert.deepEqual(Buffer.from(k.nonce), V.nonce);
  });

  it('decrypts the Appendix A body, with the raw key or an ECDH object', () => {
    assert.deepEqual(Buffer.from(decryptWebPush(V.body, { uaPrivate: V.uaPriv, uaPublic: V.uaPub, authSecret: V.auth })), V.plaintext);
    const ua = createECDH('prime256v1');
    ua.setPrivateKey(V.uaPriv);
    assert.deepEqual(Buffer.from(decryptWebPush(V.body, { uaPrivate: ua, uaPublic: V.uaPub, authSecret: V.auth })), V.plaintext);
  });

  it('round-trips with http_ece (written by others), both ways', () => {
    for (const plaintext of [V.plaintext, randomBytes(PUSH_DATA_SIZE), randomBytes(MAX_WEBPUSH_PLAINTEXT), Buffer.alloc(0)]) {
      const ua = uaKeys();
      const ours = encryptWebPush({ plaintext, uaPublic: ua.pub, authSecret: ua.auth });
      assert.deepEqual(httpEce.decrypt(Buffer.from(ours), { version: 'aes128gcm', privateKey: ua.ecdh, authSecret: ua.auth }), plaintext);

      const as = createECDH('prime256v1');
      as.generateKeys();
      const theirs = httpEce.encrypt(plaintext, { version: 'aes128gcm', privateKey: as, dh: ua.pub, authSecret: ua.auth });
      assert.deepEqual(Buffer.from(decryptWebPush(theirs, { uaPrivate: ua.priv, uaPublic: ua.pub, authSecret: ua.auth })), plaintext);
    }
  });

  it('uses a fresh key pair and salt per message, and a body of header + plaintext + 17', () => {
    const ua = uaKeys();
    const data = randomBytes(PUSH_DATA_SIZE);
    const a = Buffer.from(encryptWebPush({ plaintext: data, uaPublic: ua.pub, authSecret: ua.auth }));
    const b = Buffer.from(encryptWebPush({ plaintext: data, uaPublic: ua.pub, authSecret: ua.auth }));
    assert.equal(a.length, HEADER_LENGTH + PUSH_DATA_SIZE + 17);
    assert.equal(a.length, 2179);
    assert.notDeepEqual(a.subarray(0, 16), b.subarray(0, 16), 'salt');
    assert.notDeepEqual(a.subarray(21, 86), b.subarray(21, 86), 'ephemeral key');
    assert.equal(a.readUInt32BE(16), 4096);
    assert.equal(a[20], 65);
  });

  it('refuses what it cannot send in one 4096-byte-bounded record', () => {
    const ua = uaKeys();
    assert.throws(() => encryptWebPush({ plaintext: randomBytes(MAX_WEBPUSH_PLAINTEXT + 1), uaPublic: ua.pub, authSecret: ua.auth }), RangeError);
    assert.throws(() => encryptWebPush({ plaintext: randomBytes(100), uaPublic: ua.pub, authSecret: ua.auth, recordSize: 116 }), RangeError);
    assert.ok(encryptWebPush({ plaintext: randomBytes(100), uaPublic: ua.pub, authSecret: ua.auth, recordSize: 117 }));
    const offCurve = Buffer.from(ua.pub);
    offCurve[64]! ^= 1;
    assert.throws(() => encryptWebPush({ plaintext: randomBytes(10), uaPublic: offCurve, authSecret: ua.auth }), TypeError);
    assert.throws(() => encryptWebPush({ plaintext: randomBytes(10), uaPublic: ua.pub, authSecret: randomBytes(15) }), TypeError);
  });

  it('decrypts strictly, with a clear reason', () => {
    const ua = uaKeys();
    const keys = { uaPrivate: ua.priv, uaPublic: ua.pub, authSecret: ua.auth };
    const good = Buffer.from(encryptWebPush({ plaintext: randomBytes(200), uaPublic: ua.pub, authSecret: ua.auth }));
    const fails = (body: Uint8Array, re: RegExp) =>
      assert.throws(() => decryptWebPush(body, keys), (e: unknown) => e instanceof WebPushDecryptError && re.test(e.message));

    fails(good.subarray(0, 85), /shorter than the aes128gcm header/);
    fails(good.subarray(0, HEADER_LENGTH + 16), /shorter than a delimiter and a tag/);
    const tag = Buffer.from(good);
    tag[tag.length - 1]! ^= 1;
    fails(tag, /tag mismatch/);
    const ct = Buffer.from(good);
    ct[HEADER_LENGTH + 3]! ^= 1;
    fails(ct, /tag mismatch/);
    const idlen = Buffer.from(good);
    idlen[20] = 64;
    fails(idlen, /keyid length 64/);
    const rs = Buffer.from(good);
    rs.writeUInt32BE(17, 16);
    fails(rs, /record size 17/);
    const short = Buffer.from(good);
    short.writeUInt32BE(100, 16); // the record (217 bytes) is longer than rs: a second record follows
    fails(short, /more than one record/);
    const keyid = Buffer.from(good);
    keyid[85]! ^= 1;
    fails(keyid, /not a point on P-256/);
    const other = uaKeys();
    assert.throws(() => decryptWebPush(good, { uaPrivate: other.priv, uaPublic: other.pub, authSecret: other.auth }), /tag mismatch/);
    assert.throws(() => decryptWebPush(good, { ...keys, authSecret: randomBytes(16) }), /tag mismatch/);

    // several records (http_ece with a small rs), and hand-made delimiters
    const as = createECDH('prime256v1');
    as.generateKeys();
    fails(httpEce.encrypt(randomBytes(100), { version: 'aes128gcm', privateKey: as, dh: ua.pub, authSecret: ua.auth, rs: 50 }), /more than one record/);
    fails(handmadeBody(ua, Buffer.from([7, 7, 1])), /not marked as the last/);
    fails(handmadeBody(ua, Buffer.from([7, 7, 3, 0])), /bad padding delimiter/);
    fails(handmadeBody(ua, Buffer.alloc(5)), /no padding delimiter/);
    assert.deepEqual(Buffer.from(decryptWebPush(handmadeBody(ua, Buffer.from([7, 7, 2, 0, 0, 0])), keys)), Buffer.from([7, 7]));
  });
});

// ---- the subscription token

const someKeys = () => {
  const ua = uaKeys();
  return { p256dh: ua.pub.toString('base64url'), auth: ua.auth.toString('base64url') };
};

describe('Web Push subscription token', () => {
  it('round-trips PushSubscription.toJSON() through the DeviceToken bytes', () => {
    const json: WebPushSubscriptionJSON = { endpoint: 'https://fcm.googleapis.com/fcm/send/abc:APA91b-x_y', keys: someKeys() };
    const bytes = encodeWebPushSubscription(json);
    assert.equal(bytes.length, 1 + 65 + 1 + 16 + json.endpoint.length);
    const d = decodeWebPushSubscription(bytes);
    assert.ok(d.ok);
    assert.equal(d.value.endpoint, json.endpoint);
    assert.deepEqual(Buffer.from(d.value.p256dh), b64(json.keys.p256dh));
    assert.deepEqual(Buffer.from(d.value.auth), b64(json.keys.auth));
    assert.deepEqual(webPushSubscriptionJSON(d.value), json);
    // padded base64 (older browsers) is the same key
    const padded = encodeWebPushSubscription({ ...json, keys: { p256dh: json.keys.p256dh, auth: `${json.keys.auth}==` } });
    assert.deepEqual(padded, bytes);
    assert.ok(MAX_WEBPUSH_TOKEN <= MAX_DEVICE_TOKEN);
    const longest = encodeWebPushSubscription({ endpoint: `https://x.example/${'a'.repeat(MAX_ENDPOINT - 18)}`, keys: json.keys });
    assert.equal(longest.length, MAX_WEBPUSH_TOKEN);
  });

  it('takes https: anywhere and http: on loopback only; refuses bad endpoints and keys', () => {
    const keys = someKeys();
    const ok = (endpoint: string) => decodeWebPushSubscription(encodeWebPushSubscription({ endpoint, keys })).ok;
    assert.ok(ok('https://updates.push.services.mozilla.com/wpush/v2/gAAAA'));
    assert.ok(ok('http://127.0.0.1:8080/UP?token=x'));
    assert.ok(ok('http://localhost/up/1'));
    assert.ok(ok('http://[::1]:2586/up'));
    for (const endpoint of [
      'http://push.example.com/x',
      'http://10.0.0.1/x',
      'ftp://push.example.com/x',
      '/push/relative',
      'https://push.example.com/a b',
      'https://push.example.com/é',
      'https://user:pw@push.example.com/x',
      'https://push.example.com/x#frag',
      `https://push.example.com/${'a'.repeat(MAX_ENDPOINT)}`,
      '',
    ])
      assert.throws(() => encodeWebPushSubscription({ endpoint, keys }), TypeError, endpoint);
    const endpoint = 'https://push.example.com/x';
    const ua = uaKeys();
    const offCurve = Buffer.from(ua.pub);
    offCurve[64]! ^= 1;
    for (const k of [
      { p256dh: ua.pub.subarray(0, 64).toString('base64url'), auth: keys.auth },
      { p256dh: Buffer.concat([Buffer.of(2), ua.pub.subarray(1, 33)]).toString('base64url'), auth: keys.auth },
      { p256dh: offCurve.toString('base64url'), auth: keys.auth },
      { p256dh: keys.p256dh, auth: randomBytes(15).toString('base64url') },
      { p256dh: keys.p256dh, auth: 'not base64!' },
    ])
      assert.throws(() => encodeWebPushSubscription({ endpoint, keys: k }), TypeError);
  });

  const raw = (p256dh: Uint8Array, auth: Uint8Array, endpoint: Uint8Array) =>
    Buffer.concat([Buffer.of(p256dh.length), p256dh, Buffer.of(auth.length), auth, endpoint]);
  const validKey = uaKeys().pub;

  it('decoding never throws on random bytes, and finds nothing valid in them', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        const r = decodeWebPushSubscription(bytes);
        assert.equal(r.ok, false);
      }),
      { numRuns: 2000 },
    );
    // structured: right lengths, random endpoint bytes — valid only if https: or loopback http:
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ maxLength: 1100 }), (auth, endpoint) => {
        const r = decodeWebPushSubscription(raw(validKey, auth, endpoint));
        if (r.ok) assert.match(r.value.endpoint, /^https:|^http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/);
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects non-https endpoints, wrong key sizes and over-long endpoints (properties)', () => {
    const auth = randomBytes(16);
    const enc = (s: string) => Buffer.from(s, 'latin1');
    // (fc.domain()/fc.webPath() would do, but take a second per hundred)
    const label = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'), minLength: 1, maxLength: 12 });
    const host = fc.array(label, { minLength: 1, maxLength: 3 }).map((a) => `${a.join('.')}.example`);
    const path = fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~/%?=&:;@!$'), maxLength: 80 }).map((x) => `/${x}`);
    fc.assert(
      fc.property(fc.constantFrom('http', 'ftp', 'ws', 'wss', 'file', 'data', 'javascript'), host, path, (scheme, h, p) => {
        assert.equal(decodeWebPushSubscription(raw(validKey, auth, enc(`${scheme}://${h}${p}`))).ok, false);
      }),
    );
    fc.assert(
      fc.property(host, path, (h, p) => {
        const url = `https://${h}${p}`;
        fc.pre(url.length <= MAX_ENDPOINT && /^[\x21-\x7e]+$/.test(url));
        assert.equal(decodeWebPushSubscription(raw(validKey, auth, enc(url))).ok, true);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 40 }), (pl, al) => {
        fc.pre(pl !== 65 || al !== 16);
        const p = Buffer.concat([validKey, validKey]).subarray(0, pl);
        assert.equal(decodeWebPushSubscription(raw(p, randomBytes(al), enc('https://push.example/x'))).ok, false);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: MAX_ENDPOINT + 1, max: 1900 }), (n) => {
        const url = `https://push.example/${'a'.repeat(n - 21)}`;
        assert.equal(url.length, n);
        assert.equal(decodeWebPushSubscription(raw(validKey, auth, enc(url))).ok, false);
      }),
      { numRuns: 50 },
    );
  });
});

// ---- VAPID

const parseAuthorization = (a: string) => {
  const m = /^vapid t=([^,\s]+), k=([^,\s]+)$/.exec(a);
  assert.ok(m, a);
  return { t: m[1]!, k: m[2]! };
};


describe('VAPID', () => {
  it('signs {aud, exp, sub} with ES256 under k, caches per audience, renews past half its life', () => {
    const clock = testClock();
    const key = createVapidKey();
    const s = new VapidSigner({ privateKey: key.privateKey, subject: SUBJECT, now: clock.now });
    assert.equal(s.publicKey, key.publicKey);
    const aud = 'https://push.example.net';
    const a = s.authorization(aud);
    const { t, k } = parseAuthorization(a);
    assert.equal(k, key.publicKey);
    const { header, claims } = decodeJwt(t);
    assert.deepEqual(header, { typ: 'JWT', alg: 'ES256' });
    assert.equal(claims.aud, aud);
    assert.equal(claims.sub, SUBJECT);
    assert.equal(claims.exp, Math.floor(clock.now() / 1000) + 12 * 3600);
    const [h, c, sig] = t.split('.');
    const pub = b64(k);
    const jwk = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') }, format: 'jwk' });
    assert.ok(verify('sha256', Buffer.from(`${h}.${c}`), { key: jwk, dsaEncoding: 'ieee-p1363' }, b64(sig!)));

    assert.equal(s.authorization(aud), a);
    assert.notEqual(s.authorization('https://fcm.googleapis.com'), a);
    assert.equal(s.signatures, 2);
    clock.offset += 6 * 3600 * 1000 - 1000;
    assert.equal(s.authorization(aud), a, 'more than half its life left');
    clock.offset += 2000;
    const renewed = s.authorization(aud);
    assert.notEqual(renewed, a);
    assert.equal(s.signatures, 3);
    assert.equal(decodeJwt(parseAuthorization(renewed).t).claims.exp, Math.floor(clock.now() / 1000) + 12 * 3600);
    s.invalidate(aud);
    assert.notEqual(s.authorization(aud), renewed);
    assert.throws(() => s.authorization('https://push.example.net/path'), TypeError);
  });

  it('loads PEM, KeyObject and raw base64url keys; refuses bad keys, subjects and lifetimes', () => {
    const { privateKey, publicKey } = createVapidKey();
    const d = createPrivateKey(privateKey).export({ format: 'jwk' }).d!;
    assert.equal(loadVapidKey(privateKey).publicKeyB64, publicKey);
    assert.equal(loadVapidKey(createPrivateKey(privateKey)).publicKeyB64, publicKey);
    assert.equal(loadVapidKey(d).publicKeyB64, publicKey);
    assert.equal(b64(publicKey).length, 65);
    const wp = webpush.generateVAPIDKeys();
    assert.equal(loadVapidKey(wp.privateKey).publicKeyB64, wp.publicKey);
    assert.throws(() => loadVapidKey('not a key'), TypeError);
    assert.throws(() => loadVapidKey(generatePemKeyPair('ed25519').privateKey), TypeError);
    assert.throws(() => loadVapidKey(generatePemKeyPair('ec', { namedCurve: 'secp384r1' }).privateKey), TypeError);
    for (const subject of ['', 'ops@hush.example', 'mailto:', 'mailto:ops@localhost', 'http://hush.example', 'https://'])
      assert.throws(() => new VapidSigner({ privateKey, subject }), TypeError, subject);
    assert.ok(new VapidSigner({ privateKey, subject: 'https://hush.example/contact' }));
    assert.throws(() => new VapidSigner({ privateKey, subject: SUBJECT, lifetimeSeconds: MAX_VAPID_LIFETIME_SECONDS + 1 }), RangeError);
    assert.ok(new VapidSigner({ privateKey, subject: SUBJECT, lifetimeSeconds: MAX_VAPID_LIFETIME_SECONDS }));
  });
});

// ---- provider ↔ test server

interface Rig {
  server: WebPushTestServer;
  provider: WebPushProvider;
  vapid: { privateKey: string; publicKey: string };
  clock: ReturnType<typeof testClock>;
  newProvider(over?: Partial<WebPushConfig>): WebPushProvider;
  /** A subscription made by the test server's "browser", as a DeviceToken. */
  device(opts?: { applicationServerKey?: string }): DeviceToken & { json: WebPushSubscriptionJSON };
}

async function rig(t: TestContext, serverOpts: WebPushTestServerOptions = {}, over: Partial<WebPushConfig> = {}): Promise<Rig> {
  const clock = testClock();
  const server = await WebPushTestServer.start({ now: () => clock.now(), ...serverOpts });
  const vapid = createVapidKey();
  const newProvider = providersOf<WebPushConfig, WebPushProvider>(
    t,
    server,
    (o) =>
      new WebPushProvider({ vapid: { privateKey: vapid.privateKey, subject: SUBJECT }, ca: server.ca, allowPrivateNetworks: true, now: () => clock.now(), ...over, ...o }),
  );
  const provider = newProvider();
  const device = (opts: { applicationServerKey?: string } = { applicationServerKey: vapid.publicKey }) => {
    const json = server.subscribe(opts);
    return { provider: 'webpush' as const, token: encodeWebPushSubscription(json), json };
  };
  return { server, provider, vapid, clock, newProvider, device };
}

const push = (device: DeviceToken, kind: PushKind = 'message'): PushRequest => ({ device, kind, data: randomBytes(PUSH_DATA_SIZE) });

describe('WebPushProvider ↔ Web Push test server', () => {
  it('refuses endpoints on loopback and private networks unless allowed (no SSRF by subscription)', async (t) => {
    const r = await rig(t);
    const strict = r.newProvider({ allowPrivateNetworks: false });
    const refused = { outcome: 'failed', reason: 'endpoint is not on a public network' };
    assert.deepEqual(await strict.send(push(r.device())), refused);
    const json = r.server.subscribe({ applicationServerKey: r.vapid.publicKey });
    for (const host of ['localhost', '[::1]', '10.1.2.3', '192.168.0.9', '169.254.169.254'])
      assert.deepEqual(await strict.send(push({ provider: 'webpush', token: encodeWebPushSubscription({ ...json, endpoint: json.endpoint.replace('127.0.0.1', host) }) })), refused, host);
    assert.equal(r.server.messages.length, 0, 'nothing reached the push service');
    // names are checked after resolution: one that resolves to loopback is refused when connecting
    const viaName = await new Promise<string>((resolve) => publicOnlyLookup('localhost', {}, (err) => resolve(err?.code ?? 'resolved')));
    assert.equal(viaName, NOT_PUBLIC);
    for (const ip of ['8.8.8.8', '2606:4700::1111']) assert.equal(isPublicAddress(ip), true, ip);
    for (const ip of ['127.0.0.1', '::1', '::ffff:10.0.0.1', 'fd00::1', 'fe80::1', '100.64.0.1', '0.0.0.0', 'not-an-ip']) assert.equal(isPublicAddress(ip), false, ip);
  });

  it('delivers each kind: the push data decrypts at the browser; TTL, Urgency, Topic as designed', async (t) => {
    const r = await rig(t);
    const d = r.device();
    for (const kind of KINDS) {
      const req = push(d, kind);
      assert.deepEqual(await r.provider.send(req), { outcome: 'delivered' });
      const m = r.server.messages.at(-1)!;
      assert.equal(m.endpoint, d.json.endpoint);
      assert.equal(Buffer.from(m.plaintext).toString(), Buffer.from(req.data).toString('base64url'));
      assert.equal(m.ttl, DEFAULT_TTL_SECONDS[kind]);
      assert.equal(m.headers.ttl, String(DEFAULT_TTL_SECONDS[kind]));
      assert.equal(m.urgency, kind === 'message' ? 'high' : 'normal');
      assert.equal(m.topic, kind === 'message' ? MESSAGE_TOPIC : undefined);
      assert.equal(m.headers['content-encoding'], 'aes128gcm');
      assert.equal(m.headers['content-type'], 'application/octet-stream');
      assert.equal(m.headers['content-length'], '2871');
      assert.equal(m.headers.authorization, undefined);
      assert.equal(m.vapid?.key, r.vapid.publicKey);
      assert.equal(m.vapid?.claims.aud, r.server.url);
      assert.equal(m.vapid?.claims.sub, SUBJECT);
    }
    assert.equal(r.server.messages.length, 3);
    // verification and check look alike to the push service
    const [v, , c] = r.server.messages;
    const strip = (h: Record<string, string>) => ({ ...h, 'content-length': '' });
    assert.deepEqual(strip(v!.headers), strip(c!.headers));

    const custom = r.newProvider({ ttlSeconds: { message: 60, check: 0 } });
    await custom.send(push(d, 'message'));
    await custom.send(push(d, 'check'));
    assert.deepEqual(
      r.server.messages.slice(-2).map((m) => m.ttl),
      [60, 0],
    );
  });

  it('reuses one VAPID JWT and few connections across many pushes, and renews the JWT past half its life', async (t) => {
    const r = await rig(t, {}, { maxSockets: 4 });
    const devices = [r.device(), r.device(), r.device()];
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => r.provider.send(push(devices[i % 3]!))));
    assert.ok(results.every((x) => x.outcome === 'delivered'));
    const tokens = new Set(r.server.messages.map((m) => m.vapid!.token));
    assert.equal(tokens.size, 1);
    assert.equal(r.provider.vapid.signatures, 1);
    assert.equal(r.server.counts.verified, 1, 'the server verified the one JWT once');
    assert.ok(r.server.connectionsAccepted <= 4, `${r.server.connectionsAccepted} connections for maxSockets 4`);
    const before = r.server.connectionsAccepted;
    for (let i = 0; i < 10; i++) assert.equal((await r.provider.send(push(devices[0]!))).outcome, 'delivered');
    assert.equal(r.server.connectionsAccepted, before, 'sequential pushes reuse a kept-alive connection');

    r.clock.offset += 6 * 3600 * 1000 + 1000;
    assert.equal((await r.provider.send(push(devices[0]!))).outcome, 'delivered');
    const last = r.server.messages.at(-1)!.vapid!;
    assert.ok(!tokens.has(last.token), 'renewed');
    assert.equal(last.claims.exp, Math.floor(r.clock.now() / 1000) + 12 * 3600);
    assert.equal(r.provider.vapid.signatures, 2);
  });

  it('maps push service answers to PushResults', async (t) => {
    const r = await rig(t);
    const d = r.device();
    const cases: Array<[{ status: number; retryAfter?: number | string; reason?: string }, unknown]> = [
      [{ status: 201 }, { outcome: 'delivered' }],
      [{ status: 202 }, { outcome: 'delivered' }],
      [{ status: 200 }, { outcome: 'delivered' }],
      [{ status: 404 }, { outcome: 'invalid', reason: 'UNREGISTERED' }],
      [{ status: 410 }, { outcome: 'invalid', reason: 'EXPIRED' }],
      [{ status: 413 }, { outcome: 'failed', reason: 'PayloadTooLarge' }],
      [{ status: 429, retryAfter: 7 }, { outcome: 'retry', afterMs: 7000 }],
      [{ status: 500 }, { outcome: 'retry' }],
      [{ status: 503, retryAfter: new Date(r.clock.now() + 30_000).toUTCString() }, { outcome: 'retry' }],
      [{ status: 401, reason: 'no vapid' }, { outcome: 'failed' }],
      [{ status: 403, reason: 'bad key' }, { outcome: 'failed' }],
      [{ status: 400, reason: 'UnauthorizedRegistration' }, { outcome: 'failed' }],
      [{ status: 301 }, { outcome: 'failed' }],
    ];
    for (const [reply, want] of cases) {
      r.server.replyNext(reply);
      const got = await r.provider.send(push(d));
      for (const [k, v] of Object.entries(want as object)) assert.deepEqual((got as Record<string, unknown>)[k], v, `${JSON.stringify(reply)} → ${JSON.stringify(got)}`);
      if (got.outcome === 'retry' && !('retryAfter' in reply)) assert.equal(got.afterMs, undefined);
      if (reply.status === 503) assert.ok(got.outcome === 'retry' && got.afterMs! > 25_000 && got.afterMs! <= 30_000, JSON.stringify(got));
      if (reply.status === 400) assert.match((got as { reason: string }).reason, /HTTP 400.*UnauthorizedRegistration/);
      if (reply.status === 301) assert.match((got as { reason: string }).reason, /redirect not followed/);
    }
    assert.equal(r.server.messages.length, 3, 'only the 2xx answers were deliveries');

    // the real thing: unsubscribed → 410, unknown → 404, locked to another key → 403
    const gone = r.device();
    r.server.unsubscribe(gone.json.endpoint);
    assert.deepEqual(await r.provider.send(push(gone)), { outcome: 'invalid', reason: 'EXPIRED' });
    const forgotten = r.device();
    r.server.forget(forgotten.json.endpoint);
    assert.deepEqual(await r.provider.send(push(forgotten)), { outcome: 'invalid', reason: 'UNREGISTERED' });
    const foreign = r.device({ applicationServerKey: createVapidKey().publicKey });
    const refused = await r.provider.send(push(foreign));
    assert.equal(refused.outcome, 'failed');
    assert.match((refused as { reason: string }).reason, /^HTTP 403/);
    assert.equal((await r.provider.send(push(r.device({})))).outcome, 'delivered', 'an unlocked subscription takes our VAPID too');
  });

  it('speaks HTTP/2 to a push service that offers it: 50 pushes at once over one connection', async (t) => {
    const r = await rig(t);
    const results = await Promise.all(Array.from({ length: 50 }, () => r.provider.send(push(r.device()))));
    assert.ok(results.every((x) => x.outcome === 'delivered'));
    // (the ALPN probe's connection carries no request, so it is not counted)
    assert.equal(r.server.connectionsAccepted, 1);
    assert.equal(new Set(r.server.messages.map((m) => m.connection)).size, 1);
    assert.ok(r.server.messages.every((m) => m.headers[':method'] === 'POST'), 'HTTP/2 pseudo-headers: the request came over h2');
  });

  it('a dropped connection: retry, nothing recorded; the next push goes through', async (t) => {
    const { log, events } = eventLog();
    const open = new Set<unknown>(); // the provider's connections, by the pool's log
    events.on('webpush_connected', (e: { conn: unknown }) => open.add(e.conn));
    events.on('webpush_closed', (e: { conn: unknown }) => open.delete(e.conn));
    const r = await rig(t, {}, { log });
    const d = r.device();
    r.server.replyNext({ drop: true });
    const res = await r.provider.send(push(d));
    assert.equal(res.outcome, 'retry');
    assert.match((res as { reason: string }).reason, /^(network: |connection lost)/);
    assert.equal(r.server.messages.length, 0);
    assert.equal((await r.provider.send(push(d))).outcome, 'delivered');
    assert.equal(r.server.messages.length, 1);

    // connections cut between pushes are replaced
    assert.ok(open.size > 0, 'the last push went over a connection the pool logged');
    r.server.dropConnections();
    await untilEvent(events, 'webpush_closed', () => open.size === 0);
    assert.equal((await r.provider.send(push(d))).outcome, 'delivered');
  });

  it('a request never answered resolves as retry after requestTimeoutMs', async (t) => {
    const r = await rig(t, {}, { requestTimeoutMs: 250 });
    const d = r.device();
    r.server.replyNext({ hang: true });
    const t0 = Date.now();
    assert.deepEqual(await r.provider.send(push(d)), { outcome: 'retry', reason: 'timeout' });
    const took = Date.now() - t0;
    assert.ok(took >= 240 && took < 1000, `${took} ms`);
    assert.equal(r.server.messages.length, 0);
    assert.equal((await r.provider.send(push(d))).outcome, 'delivered');

    // nobody listening: a network error, as retry
    const port = r.server.port;
    const dead = { provider: 'webpush' as const, token: encodeWebPushSubscription({ endpoint: `http://127.0.0.1:${port === 1 ? 2 : 1}/push/x`, keys: someKeys() }) };
    const res = await r.provider.send(push(dead));
    assert.equal(res.outcome, 'retry');
    assert.match((res as { reason: string }).reason, /ECONNREFUSED/);
  });

  it('bad subscription bytes and foreign tokens are refused without a request', async (t) => {
    const r = await rig(t);
    const good = r.device();
    const bad = Buffer.from(good.token);
    bad[0] = 64;
    assert.deepEqual(await r.provider.send(push({ provider: 'webpush', token: bad })), { outcome: 'invalid', reason: 'BAD' });
    assert.deepEqual(await r.provider.send(push({ provider: 'webpush', token: randomBytes(200) })), { outcome: 'invalid', reason: 'BAD' });
    const plain = Buffer.concat([Buffer.from(good.token).subarray(0, 83), Buffer.from('http://push.example.com/x')]);
    assert.deepEqual(await r.provider.send(push({ provider: 'webpush', token: plain })), { outcome: 'invalid', reason: 'BAD' });
    assert.equal((await r.provider.send(push({ provider: 'fcm', token: good.token }))).outcome, 'failed');
    assert.equal(r.server.exchanges.length, 0);
  });

  it('UnifiedPush-style: a plain-http loopback endpoint works', async (t) => {
    const r = await rig(t, { tls: false });
    assert.match(r.server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const d = r.device();
    assert.match(d.json.endpoint, /^http:\/\/127\.0\.0\.1:\d+\/push\//);
    const req = push(d, 'message');
    assert.deepEqual(await r.provider.send(req), { outcome: 'delivered' });
    assert.equal(Buffer.from(r.server.messages[0]!.plaintext).toString(), Buffer.from(req.data).toString('base64url'));
    assert.equal(r.server.messages[0]!.vapid?.claims.aud, r.server.url);
  });

  it('against the push service alone (decrypt: false, record: false): accepted and counted, not read', async (t) => {
    const r = await rig(t, { decrypt: false, record: false });
    const d = r.device();
    const seen: number[] = [];
    r.server.on('message', (m) => seen.push(m.plaintext.length));
    const results = await Promise.all(Array.from({ length: 20 }, () => r.provider.send(push(d))));
    assert.ok(results.every((x) => x.outcome === 'delivered'));
    assert.deepEqual(seen, new Array(20).fill(0));
    assert.equal(r.server.messages.length, 0);
    assert.equal(r.server.counts.accepted, 20);
    assert.equal(r.server.counts.verified, 1);
  });

  it('close(): pushes in flight resolve as retry, later ones too', async (t) => {
    const r = await rig(t);
    const d = r.device();
    r.server.replyNext({ hang: true });
    const inFlight = r.provider.send(push(d));
    await untilEvent(r.server, 'request', () => r.server.pending === 1);
    await r.provider.close();
    assert.deepEqual(await inFlight, { outcome: 'retry', reason: 'provider closed' });
    assert.deepEqual(await r.provider.send(push(d)), { outcome: 'retry', reason: 'provider closed' });
    assert.equal(r.provider.stats.origins, 0);
  });
});

// ---- the test server against web-push and hand-made requests

describe('Web Push test server ↔ web-push (a client nobody here wrote)', () => {
  it('decrypts what web-push sends; a subscription locked to another key refuses it (403), no VAPID (401)', async (t) => {
    const server = await WebPushTestServer.start();
    const agent = new https.Agent({ ca: server.ca });
    t.after(async () => {
      agent.destroy();
      await server.close();
    });
    const keys = webpush.generateVAPIDKeys();
    const vapidDetails = { subject: SUBJECT, publicKey: keys.publicKey, privateKey: keys.privateKey };
    const sub = server.subscribe({ applicationServerKey: keys.publicKey });
    const payload = randomBytes(PUSH_DATA_SIZE);
    const res = await webpush.sendNotification(sub, payload, { vapidDetails, agent, TTL: 120, urgency: 'high', topic: 'abc' });
    assert.equal(res.statusCode, 201);
    assert.match(String(res.headers.location), /\/m\//);
    const m = server.messages[0]!;
    assert.deepEqual(Buffer.from(m.plaintext), payload);
    assert.equal(m.ttl, 120);
    assert.equal(m.urgency, 'high');
    assert.equal(m.topic, 'abc');
    assert.equal(m.vapid?.key, keys.publicKey);

    const other = server.subscribe({ applicationServerKey: webpush.generateVAPIDKeys().publicKey });
    await assert.rejects(webpush.sendNotification(other, 'hi', { vapidDetails, agent }), (e: { statusCode?: number }) => e.statusCode === 403);
    await assert.rejects(webpush.sendNotification(sub, 'hi', { vapidDetails: null, agent } as unknown as webpush.RequestOptions), (e: { statusCode?: number }) => e.statusCode === 401);
    assert.equal(server.messages.length, 1);
    // and what we send, web-push's subscription format reads back (toJSON shape)
    assert.deepEqual(webPushSubscriptionJSON((decodeWebPushSubscription(encodeWebPushSubscription(sub)) as { ok: true; value: never }).value), sub);
  });
});

/** Signs a JWT with any header and claims (to make bad ones). */
function jwt(key: KeyObject, header: object, claims: object): string {
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc(header)}.${enc(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function post(server: WebPushTestServer, path: string, headers: Record<string, string | undefined>, body: Uint8Array, method = 'POST'): Promise<RawResponse> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) h[k] = v;
  return new Promise((resolve, reject) => {
    const req = https.request(`${server.url}${path}`, { method, headers: h, ca: server.ca, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('Web Push test server', () => {
  it('refuses requests as RFC 8030/8291/8292 say', async (t) => {
    const clock = testClock();
    const server = await WebPushTestServer.start({ now: () => clock.now() });
    t.after(() => server.close());
    const vapid = createVapidKey();
    const vkey = createPrivateKey(vapid.privateKey);
    const sub = server.subscribe({ applicationServerKey: vapid.publicKey });
    const open = server.subscribe();
    const path = (s: WebPushSubscriptionJSON) => new URL(s.endpoint).pathname;
    const body = (s: WebPushSubscriptionJSON, n = 100, o: { asKeyPair?: { privateKey: Uint8Array } } = {}) =>
      encryptWebPush({ plaintext: randomBytes(n), uaPublic: b64(s.keys.p256dh), authSecret: b64(s.keys.auth), ...o });
    const nowS = () => Math.floor(clock.now() / 1000);
    const goodClaims = () => ({ aud: server.url, exp: nowS() + 3600, sub: SUBJECT });
    const auth = (claims: object = goodClaims(), header: object = { typ: 'JWT', alg: 'ES256' }, key = vkey, k = vapid.publicKey) =>
      `vapid t=${jwt(key, header, claims)}, k=${k}`;
    const headers = (over: Record<string, string | undefined> = {}) => ({
      ttl: '60',
      'content-encoding': 'aes128gcm',
      'content-type': 'application/octet-stream',
      authorization: auth(),
      ...over,
    });
    const expect = async (status: number, reason: RegExp | undefined, h: Record<string, string | undefined>, b: Uint8Array = body(sub), p = path(sub), method = 'POST') => {
      const res = await post(server, p, h, b, method);
      assert.equal(res.status, status, `${JSON.stringify(h).slice(0, 120)} → ${res.status} ${res.body}`);
      if (reason) assert.match(JSON.parse(res.body).reason, reason);
      return res;
    };

    // the good request, then each fault alone
    const ok = await expect(201, undefined, headers());
    assert.equal(ok.headers.ttl, '60');
    assert.match(String(ok.headers.location), new RegExp(`^${server.url}/m/`));
    assert.equal(server.messages.length, 1);
    await expect(201, undefined, headers({ authorization: undefined }), body(open), path(open));
    await expect(201, undefined, headers({ ttl: '0', urgency: 'very-low', topic: 'A'.repeat(32) }));

    await expect(405, /method/, headers(), body(sub), path(sub), 'PUT');
    await expect(404, /no such subscription/, headers(), body(sub), '/push/nope');
    await expect(404, /no such subscription/, headers(), body(sub), '/elsewhere');
    await expect(400, /TTL header required/, headers({ ttl: undefined }));
    for (const ttl of ['-1', 'abc', '1.5', '', '60, 60']) await expect(400, /TTL/, headers({ ttl }));
    for (const urgency of ['urgent', 'HIGH', '']) await expect(400, /Urgency/, headers({ urgency }));
    for (const topic of ['A'.repeat(33), 'a+b', 'a=', 'x y', '']) await expect(400, /Topic/, headers({ topic }));
    const e415 = await expect(415, /aes128gcm/, headers({ 'content-encoding': 'aesgcm' }));
    assert.equal(e415.headers['accept-encoding'], 'aes128gcm');
    await expect(415, /aes128gcm/, headers({ 'content-encoding': undefined }));
    await expect(413, /4096/, headers(), Buffer.concat([body(sub, MAX_WEBPUSH_PLAINTEXT), Buffer.of(0)]));
    await expect(201, undefined, headers(), body(sub, MAX_WEBPUSH_PLAINTEXT)); // exactly 4096 bytes must pass (RFC 8030 §7.2)
    await expect(400, /empty body/, headers(), new Uint8Array(0));
    const tampered = Buffer.from(body(sub));
    tampered[tampered.length - 1]! ^= 1;
    await expect(400, /undecryptable: authentication tag/, headers(), tampered);
    await expect(400, /undecryptable/, headers(), body(open), path(sub)); // encrypted for another subscription

    // VAPID (RFC 8292): locked → absent 401; everything else 403
    await expect(401, /required/, headers({ authorization: undefined }));
    await expect(401, /required/, headers({ authorization: `WebPush ${jwt(vkey, { alg: 'ES256' }, goodClaims())}` }));
    await expect(403, /not the one/, headers({ authorization: (() => {
      const other = createVapidKey();
      return auth(goodClaims(), undefined, createPrivateKey(other.privateKey), other.publicKey);
    })() }));
    await expect(403, /aud/, headers({ authorization: auth({ ...goodClaims(), aud: 'https://push.example.net' }) }));
    await expect(403, /aud/, headers({ authorization: auth({ exp: nowS() + 60, sub: SUBJECT }) }));
    await expect(403, /expired/, headers({ authorization: auth({ ...goodClaims(), exp: nowS() - 1 }) }));
    await expect(403, /exp missing/, headers({ authorization: auth({ aud: server.url, sub: SUBJECT }) }));
    await expect(403, /24 h/, headers({ authorization: auth({ ...goodClaims(), exp: nowS() + MAX_VAPID_LIFETIME_SECONDS + 60 }) }));
    await expect(201, undefined, headers({ authorization: auth({ ...goodClaims(), exp: nowS() + MAX_VAPID_LIFETIME_SECONDS - 5 }) }));
    await expect(403, /sub/, headers({ authorization: auth({ aud: server.url, exp: nowS() + 60 }) }));
    await expect(403, /sub/, headers({ authorization: auth({ ...goodClaims(), sub: 'ops@hush.example' }) }));
    await expect(403, /alg/, headers({ authorization: auth(goodClaims(), { typ: 'JWT', alg: 'HS256' }) }));
    const signed = auth();
    const badSig = signed.replace(/\.([A-Za-z0-9_-]+), k=/, (_m, s: string) => `.${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}, k=`);
    assert.notEqual(badSig, signed);
    await expect(403, /signature/, headers({ authorization: badSig }));
    await expect(403, /t and k/, headers({ authorization: `vapid t=${jwt(vkey, { alg: 'ES256' }, goodClaims())}` }));
    await expect(403, /malformed/, headers({ authorization: 'vapid t=a.b.c k=x' }));
    await expect(403, /malformed/, headers({ authorization: `${auth()}, t=again` }));
    await expect(403, /k is not/, headers({ authorization: `vapid t=${jwt(vkey, { alg: 'ES256' }, goodClaims())}, k=AAAA` }));
    await expect(403, /aud/, headers({ authorization: auth({ ...goodClaims(), aud: 'https://push.example.net' }) }), body(open), path(open)); // unlocked: still checked
    // RFC 8292 §3.2: the signing key must not be the encryption key
    const raw = b64(vkey.export({ format: 'jwk' }).d!);
    await expect(400, /equals the encryption key/, headers(), body(sub, 100, { asKeyPair: { privateKey: raw } }));
    // quoted parameter values and extra parameters are fine
    await expect(201, undefined, headers({ authorization: `VAPID t="${jwt(vkey, { typ: 'JWT', alg: 'ES256' }, goodClaims())}",k=${vapid.publicKey}, x=1` }));

    // unsubscribed: 410
    server.unsubscribe(sub.endpoint);
    await expect(410, /gone/, headers());
    assert.equal(server.messages.length, 6);
    assert.ok(server.exchanges.some((e) => e.status === 403));
  });
});
