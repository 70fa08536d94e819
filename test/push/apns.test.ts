// APNs: payload and provider token, and ApnsProvider against the APNs test server
// (which @parse/node-apn, a client nobody here wrote, also talks to).
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter, once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { setImmediate } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import apn from '@parse/node-apn';
import { type DeviceToken, PUSH_DATA_SIZE, type PushKind } from '../../src/push/device.ts';
import { ApnsJwt, DEFAULT_REFRESH_MS } from '../../src/push/apns/jwt.ts';
import { alertFits, APNS_MAX_PAYLOAD, apnsBody, apnsBodyBytes, DEFAULT_ALERT, renderApns } from '../../src/push/apns/payload.ts';
import { ApnsProvider, type ApnsConfig } from '../../src/push/apns/provider.ts';
import { retryAfterMs } from '../../src/push/outcome.ts';
import type { PushRequest, PushResult } from '../../src/push/provider.ts';
import { ApnsTestServer, createApnsKey, type ApnsReply, type ApnsTeamKey } from '../../src/push/stand-ins/apns-server.ts';
import { CaptureProvider } from '../../src/push/stand-ins/capture-provider.ts';
import { createProviders } from '../../src/push/config.ts';
import { loadNtfConfig } from '../../src/ntf/config.ts';
import { ConfigError } from '../../src/server/config.ts';
import { eventLog, tmpDir, untilEvent } from '../helpers.ts';
import { decodeJwt, providersOf, testClock } from './helpers.ts';

const TOPIC = 'chat.hush.app';
const KINDS: PushKind[] = ['verification', 'message', 'check'];

const device = (bytes = 32): DeviceToken => ({ provider: 'apns', token: randomBytes(bytes) });
const hex = (d: DeviceToken) => Buffer.from(d.token).toString('hex');
const push = (kind: PushKind = 'message', d = device()): PushRequest => ({ device: d, kind, data: randomBytes(PUSH_DATA_SIZE) });


interface Rig {
  server: ApnsTestServer;
  provider: ApnsProvider;
  team: ApnsTeamKey;
  clock: ReturnType<typeof testClock>;
  newProvider(over?: Partial<ApnsConfig>): ApnsProvider;
  /** What the providers' connections do (`apns_closed`, …). */
  pool: EventEmitter;
}

async function rig(t: TestContext, over: Partial<ApnsConfig> = {}): Promise<Rig> {
  const clock = testClock();
  const server = await ApnsTestServer.start({ topics: [TOPIC], now: () => clock.now() });
  const team = server.keys.create();
  const { log, events: pool } = eventLog();
  const newProvider = providersOf<ApnsConfig, ApnsProvider>(t, server, (o) =>
    new ApnsProvider({
      host: server.url,
      ca: server.ca,
      keyId: team.keyId,
      teamId: team.teamId,
      key: team.privateKey,
      topic: TOPIC,
      serves: ['apns'],
      now: () => clock.now(),
      log,
      ...over,
      ...o,
    }),
  );
  return { server, provider: newProvider(), team, clock, newProvider, pool };
}



describe('APNs payload', () => {
  it('renders each kind within 4096 bytes, with the right shape and headers', () => {
    const now = Date.UTC(2030, 0, 1);
    for (const kind of KINDS) {
      const data = randomBytes(PUSH_DATA_SIZE);
      const { headers, body } = renderApns({ kind, data }, { topic: TOPIC, now: () => now });
      assert.ok(Buffer.byteLength(body) <= APNS_MAX_PAYLOAD, `${kind}: ${Buffer.byteLength(body)} bytes`);
      const json = JSON.parse(body.toString('utf8'));
      assert.deepEqual(Buffer.from(json.d, 'base64url'), data);
      assert.equal(headers['apns-topic'], TOPIC);
      const exp = Number(headers['apns-expiration']) - now / 1000;
      if (kind === 'message') {
        assert.deepEqual(json.aps, { alert: DEFAULT_ALERT, 'mutable-content': 1, category: 'MESSAGE' });
        assert.equal(headers['apns-push-type'], 'alert');
        assert.equal(headers['apns-priority'], '10');
        assert.equal(exp, 86400);
      } else {
        assert.deepEqual(json.aps, { 'content-available': 1 });
        assert.equal(headers['apns-push-type'], 'background');
        assert.equal(headers['apns-priority'], '5');
        assert.ok(exp > 0 && exp < 86400);
      }
      // Verification and check look alike to Apple: no collapse ID, the same lifetime.
      assert.equal(headers['apns-collapse-id'], undefined);
      if (kind !== 'message') assert.equal(exp, 3600);
      assert.deepEqual(Object.keys(json).sort(), ['aps', 'd']);
    }
  });

  it('is exactly the UTF-8 of JSON.stringify of its object, for any alert text', () => {
    for (const alert of [DEFAULT_ALERT, { title: 'Élise 👋', body: 'a "quoted" \\ line\nnext' }])
      for (const kind of KINDS) {
        const data = randomBytes(PUSH_DATA_SIZE);
        const bytes = apnsBodyBytes({ kind, data }, alert);
        const body = bytes.toString('utf8');
        const aps =
          kind === 'message' ? { alert: { title: alert.title, body: alert.body }, 'mutable-content': 1, category: 'MESSAGE' } : { 'content-available': 1 };
        assert.equal(body, JSON.stringify({ aps, d: data.toString('base64url') }));
        assert.deepEqual(bytes, Buffer.from(JSON.stringify({ aps, d: data.toString('base64url') })));
      }
  });

  it('refuses an alert that would not fit; alertFits says so beforehand, to the byte', () => {
    const data = new Uint8Array(PUSH_DATA_SIZE);
    assert.throws(() => apnsBody({ kind: 'message', data }, { title: 'x'.repeat(2000), body: 'y' }), RangeError);
    assert.equal(alertFits(DEFAULT_ALERT), true);
    let n = 1;
    while (alertFits({ title: 'é'.repeat(n + 1), body: 'y' })) n++; // two UTF-8 bytes each
    assert.ok(apnsBody({ kind: 'message', data }, { title: 'é'.repeat(n), body: 'y' }));
    assert.throws(() => apnsBody({ kind: 'message', data }, { title: 'é'.repeat(n + 1), body: 'y' }), RangeError);
    assert.throws(() => new ApnsProvider({ host: 'https://127.0.0.1:1', keyId: 'K', teamId: 'T', key: createApnsKey().privateKey, topic: TOPIC, alert: { title: 'é'.repeat(n + 1), body: 'y' } }), /too long/);
  });
});

describe('APNs provider token', () => {
  it('is an ES256 JWT {alg, kid} {iss, iat}, cached, renewed after the refresh age and after invalidate()', () => {
    const k = createApnsKey();
    let now = Date.UTC(2030, 0, 1, 12);
    const jwt = new ApnsJwt({ keyId: k.keyId, teamId: k.teamId, key: k.privateKey, now: () => now });
    const t1 = jwt.token;
    const { header, claims } = decodeJwt(t1);
    assert.deepEqual(header, { alg: 'ES256', kid: k.keyId });
    assert.deepEqual(claims, { iss: k.teamId, iat: now / 1000 });
    const [h, c, s] = t1.split('.');
    assert.ok(verify('sha256', Buffer.from(`${h}.${c}`), { key: createPublicKey(k.publicKey), dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url')));
    now += DEFAULT_REFRESH_MS - 1000;
    assert.equal(jwt.token, t1, 'reused before the refresh age');
    now += 2000;
    const t2 = jwt.token;
    assert.notEqual(t2, t1, 'renewed after the refresh age');
    assert.equal(decodeJwt(t2).claims.iat, Math.floor(now / 1000));
    jwt.invalidate(t1); // a stale rejection: keeps the newer token
    assert.equal(jwt.token, t2);
    jwt.invalidate(t2);
    assert.notEqual(jwt.token, t2);
    assert.equal(jwt.generation, 3);
    assert.throws(() => new ApnsJwt({ keyId: 'K', teamId: 'T', key: k.privateKey, refreshAfterMs: 10 * 60_000 }), RangeError);
    assert.throws(() => new ApnsJwt({ keyId: 'K', teamId: 'T', key: k.privateKey, refreshAfterMs: 61 * 60_000 }), RangeError);
  });
});

describe('ApnsProvider ↔ APNs test server', () => {
  it('delivers each kind with the right path, headers and body', async (t) => {
    const { server, provider, team } = await rig(t);
    for (const kind of KINDS) {
      const req = push(kind);
      assert.deepEqual(await provider.send(req), { outcome: 'delivered' });
      const p = server.pushes.at(-1)!;
      assert.equal(p.token, hex(req.device));
      assert.equal(p.headers['apns-topic'], TOPIC);
      assert.equal(p.headers['apns-push-type'], kind === 'message' ? 'alert' : 'background');
      assert.equal(p.headers['apns-priority'], kind === 'message' ? '10' : '5');
      assert.equal(p.headers['apns-collapse-id'], undefined);
      const ttl = Number(p.headers['apns-expiration']) - Date.now() / 1000;
      assert.ok(kind === 'message' ? Math.abs(ttl - 86400) < 5 : ttl > 60 && ttl < 86400, `${kind} ttl ${ttl}`);
      assert.deepEqual(Buffer.from(p.payload.d as string, 'base64url'), Buffer.from(req.data));
      assert.equal(p.payload.aps['mutable-content'], kind === 'message' ? 1 : undefined);
      assert.equal(p.payload.aps['content-available'], kind === 'message' ? undefined : 1);
      assert.equal(p.jwt.kid, team.keyId);
      assert.equal(p.jwt.iss, team.teamId);
    }
    assert.equal(server.connectionsAccepted, 1);
    assert.ok(server.exchanges.every((e) => e.status === 200 && /^[0-9a-f-]{36}$/.test(e.apnsId)));
  });

  it('maps every APNs error to the right PushResult', async (t) => {
    const { server, provider } = await rig(t);
    const cases: Array<[ApnsReply, PushResult]> = [
      [{ status: 400, reason: 'BadDeviceToken' }, { outcome: 'invalid', reason: 'BAD' }],
      [{ status: 400, reason: 'DeviceTokenNotForTopic' }, { outcome: 'invalid', reason: 'TOPIC' }],
      [{ status: 410, reason: 'Unregistered' }, { outcome: 'invalid', reason: 'UNREGISTERED' }],
      [{ status: 410, reason: 'ExpiredToken' }, { outcome: 'invalid', reason: 'EXPIRED' }],
      [{ status: 413, reason: 'PayloadTooLarge' }, { outcome: 'failed', reason: 'PayloadTooLarge' }],
      [{ status: 429, reason: 'TooManyRequests' }, { outcome: 'retry', reason: 'TooManyRequests' }],
      [{ status: 429, reason: 'TooManyRequests', retryAfter: 7 }, { outcome: 'retry', reason: 'TooManyRequests', afterMs: 7000 }],
      [{ status: 500, reason: 'InternalServerError' }, { outcome: 'retry', reason: 'InternalServerError' }],
      [{ status: 503, reason: 'ServiceUnavailable', retryAfter: 3 }, { outcome: 'retry', reason: 'ServiceUnavailable', afterMs: 3000 }],
      [{ status: 400, reason: 'BadTopic' }, { outcome: 'failed', reason: 'BadTopic' }],
      [{ status: 400, reason: 'BadCollapseId' }, { outcome: 'failed', reason: 'BadCollapseId' }],
      [{ status: 403, reason: 'Forbidden' }, { outcome: 'failed', reason: 'Forbidden' }],
      [{ status: 405, reason: 'MethodNotAllowed' }, { outcome: 'failed', reason: 'MethodNotAllowed' }],
    ];
    for (const [reply, expected] of cases) {
      const req = push();
      server.replyTo(hex(req.device), reply, 1);
      assert.deepEqual(await provider.send(req), expected, JSON.stringify(reply));
    }
    // the device token survives one scripted error: the next push to it goes through
    const req = push();
    server.replyTo(hex(req.device), { status: 410, reason: 'Unregistered' }, 1);
    await provider.send(req);
    assert.deepEqual(await provider.send(req), { outcome: 'delivered' });
    assert.equal(server.exchanges.at(-2)!.status, 410);
  });

  it('rejects implausible APNs tokens and foreign providers without sending', async (t) => {
    const { server, provider } = await rig(t);
    assert.deepEqual(await provider.send(push('message', device(16))), { outcome: 'invalid', reason: 'BAD' });
    assert.deepEqual(await provider.send(push('message', device(101))), { outcome: 'invalid', reason: 'BAD' });
    assert.deepEqual(await provider.send(push('message', device(0))), { outcome: 'invalid', reason: 'BAD' });
    const fcm = await provider.send({ ...push(), device: { provider: 'fcm', token: randomBytes(32) } });
    assert.equal(fcm.outcome, 'failed');
    const sandbox = await provider.send({ ...push(), device: { provider: 'apns-sandbox', token: randomBytes(32) } });
    assert.equal(sandbox.outcome, 'failed');
    assert.equal(server.exchanges.length, 0);
    // the test server itself refuses a token that is not 64 hex digits
    assert.deepEqual(await provider.send(push('message', device(40))), { outcome: 'invalid', reason: 'BAD' });
    assert.equal(server.exchanges.at(-1)!.reason, 'BadDeviceToken');
  });

  it('reuses one JWT and renews it after the refresh age', async (t) => {
    const { server, provider, clock } = await rig(t);
    for (let i = 0; i < 3; i++) assert.equal((await provider.send(push())).outcome, 'delivered');
    clock.offset += 49 * 60_000;
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const first = server.pushes.map((p) => p.jwt.token);
    assert.equal(new Set(first).size, 1, 'one token for all requests');
    clock.offset += 2 * 60_000; // 51 min after the first: past the default 50
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const renewed = server.pushes.at(-1)!.jwt;
    assert.notEqual(renewed.token, first[0]);
    assert.ok(renewed.iat >= server.pushes[0]!.jwt.iat + 51 * 60);
    assert.equal(provider.jwt.generation, 2);
  });

  it('renews the JWT after 403 ExpiredProviderToken and sends again once', async (t) => {
    const { server, provider } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    const before = server.pushes[0]!.jwt.token;
    const req = push();
    server.replyTo(hex(req.device), { status: 403, reason: 'ExpiredProviderToken' }, 1);
    assert.deepEqual(await provider.send(req), { outcome: 'delivered' });
    assert.deepEqual(
      server.exchanges.map((e) => e.status),
      [200, 403, 200],
    );
    assert.notEqual(server.pushes[1]!.jwt.token, before, 'sent again with a new token');
    assert.equal(provider.jwt.generation, 2);
    // a server that keeps calling it expired (its clock two hours ahead): one resend, then retry
    t.mock.method(server, 'now', () => Date.now() + 2 * 3600_000);
    const r = await provider.send(push());
    assert.equal(r.outcome, 'retry');
    assert.deepEqual(
      server.exchanges.slice(3).map((e) => e.reason),
      ['ExpiredProviderToken', 'ExpiredProviderToken'],
    );
  });

  it('a key Apple does not know: InvalidProviderToken, one resend, then failed', async (t) => {
    const { server, newProvider } = await rig(t);
    const stranger = createApnsKey();
    const p = newProvider({ keyId: stranger.keyId, teamId: stranger.teamId, key: stranger.privateKey });
    assert.deepEqual(await p.send(push()), { outcome: 'failed', reason: 'InvalidProviderToken' });
    assert.equal(server.exchanges.length, 2);
    assert.equal(p.jwt.generation, 2);
    const wrongTopic = newProvider({ topic: 'com.example.other' });
    assert.deepEqual(await wrongTopic.send(push()), { outcome: 'failed', reason: 'TopicDisallowed' });
  });

  it('GOAWAY: the next sends use a new connection; in-flight requests end as delivered or retry', async (t) => {
    const { server, provider, pool } = await rig(t);
    assert.equal((await provider.send(push())).outcome, 'delivered');

    // graceful GOAWAY while idle
    server.goaway({ reason: 'Shutdown' });
    await untilEvent(pool, 'apns_closed', () => provider.stats.connectionsOpen === 0);
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.connectionsAccepted, 2);

    // graceful GOAWAY with a request in flight: it is still answered
    server.delayMs = 100;
    const slow = provider.send(push());
    await once(server, 'request');
    server.goaway({ reason: 'Shutdown' });
    assert.equal((await slow).outcome, 'delivered');
    server.delayMs = 0;
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.connectionsAccepted, 3);

    // GOAWAY with an error while a request hangs: it comes back as retry
    const stuck = push();
    server.replyTo(hex(stuck.device), { hang: true }, 1);
    const pending = provider.send(stuck);
    await once(server, 'request');
    server.goaway({ code: http2.constants.NGHTTP2_INTERNAL_ERROR, reason: 'InternalServerError' });
    assert.equal((await pending).outcome, 'retry');
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.connectionsAccepted, 4);
  });

  it('a dropped connection: the in-flight request yields retry, the next ones go through', async (t) => {
    const { server, provider } = await rig(t);
    const doomed = push();
    server.replyTo(hex(doomed.device), { drop: true }, 1);
    const others = Array.from({ length: 20 }, () => push());
    for (const o of others) server.replyTo(hex(o.device), { status: 200, delayMs: 200 }, 1);
    const inFlight = others.map((o) => provider.send(o));
    await untilEvent(server, 'request', () => server.pending === 20);
    assert.deepEqual(await provider.send(doomed), { outcome: 'retry', reason: 'connection lost' });
    const results = await Promise.all(inFlight);
    assert.ok(results.every((r) => r.outcome === 'retry'), 'every request on the dead connection is a retry, none lost');
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.connectionsAccepted, 2);

    // cut from the server side while requests hang
    const hung = [push(), push()];
    for (const h of hung) server.replyTo(hex(h.device), { hang: true }, 1);
    const waiting = hung.map((h) => provider.send(h));
    await untilEvent(server, 'request', () => server.pending === 2);
    server.dropConnections();
    assert.deepEqual(
      (await Promise.all(waiting)).map((r) => r.outcome),
      ['retry', 'retry'],
    );
    assert.equal((await provider.send(push())).outcome, 'delivered');
    assert.equal(server.connectionsAccepted, 3);
  });

  it('a reset stream and a GOAWAY on the request: retry, and the push goes through when sent again', async (t) => {
    const { server, provider } = await rig(t);
    const reset = push();
    server.replyTo(hex(reset.device), { reset: true }, 1);
    assert.deepEqual(await provider.send(reset), { outcome: 'retry', reason: 'stream reset (2)' });
    assert.deepEqual(await provider.send(reset), { outcome: 'delivered' });
    assert.equal(server.connectionsAccepted, 1, 'a reset stream leaves its connection up');

    // requests already in flight on the connection are answered; the refused one is not recorded
    const others = Array.from({ length: 5 }, () => push());
    for (const o of others) server.replyTo(hex(o.device), { status: 200, delayMs: 100 }, 1);
    const inFlight = others.map((o) => provider.send(o));
    await untilEvent(server, 'request', () => server.pending === 5);
    const away = push();
    server.replyTo(hex(away.device), { goaway: true, reason: 'Shutdown' }, 1);
    assert.deepEqual(await provider.send(away), { outcome: 'retry', reason: 'stream refused' });
    assert.ok((await Promise.all(inFlight)).every((r) => r.outcome === 'delivered'));
    assert.equal(server.pushes.filter((p) => p.token === hex(away.device)).length, 0);
    assert.deepEqual(await provider.send(away), { outcome: 'delivered' });
    assert.equal(server.connectionsAccepted, 2, 'the next push went over a new connection');
  });

  it('faults a random share of the requests no other script claims', async (t) => {
    const { server, provider } = await rig(t);
    const draws = [0.05, 0.5, 0.09, 0.7];
    server.replyRandomly(0.1, () => ({ status: 500, reason: 'InternalServerError' }), () => draws.shift()!);
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await provider.send(push())).outcome);
    assert.deepEqual(outcomes, ['retry', 'delivered', 'retry', 'delivered']);
    // a token's own script comes first and draws nothing
    const own = push();
    server.replyTo(hex(own.device), { status: 200 }, 1);
    assert.equal((await provider.send(own)).outcome, 'delivered');
    server.replyRandomly(1, () => ({ status: 429, reason: 'TooManyRequests', retryAfter: 2 }));
    assert.deepEqual(await provider.send(push()), { outcome: 'retry', reason: 'TooManyRequests', afterMs: 2000 });
    server.replyRandomly(0, () => ({ hang: true }));
    assert.equal((await provider.send(push())).outcome, 'delivered');
  });

  it('times out a request that is never answered, and a server that is gone', async (t) => {
    const { server, newProvider, pool } = await rig(t);
    const p = newProvider({ requestTimeoutMs: 200 });
    const req = push();
    server.replyTo(hex(req.device), { hang: true }, 1);
    assert.deepEqual(await p.send(req), { outcome: 'retry', reason: 'timeout' });
    assert.equal((await p.send(push())).outcome, 'delivered');

    const url = server.url;
    await server.close();
    const gone = newProvider({ host: url, requestTimeoutMs: 2000 });
    const r = await gone.send(push());
    assert.equal(r.outcome, 'retry');

    // a server that accepts TCP and never says a word: each attempt is given up, then a new one made
    const hole = net.createServer(() => {});
    hole.listen(0, '127.0.0.1');
    await once(hole, 'listening');
    const sockets: net.Socket[] = [];
    hole.on('connection', (s) => sockets.push(s));
    t.after(() => {
      for (const s of sockets) s.destroy();
      hole.close();
    });
    const silent = newProvider({ host: `https://127.0.0.1:${(hole.address() as net.AddressInfo).port}`, requestTimeoutMs: 150 });
    // the request's deadline and the connection's set-up deadline fall together: either may speak first
    const givenUp = (r: PushResult) => r.outcome === 'retry' && ['timeout', 'connection lost'].includes(r.reason);
    assert.ok(givenUp(await silent.send(push())));
    await untilEvent(pool, 'apns_closed', () => silent.stats.connectionsOpen === 0);
    assert.ok(givenUp(await silent.send(push())));
    assert.equal(silent.stats.connectionsOpened, 2);
  });

  it('2000 pushes, 200 in flight, over one connection: all delivered', async (t) => {
    const { server, provider } = await rig(t);
    const total = 2000;
    const reqs = Array.from({ length: total }, (_, i) => push(KINDS[i % 3]!));
    let next = 0;
    const results: PushResult[] = [];
    const start = performance.now();
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (next < total) results.push(await provider.send(reqs[next++]!));
      }),
    );
    const ms = performance.now() - start;
    assert.equal(results.length, total);
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.equal(server.pushes.length, total);
    assert.equal(new Set(server.pushes.map((p) => p.token)).size, total);
    assert.equal(server.connectionsAccepted, 1);
    t.diagnostic(`${total} pushes in ${ms.toFixed(0)} ms: ${Math.round((total / ms) * 1000)} pushes/s`);
    // our payloads: never 413, never over 4096 bytes
    assert.ok(server.exchanges.every((e) => e.status !== 413));
    assert.ok(server.pushes.every((p) => Buffer.byteLength(p.body) <= APNS_MAX_PAYLOAD));
  });

  it('spreads streams over several connections within maxConcurrentStreams', async (t) => {
    const { server, newProvider } = await rig(t);
    const p = newProvider({ connections: 2, maxConcurrentStreams: 25 });
    let peak = 0;
    server.on('request', () => (peak = Math.max(peak, server.pending)));
    server.delayMs = 5;
    const results = await Promise.all(Array.from({ length: 300 }, () => p.send(push())));
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.equal(server.connectionsAccepted, 2);
    assert.ok(peak <= 50, `peak ${peak} in flight`);
    assert.ok(peak > 25, `peak ${peak}: both connections used`);
    assert.deepEqual(new Set(server.pushes.map((x) => x.connection)), new Set([1, 2]));
  });

  it('respects the server SETTINGS_MAX_CONCURRENT_STREAMS', async (t) => {
    const clock = testClock();
    const server = await ApnsTestServer.start({ topics: [TOPIC], maxConcurrentStreams: 10, delayMs: 5, now: () => clock.now() });
    const team = server.keys.create();
    const p = new ApnsProvider({ host: server.url, ca: server.ca, keyId: team.keyId, teamId: team.teamId, key: team.privateKey, topic: TOPIC });
    t.after(async () => {
      await p.close();
      await server.close();
    });
    let peak = 0;
    server.on('request', () => (peak = Math.max(peak, server.pending)));
    const results = await Promise.all(Array.from({ length: 200 }, () => p.send(push())));
    assert.ok(results.every((r) => r.outcome === 'delivered'));
    assert.ok(peak <= 10, `peak ${peak}`);
  });
});

describe('APNs test server', () => {
  async function raw(server: ApnsTestServer, headers: http2.OutgoingHttpHeaders, body?: string) {
    const s = http2.connect(server.url, { ca: server.ca });
    try {
      const req = s.request({ ':method': 'POST', ...headers });
      let data = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (data += c));
      const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders]>;
      const closed = once(req, 'close');
      req.end(body);
      const [h] = await response;
      await closed;
      return { status: h[':status'], apnsId: h['apns-id'], reason: data ? (JSON.parse(data).reason as string) : undefined };
    } finally {
      s.close();
    }
  }

  it('answers malformed requests as Apple documents', async (t) => {
    const { server, provider, team } = await rig(t);
    const jwt = provider.jwt.token;
    const good = { ':path': `/3/device/${'ab'.repeat(32)}`, authorization: `bearer ${jwt}`, 'apns-topic': TOPIC, 'apns-push-type': 'alert' };
    const body = '{"aps":{"alert":"hi"}}';
    const ok = await raw(server, good, body);
    assert.equal(ok.status, 200);
    assert.match(String(ok.apnsId), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const id = '123e4567-e89b-12d3-a456-426614174000';
    assert.equal((await raw(server, { ...good, 'apns-id': id }, body)).apnsId, id);
    const cases: Array<[http2.OutgoingHttpHeaders, string | undefined, number, string]> = [
      [{ ...good, ':method': 'GET' }, undefined, 405, 'MethodNotAllowed'],
      [{ ...good, ':path': '/3/devices/x' }, body, 404, 'BadPath'],
      [{ ...good, ':path': '/3/device/' }, body, 400, 'MissingDeviceToken'],
      [{ ...good, ':path': '/3/device/xyz' }, body, 400, 'BadDeviceToken'],
      [{ ...good, authorization: undefined }, body, 403, 'MissingProviderToken'],
      [{ ...good, authorization: `bearer ${jwt.slice(0, -4)}AAAA` }, body, 403, 'InvalidProviderToken'],
      [{ ...good, authorization: `bearer ${createJwt(createApnsKey({ keyId: team.keyId, teamId: team.teamId }))}` }, body, 403, 'InvalidProviderToken'],
      [{ ...good, 'apns-topic': undefined }, body, 400, 'MissingTopic'],
      [{ ...good, 'apns-topic': 'com.other' }, body, 400, 'TopicDisallowed'],
      [{ ...good, 'apns-push-type': 'shout' }, body, 400, 'InvalidPushType'],
      [{ ...good, 'apns-priority': '7' }, body, 400, 'BadPriority'],
      [{ ...good, 'apns-expiration': 'tomorrow' }, body, 400, 'BadExpirationDate'],
      [{ ...good, 'apns-id': 'not-a-uuid' }, body, 400, 'BadMessageId'],
      [{ ...good, 'apns-collapse-id': 'c'.repeat(65) }, body, 400, 'BadCollapseId'],
      [{ ...good, 'apns-topic': [TOPIC, TOPIC] }, body, 400, 'DuplicateHeaders'],
      [good, undefined, 400, 'PayloadEmpty'],
      [good, '{"aps":', 400, 'PayloadEmpty'],
      [good, `{"aps":{},"x":"${'x'.repeat(4096)}"}`, 413, 'PayloadTooLarge'],
    ];
    for (const [h, b, status, reason] of cases) {
      const r = await raw(server, h, b);
      assert.deepEqual([r.status, r.reason], [status, reason], JSON.stringify(h).slice(0, 200));
    }
    assert.equal(server.pushes.length, 2);
  });
});

function createJwt(k: ApnsTeamKey): string {
  return new ApnsJwt({ keyId: k.keyId, teamId: k.teamId, key: k.privateKey }).token;
}

describe('APNs test server ↔ @parse/node-apn (a client nobody here wrote)', () => {
  it('accepts its notification and returns a scripted error through it', async (t) => {
    const server = await ApnsTestServer.start({ topics: [TOPIC] });
    const team = server.keys.create();
    const client = new apn.Provider({
      token: { key: team.privateKey, keyId: team.keyId, teamId: team.teamId },
      address: server.host,
      port: server.port,
      ca: [server.ca],
      production: false,
    });
    t.after(async () => {
      await client.shutdown();
      await server.close();
    });
    const token = randomBytes(32).toString('hex');
    const note = new apn.Notification({ alert: { title: 'Hello', body: 'from node-apn' }, topic: TOPIC, pushType: 'alert', payload: { d: 'abc' } });
    const ok = await client.send(note, token);
    assert.deepEqual(ok.failed, []);
    assert.equal(ok.sent.length, 1);
    const p = server.pushes[0]!;
    assert.equal(p.token, token);
    assert.deepEqual(p.payload.aps.alert, { title: 'Hello', body: 'from node-apn' });
    assert.equal(p.payload.d, 'abc');
    assert.equal(p.headers['apns-topic'], TOPIC);
    assert.equal(p.jwt.iss, team.teamId);

    const bad = randomBytes(32).toString('hex');
    server.replyTo(bad, { status: 400, reason: 'BadDeviceToken' });
    const r = await client.send(note, bad);
    assert.equal(r.sent.length, 0);
    assert.equal(r.failed[0]?.status, 400);
    assert.equal(r.failed[0]?.response?.reason, 'BadDeviceToken');
    const gone = randomBytes(32).toString('hex');
    server.replyTo(gone, { status: 410, reason: 'Unregistered' });
    const r2 = await client.send(note, gone);
    assert.equal(r2.failed[0]?.status, 410);
    assert.equal(r2.failed[0]?.response?.reason, 'Unregistered');
  });
});

describe('CaptureProvider', () => {
  it('records sends, scripts answers, holds deliveries until release', async () => {
    const cap = new CaptureProvider();
    assert.deepEqual(cap.serves, ['test']);
    const req: PushRequest = { device: { provider: 'test', token: randomBytes(8) }, kind: 'check', data: new Uint8Array(PUSH_DATA_SIZE) };
    cap.respond = () => ({ outcome: 'invalid', reason: 'UNREGISTERED' });
    assert.deepEqual(await cap.send(req), { outcome: 'invalid', reason: 'UNREGISTERED' });
    cap.respond = () => ({ outcome: 'delivered' });
    assert.deepEqual(await cap.send(req), { outcome: 'delivered' });
    cap.hold();
    let done = false;
    const held = cap.send(req).then((r) => ((done = true), r));
    await cap.waitFor('the third send', () => cap.attempts.length === 3);
    await setImmediate(); // the send's microtasks have run: only the hold keeps it from answering
    assert.equal(done, false);
    assert.equal(cap.pending, 1);
    cap.release();
    assert.deepEqual(await held, { outcome: 'delivered' });
    assert.equal(cap.delivered.length, 2);
    await cap.close();
  });
});

describe('retry-after', () => {
  it('reads seconds and HTTP dates', () => {
    const now = Date.UTC(2030, 0, 1);
    assert.equal(retryAfterMs('120', now), 120_000);
    assert.equal(retryAfterMs(new Date(now + 5000).toUTCString(), now), 5000);
    assert.equal(retryAfterMs(undefined, now), undefined);
    assert.equal(retryAfterMs('soon', now), undefined);
  });
});

describe('APNs alert from the config', () => {
  it('a configured alert (file or env) is what a message push carries to Apple; one too long is a config error', async (t) => {
    const server = await ApnsTestServer.start({ topics: [TOPIC] });
    t.after(() => server.close());
    const team = server.keys.create();
    const dir = tmpDir('hush-apns-alert-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'apns.p8'), team.privateKey);
    fs.writeFileSync(path.join(dir, 'ca.pem'), server.ca);
    const write = (alert?: object) =>
      fs.writeFileSync(
        path.join(dir, 'ntf.json'),
        JSON.stringify({
          apns: { host: server.url, keyId: team.keyId, teamId: team.teamId, keyFile: path.join(dir, 'apns.p8'), topic: TOPIC, caFile: path.join(dir, 'ca.pem'), ...(alert ? { alert } : {}) },
        }),
      );
    const sent = async (env: Record<string, string>) => {
      const [provider] = createProviders(loadNtfConfig(dir, env));
      t.after(() => provider!.close());
      assert.deepEqual(await provider!.send(push('message')), { outcome: 'delivered' });
      return server.pushes.at(-1)!.payload.aps.alert;
    };
    write({ title: 'Hush', body: 'Neue Nachricht' });
    assert.deepEqual(await sent({}), { title: 'Hush', body: 'Neue Nachricht' });
    assert.deepEqual(await sent({ HUSH_NTF_APNS_ALERT_BODY: 'Nouveau message' }), { title: 'Hush', body: 'Nouveau message' });
    write();
    assert.deepEqual(await sent({}), DEFAULT_ALERT);
    write({ title: 'Hush', body: 'x'.repeat(2000) });
    assert.throws(() => loadNtfConfig(dir, {}), (e: Error) => e instanceof ConfigError && /apns\.alert: too long/.test(e.message));
    write({ title: '', body: 'b' });
    assert.throws(() => loadNtfConfig(dir, {}), /apns\.alert\.title/);
  });
});
