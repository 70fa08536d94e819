// FCM: service account and OAuth access token, payload, and FcmProvider against
// the FCM test server (whose token endpoint jsonwebtoken, a JWT implementation
// nobody here wrote, also gets a token from).
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { generatePemKeyPair } from '../../src/server/identity.ts';
import { once } from 'node:events';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { createRequire } from 'node:module';
import { describe, it, type TestContext } from 'node:test';
import { type DeviceToken, PUSH_DATA_SIZE, type PushKind } from '../../src/push/device.ts';
import { FCM_SCOPE, FcmAccessToken, JWT_BEARER_GRANT, parseServiceAccount, signAssertion, loadServiceAccountKey } from '../../src/push/fcm/oauth.ts';
import { FCM_MAX_DATA, FCM_MAX_TTL_SECONDS, fcmBody, fcmDataSize, fcmMessage, fcmRegistrationToken, checkFcmTtl } from '../../src/push/fcm/payload.ts';
import { FcmProvider, parseFcmError, type FcmConfig } from '../../src/push/fcm/provider.ts';
import { DEFAULT_TTL_SECONDS, type PushRequest, type PushResult } from '../../src/push/provider.ts';
import { FcmTestServer, type FcmReply } from '../../src/push/stand-ins/fcm-server.ts';
import type { ServiceAccountJson } from '../../src/push/stand-ins/google-oauth.ts';
import { eventLog, untilEvent } from '../helpers.ts';
import { decodeJwt, providersOf, testClock } from './helpers.ts';

const KINDS: PushKind[] = ['verification', 'message', 'check'];

/** A registration token shaped like FCM's: instance ID, ':', then base64url. */
const regToken = () => `${randomBytes(16).toString('base64url')}:APA91b${randomBytes(105).toString('base64url')}`;
const device = (t: string | Uint8Array = regToken()): DeviceToken => ({ provider: 'fcm', token: typeof t === 'string' ? Buffer.from(t) : t });
const tokenOf = (d: DeviceToken) => Buffer.from(d.token).toString('utf8');
const push = (kind: PushKind = 'message', d = device()): PushRequest => ({ device: d, kind, data: randomBytes(PUSH_DATA_SIZE) });


interface Rig {
  server: FcmTestServer;
  provider: FcmProvider;
  account: ServiceAccountJson;
  clock: ReturnType<typeof testClock>;
  newProvider(over?: Partial<FcmConfig>): FcmProvider;
}

async function rig(t: TestContext, over: Partial<FcmConfig> = {}): Promise<Rig> {
  const clock = testClock();
  const server = await FcmTestServer.start({ now: () => clock.now() });
  const account = server.serviceAccount();
  const newProvider = providersOf<FcmConfig, FcmProvider>(
    t,
    server,
    (o) => new FcmProvider({ serviceAccount: account, endpoint: server.url, ca: server.ca, now: () => clock.now(), ...over, ...o }),
  );
  return { server, provider: newProvider(), account, clock, newProvider };
}



/** jsonwebtoken (auth0), installed as a dependency of @parse/node-apn; undefined if it is not there. */
interface JsonWebToken {
  sign(payload: object, key: string, opts: { algorithm: 'RS256'; keyid?: string; issuer?: string; audience?: string; expiresIn?: number }): string;
  verify(token: string, key: string | KeyObject, opts: { algorithms: string[]; audience?: string; issuer?: string; complete: true }): { header: Record<string, unknown>; payload: Record<string, unknown> };
}
const jsonwebtoken: JsonWebToken | undefined = (() => {
  try {
    return createRequire(import.meta.url)('jsonwebtoken') as JsonWebToken;
  } catch {
    return undefined;
  }
})();

/** RSA keys as KeyObjects, made through PEM (see generatePemKeyPair on why). */
function rsaKeyObjects() {
  const k = generatePemKeyPair('rsa', { modulusLength: 2048 });
  return { privateKey: createPrivateKey(k.privateKey), publicKey: createPublicKey(k.publicKey) };
}

describe('FCM service account', () => {
  const pem = generatePemKeyPair('rsa', { modulusLength: 2048 }).privateKey;
  const good = {
    type: 'service_account',
    project_id: 'hush-test',
    private_key_id: 'abc123',
    private_key: pem,
    client_email: 'sender@hush-test.iam.gserviceaccount.com',
    client_id: '1234',
    token_uri: 'https://oauth2.googleapis.com/token',
  };

  it('reads the key file as an object or as JSON text', () => {
    const sa = parseServiceAccount(good);
    assert.equal(sa.project_id, 'hush-test');
    assert.equal(sa.client_email, good.client_email);
    assert.deepEqual(parseServiceAccount(JSON.stringify(good)), sa);
  });

  it('names what is wrong, and never echoes the key', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['{not json', /not valid JSON/],
      [[good], /expected a JSON object/],
      [null, /expected a JSON object/],
      [{ ...good, type: undefined }, /"type" must be "service_account", got nothing/],
      [{ ...good, type: 'authorized_user' }, /"type" must be "service_account", got "authorized_user"/],
      [{ ...good, project_id: undefined, client_email: '' }, /missing "project_id", "client_email"/],
      [{ ...good, private_key: undefined }, /missing "private_key"/],
      [{ ...good, private_key_id: 7 }, /missing "private_key_id"/],
      [{ ...good, token_uri: undefined }, /missing "token_uri"/],
      [{ ...good, token_uri: 'oauth2.googleapis.com/token' }, /"token_uri" is not a URL/],
      [{ ...good, token_uri: 'ftp://oauth2.googleapis.com/token' }, /"token_uri" must be an https URL/],
      [{ ...good, private_key: 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC' }, /"private_key" is not a PEM private key/],
      [
        { ...good, private_key: generatePemKeyPair('ec', { namedCurve: 'prime256v1' }).privateKey },
        /"private_key" must be an RSA key/,
      ],
    ];
    for (const [input, re] of cases) {
      assert.throws(
        () => parseServiceAccount(input),
        (e: unknown) => e instanceof TypeError && re.test(e.message) && !e.message.includes('PRIVATE KEY') && !e.message.includes('MIIE'),
        `${re}`,
      );
    }
    assert.throws(() => new FcmProvider({ serviceAccount: { ...good, client_email: undefined } }), /missing "client_email"/);
  });
});

describe('FCM OAuth access token', () => {
  it('signs an RS256 JWT {alg, typ, kid} {iss, scope, aud, iat, exp = iat + 3600}', () => {
    const { privateKey, publicKey } = rsaKeyObjects();
    const sa = parseServiceAccount({
      type: 'service_account',
      project_id: 'p',
      private_key_id: 'kid-1',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: 'a@p.iam.gserviceaccount.com',
      token_uri: 'https://oauth2.googleapis.com/token',
    });
    const iat = Math.floor(Date.UTC(2030, 0, 1) / 1000);
    const jwt = signAssertion(sa, loadServiceAccountKey(sa.private_key), iat);
    const { header, claims } = decodeJwt(jwt);
    assert.deepEqual(header, { alg: 'RS256', typ: 'JWT', kid: 'kid-1' });
    assert.deepEqual(claims, { iss: sa.client_email, scope: FCM_SCOPE, aud: 'https://oauth2.googleapis.com/token', iat, exp: iat + 3600 });
    const [h, c, s] = jwt.split('.');
    assert.ok(verify('sha256', Buffer.from(`${h}.${c}`), publicKey, Buffer.from(s!, 'base64url')));
    assert.equal(FCM_SCOPE, 'https://www.googleapis.com/auth/firebase.messaging');
  });

  it('jsonwebtoken (not written here) verifies our assertion as RS256 with the right issuer and audience', (t) => {
    assert.ok(jsonwebtoken, 'jsonwebtoken (a dependency of @parse/node-apn) is installed');
    const { privateKey, publicKey } = rsaKeyObjects();
    const sa = parseServiceAccount({
      type: 'service_account',
      project_id: 'p',
      private_key_id: 'kid-2',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: 'b@p.iam.gserviceaccount.com',
      token_uri: 'https://oauth2.googleapis.com/token',
    });
    const iat = Math.floor(Date.now() / 1000);
    const jwt = signAssertion(sa, loadServiceAccountKey(sa.private_key), iat);
    const v = jsonwebtoken.verify(jwt, publicKey, { algorithms: ['RS256'], audience: sa.token_uri, issuer: sa.client_email, complete: true });
    assert.equal(v.header.kid, 'kid-2');
    assert.equal(v.payload.scope, FCM_SCOPE);
    assert.equal(v.payload.exp, iat + 3600);
  });

  it('posts the assertion to token_uri as a form (HTTP/1.1), as the test server records', async (t) => {
    const { server, provider, account, clock } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 1);
    const r = server.tokenRequests[0]!;
    assert.equal(r.status, 200);
    assert.equal(r.httpVersion, '1.1');
    assert.deepEqual(r.header, { alg: 'RS256', typ: 'JWT', kid: account.private_key_id });
    const now = Math.floor(clock.now() / 1000);
    assert.equal(r.claims!.iss, account.client_email);
    assert.equal(r.claims!.aud, account.token_uri);
    assert.equal(r.claims!.scope, FCM_SCOPE);
    assert.ok(Math.abs((r.claims!.iat as number) - now) <= 2);
    assert.equal(r.claims!.exp, (r.claims!.iat as number) + 3600);
    assert.equal(server.messages[0]!.accessToken, r.accessToken);
    assert.equal(server.messages[0]!.clientEmail, account.client_email);
    assert.equal(server.messages[0]!.httpVersion, '2.0');
  });

  it('one token for 100 concurrent sends: exactly one token request', async (t) => {
    const { server, provider } = await rig(t);
    const results = await Promise.all(Array.from({ length: 100 }, () => provider.send(push())));
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.equal(server.tokenRequests.length, 1);
    assert.equal(provider.auth.fetches, 1);
    assert.equal(new Set(server.messages.map((m) => m.accessToken)).size, 1);
    assert.equal(server.messages.length, 100);
  });

  it('renewed once fewer than 5 minutes remain: exactly one new token request for 100 sends', async (t) => {
    const { server, provider, clock } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const first = server.messages[0]!.accessToken;
    // expires_in 3599: at 54 min, 5:59 remain
    clock.offset += 54 * 60_000;
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 1);
    assert.equal(server.messages[1]!.accessToken, first);
    clock.offset += 60_000 + 1000; // 4:58 remain
    const results = await Promise.all(Array.from({ length: 100 }, () => provider.send(push())));
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.equal(server.tokenRequests.length, 2);
    const renewed = server.tokenRequests[1]!;
    assert.ok((renewed.claims!.iat as number) >= (server.tokenRequests[0]!.claims!.iat as number) + 55 * 60);
    assert.ok(server.messages.slice(2).every((m) => m.accessToken === renewed.accessToken));
    assert.notEqual(renewed.accessToken, first);
  });

  it('a failed renewal keeps using the old token while it is valid', async (t) => {
    const { server, provider, clock } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    clock.offset += 57 * 60_000;
    server.replyToTokenRequests({ status: 503 });
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 2);
    assert.equal(server.messages[1]!.accessToken, server.messages[0]!.accessToken);
    clock.offset += 6000; // past the failure hold: renewed
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 3);
    assert.notEqual(server.messages[2]!.accessToken, server.messages[0]!.accessToken);
  });

  it('invalidate(token) drops only that token', async (t) => {
    const { server, account, clock } = await rig(t);
    const auth = new FcmAccessToken({ serviceAccount: account, ca: server.ca, now: () => clock.now() });
    t.after(() => auth.close());
    const a = await auth.get();
    assert.ok(a.ok);
    auth.invalidate('some-older-token');
    const same = await auth.get();
    assert.ok(same.ok && same.token === a.token);
    auth.invalidate(a.token);
    assert.equal(auth.peek(), undefined);
    const b = await auth.get();
    assert.ok(b.ok && b.token !== a.token);
    assert.equal(server.tokenRequests.length, 2);
  });

  it('token endpoint failures: invalid_grant → failed, 5xx and network → retry', async (t) => {
    const { server, provider, account, clock, newProvider } = await rig(t);
    // a 500, then the failure is held for 5 s without new token requests
    server.replyToTokenRequests({ status: 500 });
    const r1 = await provider.send(push());
    assert.equal(r1.outcome, 'retry');
    assert.match((r1 as { reason: string }).reason, /^oauth: /);
    assert.equal((await provider.send(push())).outcome, 'retry');
    assert.equal(server.tokenRequests.length, 1);
    clock.offset += 6000;
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 2);

    // 503 with retry-after
    const p2 = newProvider();
    server.replyToTokenRequests({ status: 503, error: 'unavailable', retryAfter: 30 });
    assert.deepEqual(await p2.send(push()), { outcome: 'retry', reason: 'oauth: unavailable: Scripted failure', afterMs: 30_000 });

    // a deleted key: Google's invalid_grant, and no push goes out
    const sent = server.exchanges.length;
    server.revokeKey(account.private_key_id);
    const p3 = newProvider();
    assert.deepEqual(await p3.send(push()), { outcome: 'failed', reason: 'oauth: invalid_grant: Invalid JWT Signature.' });
    assert.equal(server.exchanges.length, sent);
    // an account the server never issued
    const stranger = { ...server.serviceAccount(), client_email: 'nobody@elsewhere.iam.gserviceaccount.com' };
    assert.deepEqual(await newProvider({ serviceAccount: stranger }).send(push()), {
      outcome: 'failed',
      reason: 'oauth: invalid_grant: Invalid grant: account not found',
    });

    // a token endpoint that is not there
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as net.AddressInfo).port;
    closed.close();
    const gone = newProvider({ serviceAccount: { ...server.serviceAccount(), token_uri: `https://127.0.0.1:${port}/token` } });
    assert.deepEqual(await gone.send(push()), { outcome: 'retry', reason: 'oauth: ECONNREFUSED' });
    // and one that never answers
    server.replyToTokenRequests({ hang: true });
    const slow = newProvider({ requestTimeoutMs: 200 });
    assert.deepEqual(await slow.send(push()), { outcome: 'retry', reason: 'oauth: timeout' });
  });
});

describe('FCM payload', () => {
  it('renders data-only messages within the 4096-byte data limit', () => {
    const token = regToken();
    for (const kind of KINDS) {
      const data = randomBytes(PUSH_DATA_SIZE);
      const m = fcmMessage(token, { kind, data });
      assert.deepEqual(Object.keys(m), ['message']);
      assert.deepEqual(Object.keys(m.message).sort(), ['android', 'data', 'token']);
      assert.deepEqual(Object.keys(m.message.data), ['d']);
      assert.deepEqual(Buffer.from(m.message.data.d, 'base64url'), data);
      assert.ok(fcmDataSize(m.message.data) <= FCM_MAX_DATA, `${fcmDataSize(m.message.data)} bytes`);
      assert.deepEqual(m.message.android, { priority: kind === 'message' ? 'high' : 'normal', ttl: `${DEFAULT_TTL_SECONDS[kind]}s` });
      assert.equal(JSON.parse(fcmBody(token, { kind, data })).message.token, token);
    }
    // verification and check look alike to Google
    const data = randomBytes(PUSH_DATA_SIZE);
    assert.deepEqual(fcmMessage(token, { kind: 'verification', data }), fcmMessage(token, { kind: 'check', data }));
    assert.equal(FCM_MAX_DATA, 4096);
  });

  it('refuses data over the limit and TTLs FCM would refuse', () => {
    assert.throws(() => fcmMessage(regToken(), { kind: 'message', data: new Uint8Array(3100) }), RangeError);
    assert.throws(() => fcmMessage(regToken(), { kind: 'check', data: new Uint8Array(16) }, { ttlSeconds: { check: FCM_MAX_TTL_SECONDS + 1 } }), RangeError);
    assert.throws(() => checkFcmTtl(1.5), RangeError);
    assert.throws(() => checkFcmTtl(-1), RangeError);
    assert.doesNotThrow(() => checkFcmTtl(0));
    assert.throws(() => new FcmProvider({ serviceAccount: {}, ttlSeconds: { message: -5 } }), RangeError);
  });

  it('reads the registration token as the UTF-8 bytes of the token string', () => {
    const t = regToken();
    assert.equal(fcmRegistrationToken(Buffer.from(t)), t);
    for (const bad of ['', 'short', 'x'.repeat(1025), `${t} `, `${t}"`, `${t}\n`, `${t}é`])
      assert.equal(fcmRegistrationToken(Buffer.from(bad)), undefined, JSON.stringify(bad.slice(-3)));
    assert.equal(fcmRegistrationToken(Buffer.concat([Buffer.from(t), Buffer.from([0xff, 0xfe])])), undefined, 'not UTF-8');
  });
});

describe('FcmProvider ↔ FCM test server', () => {
  it('delivers each kind: data d is the sealed bytes, priority and ttl per kind, no notification', async (t) => {
    const { server, provider, account } = await rig(t);
    for (const kind of KINDS) {
      const req = push(kind);
      assert.deepEqual(await provider.send(req), { outcome: 'delivered' });
      const m = server.messages.at(-1)!;
      assert.equal(m.token, tokenOf(req.device));
      assert.equal(m.projectId, account.project_id);
      assert.match(m.name, new RegExp(`^projects/${account.project_id}/messages/.+`));
      assert.deepEqual(Object.keys(m.message).sort(), ['android', 'data', 'token']);
      assert.equal(m.message.notification, undefined);
      const data = m.message.data as Record<string, string>;
      assert.deepEqual(Object.keys(data), ['d']);
      assert.deepEqual(Buffer.from(data.d!, 'base64url'), Buffer.from(req.data));
      const android = m.message.android as Record<string, unknown>;
      assert.equal(android.priority, kind === 'message' ? 'high' : 'normal');
      assert.equal(android.ttl, kind === 'message' ? '86400s' : '3600s');
      assert.equal(android.collapse_key, undefined);
    }
    assert.ok(server.exchanges.every((e) => e.status === 200));
    assert.equal(provider.projectId, account.project_id);
  });

  it('maps every FCM error to the right PushResult', async (t) => {
    const { server, provider } = await rig(t);
    const date = new Date(Date.now() + 60_000).toUTCString();
    const cases: Array<[FcmReply, PushResult | ((r: PushResult) => boolean)]> = [
      [{ errorCode: 'UNREGISTERED' }, { outcome: 'invalid', reason: 'UNREGISTERED' }],
      [{ errorCode: 'INVALID_ARGUMENT' }, { outcome: 'invalid', reason: 'BAD' }],
      [{ errorCode: 'SENDER_ID_MISMATCH' }, { outcome: 'invalid', reason: 'TOPIC' }],
      [{ errorCode: 'QUOTA_EXCEEDED' }, { outcome: 'retry', reason: 'QUOTA_EXCEEDED' }],
      [{ errorCode: 'QUOTA_EXCEEDED', retryAfter: 7 }, { outcome: 'retry', reason: 'QUOTA_EXCEEDED', afterMs: 7000 }],
      [{ errorCode: 'UNAVAILABLE', retryAfter: 3 }, { outcome: 'retry', reason: 'UNAVAILABLE', afterMs: 3000 }],
      [{ errorCode: 'UNAVAILABLE', retryAfter: date }, (r) => r.outcome === 'retry' && r.afterMs! > 50_000 && r.afterMs! <= 60_000],
      [{ errorCode: 'INTERNAL' }, { outcome: 'retry', reason: 'INTERNAL' }],
      [{ errorCode: 'THIRD_PARTY_AUTH_ERROR' }, { outcome: 'failed', reason: 'THIRD_PARTY_AUTH_ERROR' }],
      [{ status: 403 }, { outcome: 'failed', reason: 'PERMISSION_DENIED' }],
      // a 404 without FCM's UNREGISTERED is no proof the token is dead
      [{ status: 404 }, { outcome: 'failed', reason: 'NOT_FOUND' }],
      [{ status: 429 }, { outcome: 'retry', reason: 'RESOURCE_EXHAUSTED' }],
      [{ status: 502 }, { outcome: 'retry', reason: 'UNKNOWN' }],
      [{ status: 504 }, { outcome: 'retry', reason: 'DEADLINE_EXCEEDED' }],
      [{ status: 409 }, { outcome: 'failed', reason: 'ABORTED' }],
    ];
    for (const [reply, expected] of cases) {
      const req = push();
      server.replyTo(tokenOf(req.device), reply, 1);
      const r = await provider.send(req);
      if (typeof expected === 'function') assert.ok(expected(r), `${JSON.stringify(reply)} → ${JSON.stringify(r)}`);
      else assert.deepEqual(r, expected, JSON.stringify(reply));
    }
    assert.equal(server.tokenRequests.length, 1, 'THIRD_PARTY_AUTH_ERROR (a 401) does not renew the access token');

    // the same from the server's own state, not a script
    const gone = device();
    server.unregister(tokenOf(gone));
    assert.deepEqual(await provider.send(push('message', gone)), { outcome: 'invalid', reason: 'UNREGISTERED' });
    const foreign = device();
    server.bindToken(tokenOf(foreign), 'another-project');
    assert.deepEqual(await provider.send(push('check', foreign)), { outcome: 'invalid', reason: 'TOPIC' });
    // the device token survives one scripted error
    const once1 = push();
    server.replyTo(tokenOf(once1.device), { errorCode: 'UNAVAILABLE' }, 1);
    assert.equal((await provider.send(once1)).outcome, 'retry');
    assert.deepEqual(await provider.send(once1), { outcome: 'delivered' });
  });

  it('a service account of another project: 403 PERMISSION_DENIED, failed', async (t) => {
    const { server, account, newProvider } = await rig(t);
    const p = newProvider({ serviceAccount: { ...account, project_id: 'someone-elses' } });
    assert.deepEqual(await p.send(push()), { outcome: 'failed', reason: 'PERMISSION_DENIED' });
    assert.equal(server.exchanges.at(-1)!.status, 403);
    assert.equal(server.messages.length, 0);
  });

  it('401: a fresh token and one resend; a second 401 → failed', async (t) => {
    const { server, provider } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    server.replyNext({ status: 401 });
    assert.deepEqual(await provider.send(push()), { outcome: 'delivered' });
    assert.equal(server.tokenRequests.length, 2);
    const [refused, resent] = server.exchanges.slice(-2);
    assert.deepEqual([refused!.status, resent!.status], [401, 200]);
    assert.equal(refused!.accessToken, server.tokenRequests[0]!.accessToken);
    assert.equal(resent!.accessToken, server.tokenRequests[1]!.accessToken);

    server.replyNext({ status: 401 }, 2);
    assert.deepEqual(await provider.send(push()), { outcome: 'failed', reason: 'UNAUTHENTICATED' });
    assert.equal(server.tokenRequests.length, 3, 'one fresh token, not more');
    assert.deepEqual(
      server.exchanges.slice(-2).map((e) => e.status),
      [401, 401],
    );
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.tokenRequests.length, 4, 'the refused token is not used again');

    // the server forgets its tokens: 30 sends in flight are refused together, one new token serves them all
    server.revokeAccessTokens();
    const results = await Promise.all(Array.from({ length: 30 }, () => provider.send(push())));
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.equal(server.tokenRequests.length, 5);
  });

  it('an access token expired early by the server is renewed on the 401; a server clock far ahead → failed', async (t) => {
    const { server, provider } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    server.expireAccessTokens();
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.deepEqual(
      server.exchanges.map((e) => e.status),
      [200, 401, 200],
    );
    assert.equal(server.tokenRequests.length, 2);
    // two hours ahead: our token is expired there, and so is any assertion we sign
    t.mock.method(server, 'now', () => Date.now() + 2 * 3600_000);
    const r = await provider.send(push());
    assert.equal(r.outcome, 'failed');
    assert.match((r as { reason: string }).reason, /^oauth: invalid_grant: Invalid JWT: Token must be a short-lived token/);
    assert.equal(server.tokenRequests.length, 3);
  });

  it('bad registration tokens and foreign providers: no request at all', async (t) => {
    const { server, provider } = await rig(t);
    const t0 = regToken();
    for (const bad of [new Uint8Array(0), Buffer.from('abc'), Buffer.from('a'.repeat(2000)), Buffer.from(`${t0} x`), Buffer.from(`${t0}"}`), Buffer.from([0xc3, 0x28, ...Buffer.from(t0)])])
      assert.deepEqual(await provider.send(push('message', device(bad))), { outcome: 'invalid', reason: 'BAD' });
    const apns = await provider.send({ ...push(), device: { provider: 'apns', token: randomBytes(32) } });
    assert.equal(apns.outcome, 'failed');
    assert.equal(server.exchanges.length, 0);
    assert.equal(server.tokenRequests.length, 0);
  });

  it('a dropped connection with 50 in flight: each delivered or retry; the server has exactly the delivered, once each', async (t) => {
    const { server, provider } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered'); // token and connection ready
    const reqs = Array.from({ length: 50 }, () => push());
    reqs.forEach((r, i) => server.replyTo(tokenOf(r.device), i % 2 ? { status: 200, delayMs: 300 } : { status: 200 }, 1));
    const doomed = push();
    server.replyTo(tokenOf(doomed.device), { drop: true, delayMs: 50 }, 1);
    const inFlight = reqs.map((r) => provider.send(r));
    const dropped = provider.send(doomed);
    const results = await Promise.all(inFlight);
    assert.deepEqual(await dropped, { outcome: 'retry', reason: 'connection lost' });
    assert.ok(results.every((r) => r.outcome === 'delivered' || r.outcome === 'retry'), JSON.stringify(results));
    const delivered = reqs.filter((_, i) => results[i]!.outcome === 'delivered').map((r) => tokenOf(r.device));
    const recorded = server.messages.slice(1).map((m) => m.token!);
    assert.deepEqual([...recorded].sort(), [...delivered].sort());
    assert.equal(new Set(recorded).size, recorded.length, 'none twice');
    assert.ok(results.some((r) => r.outcome === 'retry'), 'the slow ones were cut');
    assert.ok(delivered.length > 0, 'the fast ones went through');
    // and the next send goes over a new connection
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.notEqual(server.messages.at(-1)!.connection, server.messages[0]!.connection);
  });

  it('a hung request → retry after requestTimeoutMs', async (t) => {
    const { server, newProvider } = await rig(t);
    const p = newProvider({ requestTimeoutMs: 200 });
    // the access token first: the OAuth fetch has the same timeout and must not be what runs out
    assert.equal((await p.send(push())).outcome, 'delivered');
    const req = push();
    server.replyTo(tokenOf(req.device), { hang: true }, 1);
    const start = performance.now();
    assert.deepEqual(await p.send(req), { outcome: 'retry', reason: 'timeout' });
    const ms = performance.now() - start;
    assert.ok(ms >= 190 && ms < 2000, `${ms} ms`);
    assert.equal((await p.send(push())).outcome, 'delivered');
  });

  it('GOAWAY: the next sends go over a new connection; in-flight ones end delivered or retry', async (t) => {
    const { log, events } = eventLog();
    const { server, provider } = await rig(t, { log });
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const first = server.messages[0]!.connection;
    server.goaway();
    await untilEvent(events, 'fcm_closed', () => provider.stats.connectionsOpen === 0);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const second = server.messages[1]!.connection;
    assert.notEqual(second, first);

    // graceful GOAWAY with a request in flight: it is still answered
    server.delayMs = 100;
    const slow = provider.send(push());
    await once(server, 'request');
    server.goaway();
    assert.equal((await slow).outcome, 'delivered');
    server.delayMs = 0;
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.ok(server.messages[3]!.connection > second);

    // GOAWAY with an error while a request hangs: retry, then a new connection
    const stuck = push();
    server.replyTo(tokenOf(stuck.device), { hang: true }, 1);
    const pending = provider.send(stuck);
    await once(server, 'request');
    server.goaway({ code: http2.constants.NGHTTP2_INTERNAL_ERROR });
    assert.equal((await pending).outcome, 'retry');
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.ok(server.messages.at(-1)!.connection > server.messages[3]!.connection);
    assert.equal(server.tokenRequests.length, 1);
  });

  it('closed: sends answer retry and nothing hangs', async (t) => {
    const { server, newProvider } = await rig(t);
    const p = newProvider();
    await p.close();
    assert.deepEqual(await p.send(push()), { outcome: 'retry', reason: 'provider closed' });
    assert.equal(server.tokenRequests.length, 0);
  });
});

describe('FCM test server', () => {
  async function raw(server: FcmTestServer, opts: { path?: string; headers?: http2.OutgoingHttpHeaders; body?: string; method?: string }) {
    const s = http2.connect(server.url, { ca: server.ca });
    try {
      const req = s.request({ ':method': opts.method ?? 'POST', ':path': opts.path ?? '/', ...opts.headers });
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (data += c));
      const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders]>;
      const closed = once(req, 'close');
      req.end(opts.body);
      const [h] = await response;
      await closed;
      return { status: Number(h[':status']), headers: h, json: data ? (JSON.parse(data) as Record<string, any>) : undefined };
    } finally {
      s.close();
    }
  }

  /** POSTs a form to /token over HTTP/1.1, as OAuth client libraries do. */
  function tokenRequest(server: FcmTestServer, form: Record<string, string>, contentType = 'application/x-www-form-urlencoded') {
    const body = new URLSearchParams(form).toString();
    return new Promise<{ status: number; json: Record<string, any> }>((resolve, reject) => {
      const req = https.request(`${server.url}/token`, { method: 'POST', ca: server.ca, agent: false, headers: { 'content-type': contentType } }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(data) }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  function jwt(header: object, claims: object, key: KeyObject): string {
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
  }

  it('token endpoint: answers as Google documents', async (t) => {
    const { server, account, clock } = await rig(t);
    const key = createPrivateKey(account.private_key);
    const now = Math.floor(clock.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', kid: account.private_key_id };
    const claims = { iss: account.client_email, scope: FCM_SCOPE, aud: account.token_uri, iat: now, exp: now + 3600 };
    const grant = (assertion: string) => ({ grant_type: JWT_BEARER_GRANT, assertion });

    const ok = await tokenRequest(server, grant(jwt(header, claims, key)));
    assert.equal(ok.status, 200);
    assert.deepEqual(Object.keys(ok.json).sort(), ['access_token', 'expires_in', 'token_type']);
    assert.equal(ok.json.expires_in, 3599);
    assert.equal(ok.json.token_type, 'Bearer');
    // without a kid: any key of the account
    assert.equal((await tokenRequest(server, grant(jwt({ alg: 'RS256', typ: 'JWT' }, claims, key)))).status, 200);

    const other = rsaKeyObjects().privateKey;
    const SHORT = /^Invalid JWT: Token must be a short-lived token \(60 minutes\)/;
    const cases: Array<[Record<string, string>, string, RegExp | string, string?]> = [
      [{ grant_type: 'client_credentials', assertion: 'x' }, 'unsupported_grant_type', 'Invalid grant_type: client_credentials'],
      [{ assertion: jwt(header, claims, key) }, 'unsupported_grant_type', 'Invalid grant_type: '],
      [{ grant_type: JWT_BEARER_GRANT }, 'invalid_request', 'Missing required parameter: assertion'],
      [grant('not.a.jwt'), 'invalid_grant', 'Invalid JWT Signature.'],
      [grant(jwt({ ...header, alg: 'HS256' }, claims, key)), 'invalid_grant', 'Invalid JWT Signature.'],
      [grant(jwt(header, claims, other)), 'invalid_grant', 'Invalid JWT Signature.'],
      [grant(jwt({ ...header, kid: 'f'.repeat(40) }, claims, key)), 'invalid_grant', 'Invalid JWT Signature.'],
      [grant(jwt(header, { ...claims, iss: 'x@y.iam.gserviceaccount.com' }, key)), 'invalid_grant', 'Invalid grant: account not found'],
      [grant(jwt(header, { ...claims, aud: 'https://oauth2.googleapis.com/token' }, key)), 'invalid_grant', 'Invalid JWT: Failed audience check.'],
      [grant(jwt(header, { ...claims, iat: now + 60, exp: now + 3660 }, key)), 'invalid_grant', SHORT],
      [grant(jwt(header, { ...claims, iat: now - 3700, exp: now - 100 }, key)), 'invalid_grant', SHORT],
      [grant(jwt(header, { ...claims, exp: now + 3601 }, key)), 'invalid_grant', SHORT],
      [grant(jwt(header, { ...claims, iat: undefined }, key)), 'invalid_grant', SHORT],
      [grant(jwt(header, { ...claims, scope: undefined }, key)), 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.'],
      [grant(jwt(header, { ...claims, scope: 'firebase.messaging' }, key)), 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.'],
    ];
    for (const [form, error, description] of cases) {
      const r = await tokenRequest(server, form);
      assert.equal(r.status, 400, JSON.stringify(form).slice(0, 120));
      assert.equal(r.json.error, error, JSON.stringify(r.json));
      if (typeof description === 'string') assert.equal(r.json.error_description, description);
      else assert.match(r.json.error_description, description);
    }
    const json = await tokenRequest(server, grant(jwt(header, claims, key)), 'application/json');
    assert.deepEqual([json.status, json.json.error], [400, 'invalid_request']);
    assert.equal(server.tokenRequests.filter((r) => r.status === 200).length, 2);

    // a token for another scope is issued, but FCM refuses it
    const storage = await tokenRequest(server, grant(jwt(header, { ...claims, scope: 'https://www.googleapis.com/auth/devstorage.read_only' }, key)));
    assert.equal(storage.status, 200);
    const r = await raw(server, {
      path: `/v1/projects/${account.project_id}/messages:send`,
      headers: { authorization: `Bearer ${storage.json.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: { token: regToken(), data: { d: 'x' } } }),
    });
    assert.deepEqual([r.status, r.json!.error.status, r.json!.error.message], [403, 'PERMISSION_DENIED', 'Request had insufficient authentication scopes.']);
  });

  it('token endpoint ↔ jsonwebtoken (a JWT signer nobody here wrote): its assertion buys a token FCM accepts', async (t) => {
    assert.ok(jsonwebtoken, 'jsonwebtoken (a dependency of @parse/node-apn) is installed');
    const { server, account } = await rig(t);
    const assertion = jsonwebtoken.sign({ scope: FCM_SCOPE }, account.private_key, {
      algorithm: 'RS256',
      keyid: account.private_key_id,
      issuer: account.client_email,
      audience: account.token_uri,
      expiresIn: 3600,
    });
    const r = await tokenRequest(server, { grant_type: JWT_BEARER_GRANT, assertion });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const token = regToken();
    const sent = await raw(server, {
      path: `/v1/projects/${account.project_id}/messages:send`,
      headers: { authorization: `Bearer ${r.json.access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ message: { token, data: { d: 'abc' }, android: { priority: 'HIGH', ttl: '3.5s' } } }),
    });
    assert.equal(sent.status, 200);
    assert.match(sent.json!.name, new RegExp(`^projects/${account.project_id}/messages/`));
    assert.equal(server.messages[0]!.token, token);
  });

  it('send endpoint: rejects what Google rejects, in Google’s error shape', async (t) => {
    const { server, provider, account } = await rig(t);
    const got = await provider.auth.get();
    assert.ok(got.ok);
    const path = `/v1/projects/${account.project_id}/messages:send`;
    const headers = { authorization: `Bearer ${got.token}`, 'content-type': 'application/json' };
    const token = regToken();
    const msg = (m: Record<string, unknown>) => JSON.stringify({ message: m });
    const good = { token, data: { d: 'abc' }, android: { priority: 'high', ttl: '86400s' } };
    assert.equal((await raw(server, { path, headers, body: msg(good) })).status, 200);
    // what our provider sends is accepted, for every kind
    for (const kind of KINDS) assert.equal((await raw(server, { path, headers, body: fcmBody(token, { kind, data: randomBytes(PUSH_DATA_SIZE) }) })).status, 200);
    const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`k${i}`, 'v'.repeat(820)]));

    type Case = [string, { path?: string; headers?: http2.OutgoingHttpHeaders; body?: string; method?: string }, number, string, string?, string?];
    const cases: Case[] = [
      ['no auth', { path, headers: { 'content-type': 'application/json' }, body: msg(good) }, 401, 'UNAUTHENTICATED'],
      ['unknown token', { path, headers: { ...headers, authorization: 'Bearer ya29.nope' }, body: msg(good) }, 401, 'UNAUTHENTICATED'],
      ['not bearer', { path, headers: { ...headers, authorization: `Basic ${got.token}` }, body: msg(good) }, 401, 'UNAUTHENTICATED'],
      ['other project', { path: '/v1/projects/other/messages:send', headers, body: msg(good) }, 403, 'PERMISSION_DENIED'],
      ['bad path', { path: `/v1/projects/${account.project_id}/messages`, headers, body: msg(good) }, 404, 'NOT_FOUND'],
      ['GET', { path, headers, method: 'GET' }, 404, 'NOT_FOUND'],
      ['form body', { path, headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: 'message=x' }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'],
      ['not JSON', { path, headers, body: '{"message":' }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', ''],
      ['unknown top-level', { path, headers, body: JSON.stringify({ message: good, extra: 1 }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', ''],
      ['unknown field', { path, headers, body: msg({ ...good, priority: 'high' }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message'],
      ['no target', { path, headers, body: msg({ data: { d: 'x' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message'],
      ['two targets', { path, headers, body: msg({ ...good, topic: 'news' }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message'],
      ['bad token', { path, headers, body: msg({ ...good, token: 'not a token' }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.token'],
      ['data number', { path, headers, body: msg({ ...good, data: { d: 'x', n: 12 } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.data[1].value'],
      ['data nested', { path, headers, body: msg({ ...good, data: { d: { x: 1 } } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.data[0].value'],
      ['reserved key', { path, headers, body: msg({ ...good, data: { from: 'me' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.data'],
      ['google key', { path, headers, body: msg({ ...good, data: { 'google.x': 'y' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.data'],
      ['data too big', { path, headers, body: msg({ ...good, data: big }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'],
      ['topic data too big', { path, headers, body: msg({ topic: 'news', data: { d: 'x'.repeat(2100) } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'],
      ['priority', { path, headers, body: msg({ ...good, android: { priority: 'urgent' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android.priority'],
      ['ttl unit', { path, headers, body: msg({ ...good, android: { ttl: '1h' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android.ttl'],
      ['ttl number', { path, headers, body: msg({ ...good, android: { ttl: 3600 } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android.ttl'],
      ['ttl negative', { path, headers, body: msg({ ...good, android: { ttl: '-1s' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android.ttl'],
      ['ttl > 4 weeks', { path, headers, body: msg({ ...good, android: { ttl: '2419201s' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android.ttl'],
      ['android unknown', { path, headers, body: msg({ ...good, android: { prio: 'high' } }) }, 400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'message.android'],
    ];
    for (const [name, req, status, canonical, errorCode, field] of cases) {
      const r = await raw(server, req);
      assert.equal(r.status, status, name);
      const e = r.json!.error;
      assert.deepEqual([e.code, e.status, typeof e.message], [status, canonical, 'string'], name);
      const fcm = (e.details ?? []).find((d: any) => d['@type'] === 'type.googleapis.com/google.firebase.fcm.v1.FcmError');
      assert.equal(fcm?.errorCode, errorCode, name);
      const violation = (e.details ?? []).find((d: any) => d['@type'] === 'type.googleapis.com/google.rpc.BadRequest');
      assert.equal(violation?.fieldViolations[0].field, field, name);
      if (status === 401) assert.match(String(r.headers['www-authenticate']), /^Bearer realm=/, name);
    }
    // valid variants: a topic, decimals in ttl, normal priority, upper-case enum names
    for (const m of [
      { topic: 'news', data: { a: 'b' } },
      { ...good, android: { ttl: '0.5s', priority: 'normal' } },
      { ...good, android: { priority: 'NORMAL', collapse_key: 'c' } },
      { ...good, data: undefined, notification: { title: 't' } },
    ])
      assert.equal((await raw(server, { path, headers, body: msg(m) })).status, 200, JSON.stringify(m).slice(0, 80));
    assert.equal(server.messages.length, 8);
    // our provider reads those bodies as it should
    const e = parseFcmError(JSON.stringify({ error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.android.ttl' }] }] } }));
    assert.deepEqual(e, { status: 'INVALID_ARGUMENT', fields: ['message.android.ttl'] });
  });

  it('the send endpoint speaks HTTP/1.1 too', async (t) => {
    const { server, provider, account } = await rig(t);
    const got = await provider.auth.get();
    assert.ok(got.ok);
    const token = regToken();
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request(
        `${server.url}/v1/projects/${account.project_id}/messages:send`,
        { method: 'POST', ca: server.ca, agent: false, headers: { authorization: `Bearer ${got.token}`, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        },
      );
      req.on('error', reject);
      req.end(fcmBody(token, { kind: 'message', data: randomBytes(PUSH_DATA_SIZE) }));
    });
    assert.equal(status, 200);
    assert.equal(server.messages[0]!.httpVersion, '1.1');
  });
});
