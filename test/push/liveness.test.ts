// Liveness of the HTTP/2 links to push services and the push gateway: a link
// that dies silently (BlackholeProxy: no FIN, no RST) is found by an
// unanswered PING and replaced, and a live one is PINGed only as the pool's
// options say.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http2, { type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { GatewayProvider } from '../../src/push/gateway/provider.ts';
import { GatewayServer, keyHash } from '../../src/gateway/server.ts';
import { PUSH_DATA_SIZE } from '../../src/push/device.ts';
import { ApnsProvider } from '../../src/push/apns/provider.ts';
import { Http2Pool } from '../../src/push/http2/pool.ts';
import type { PushRequest } from '../../src/push/provider.ts';
import { ApnsTestServer } from '../../src/push/stand-ins/apns-server.ts';
import { CaptureProvider } from '../../src/push/stand-ins/capture-provider.ts';
import { BlackholeProxy } from '../../src/server/testkit/blackhole-proxy.ts';
import { eventLog, silent, untilEvent } from '../helpers.ts';

const TOPIC = 'chat.hush.app';
const push = (): PushRequest => ({ device: { provider: 'apns', token: randomBytes(32) }, kind: 'message', data: randomBytes(PUSH_DATA_SIZE) });
/** Small liveness settings; a request's own timeout is beyond the test's, so only a PING can find a dead link in time. */
const FAST = { pingIntervalMs: 100, pingTimeoutMs: 1000, requestTimeoutMs: 30_000 };

/**
 * A plain HTTP/2 server counting the PINGs each connection (0, 1, … in order
 * of arrival) receives; /hang is never answered. `stallMs`: the first PING
 * blocks the event loop that long (the whole process: client and server).
 */
async function pingCounter(t: TestContext, stallMs = 0) {
  const pings: number[] = [];
  const events = new EventEmitter();
  const sessions: ServerHttp2Session[] = [];
  const server = http2.createServer();
  server.on('session', (s) => {
    const i = pings.push(0) - 1;
    sessions.push(s);
    s.on('ping', () => {
      if (pings[i]!++ === 0 && stallMs > 0) {
        const until = performance.now() + stallMs;
        while (performance.now() < until); // a GC pause, a long synchronous compaction
      }
      events.emit('ping');
    });
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    if (headers[':path'] !== '/hang') stream.respond({ ':status': 200 }, { endStream: true });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  t.after(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, pings, events };
}

const get = (path: string) => () => ({ headers: { ':method': 'GET', ':path': path }, body: '' });

describe('HTTP/2 pool liveness', () => {
  it('PINGs an idle connection only with keepAlive, and one whose requests wait always; answered PINGs keep it', { timeout: 20_000 }, async (t) => {
    const server = await pingCounter(t);
    const kept = new Http2Pool({ url: server.url, name: 'kept', keepAlive: true, ...FAST });
    const plain = new Http2Pool({ url: server.url, name: 'plain', ...FAST });
    t.after(() => Promise.all([kept.close(), plain.close()]));
    assert.equal(((await kept.request(get('/'))) as { status: number }).status, 200); // connection 0
    assert.equal(((await plain.request(get('/'))) as { status: number }).status, 200); // connection 1
    await untilEvent(server.events, 'ping', () => server.pings[0]! >= 3, 10_000);
    // idle all the while, without keepAlive: not PINGed (push services refuse PINGs on idle connections)
    assert.equal(server.pings[1], 0);
    // a request waiting on a live but silent server: PINGed, answered, kept
    let answered = false;
    plain.send(get('/hang'), () => (answered = true));
    await untilEvent(server.events, 'ping', () => server.pings[1]! >= 3, 10_000);
    assert.equal(answered, false);
    for (const pool of [kept, plain]) assert.deepEqual([pool.stats.connectionsOpened, pool.stats.connectionsOpen], [1, 1]);
  });

  it('a PING answered while the event loop was blocked past its timeout does not drop the connection', { timeout: 20_000 }, async (t) => {
    const server = await pingCounter(t, FAST.pingTimeoutMs * 1.5);
    const pool = new Http2Pool({ url: server.url, name: 'stalled', keepAlive: true, ...FAST });
    t.after(() => pool.close());
    assert.equal(((await pool.request(get('/'))) as { status: number }).status, 200);
    // the ack of the first PING is read only after the sweep that finds its deadline passed
    await untilEvent(server.events, 'ping', () => server.pings[0]! >= 3, 10_000);
    assert.deepEqual([pool.stats.connectionsOpened, pool.stats.connectionsOpen], [1, 1]);
  });

  it('APNs: a push on a blackholed connection is retried once its PING goes unanswered; the next push goes through a new connection', { timeout: 20_000 }, async (t) => {
    const apns = await ApnsTestServer.start({ topics: [TOPIC] });
    const proxy = new BlackholeProxy(apns.port);
    await proxy.listen();
    const team = apns.keys.create();
    const { log, events } = eventLog();
    const provider = new ApnsProvider({
      host: `https://127.0.0.1:${proxy.port}`,
      ca: apns.ca,
      keyId: team.keyId,
      teamId: team.teamId,
      key: team.privateKey,
      topic: TOPIC,
      log,
      ...FAST,
    });
    t.after(async () => {
      await provider.close();
      await proxy.close();
      await apns.close();
    });
    assert.deepEqual(await provider.send(push()), { outcome: 'delivered' });
    assert.equal(proxy.blackhole(), 1);
    // no answer, no FIN: only the unanswered PING tells (the request's own timeout is minutes away)
    assert.deepEqual(await provider.send(push()), { outcome: 'retry', reason: 'connection lost' });
    await untilEvent(events, 'apns_closed', () => provider.stats.connectionsOpen === 0);
    assert.deepEqual(await provider.send(push()), { outcome: 'delivered' });
    assert.equal(provider.stats.connectionsOpened, 2);
    assert.equal(apns.connectionsAccepted, 2);
    assert.equal(apns.pushes.length, 2);
  });

  it('gateway client: a blackholed idle link is found and dropped by itself; the next push opens a new one and is delivered', { timeout: 20_000 }, async (t) => {
    const capture = new CaptureProvider(['apns']);
    const key = `hgw_${randomBytes(32).toString('base64url')}`;
    const gateway = new GatewayServer({
      host: '127.0.0.1',
      port: 0,
      sealKey: nodeCrypto.x25519KeyPair(),
      crypto: nodeCrypto,
      providers: [capture],
      servers: [{ name: 'ntf', keyHash: keyHash(key), ratePerSecond: 1000, burst: 1000, dailyQuota: 0 }],
      log: silent,
    });
    await gateway.start();
    const proxy = new BlackholeProxy(Number(new URL(gateway.url).port));
    await proxy.listen();
    // keepAlive is the gateway client's default
    const { log, events } = eventLog();
    const client = new GatewayProvider({ url: `http://127.0.0.1:${proxy.port}`, key, log, ...FAST });
    t.after(async () => {
      await client.close();
      await proxy.close();
      await gateway.stop();
    });
    assert.deepEqual(await client.send(push()), { outcome: 'delivered' });
    proxy.blackhole();
    await untilEvent(events, 'gateway_closed', () => client.stats.connectionsOpen === 0, 10_000);
    assert.deepEqual(await client.send(push()), { outcome: 'delivered' });
    assert.equal(client.stats.connectionsOpened, 2);
    assert.equal(capture.delivered.length, 2);
  });
});
