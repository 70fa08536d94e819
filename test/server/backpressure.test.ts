// Backpressure in the shared ProtocolServer, over the wire against an
// in-process relay: a client that stops reading its socket cannot make the
// server buffer more than the documented bound (docs/protocol.md §2.5), however
// much its commands would produce (a 70-byte GET answered by a 16 KB MSG) or
// others send it; the relay serves everyone else meanwhile.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type WebSocket from 'ws';
import type { WebSocketFactory } from '../../src/core/client.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { openMessage } from '../../src/relay/client.ts';
import { RELAY_BLOCK_SIZE } from '../../src/relay/protocol.ts';
import type { RelayServer } from '../../src/relay/server.ts';
import { CLOSE } from '../../src/server/protocol-server.ts';
import { bytes, connect, crypto, newQueue, startRelay, text, type TestClient, type TestRelay } from '../helpers.ts';
import { relayCommands, until } from '../ntf/helpers.ts';

const CAP = 64 * 1024;
/** What the relay may buffer for one connection (docs/protocol.md §2.5). */
const BOUND = 2 * CAP + RELAY_BLOCK_SIZE;
const BODY = bytes('m'.repeat(15_000));
/** 1000 GETs of a 15 KB message: 15 MB of replies, several times what the kernel's socket buffers take. */
const GETS = 1000;

/** A test client whose socket reading can be stopped and started (`ws.pause()`, `ws.resume()`). */
async function pausable(relay: TestRelay): Promise<{ client: TestClient; ws: WebSocket }> {
  let ws: WebSocket | undefined;
  const factory: WebSocketFactory = (url) => {
    const socket = nodeWebSocket()(url);
    ws = socket as unknown as WebSocket;
    return socket;
  };
  const client = await connect(relay.address, { webSocket: factory, crypto: nodeCrypto, keepalive: false, timeoutMs: 60_000 });
  return { client, ws: ws! };
}

const metric = async (relay: RelayServer, name: string, labels: Record<string, string> = {}) => {
  const m = relay.metrics.registry.getSingleMetric(name);
  assert.ok(m, name);
  const values = (await m.get()).values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return values[0]?.value ?? 0;
};
const backpressure = (relay: TestRelay, event: string) => metric(relay.server, 'hush_relay_backpressure_total', { event });
const largestBuffered = (relay: TestRelay) => metric(relay.server, 'hush_relay_buffered_bytes_max');

/** Another client makes a queue, sends to it and receives: the relay serves it as usual. */
async function served(relay: TestRelay): Promise<void> {
  const a = await connect(relay.address);
  const b = await connect(relay.address);
  try {
    const q = await newQueue(a);
    await a.subscribe(q.rcvId, q.rcvAuth.privateKey);
    await b.send(q.sndId, bytes('served'));
    const m = await a.nextEvent('MSG');
    assert.equal(m.type, 'MSG');
    assert.equal(text(openMessage(crypto, q.rcvDhSecret, m)!.body), 'served');
  } finally {
    a.close();
    b.close();
  }
}

const closeCode = (ws: WebSocket) => new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));

test('GET amplification: a client that stops reading is read no more, buffered within the bound, others are served; it gets every answer once it reads', async () => {
  const relay = await startRelay({ limits: { maxBufferedBytes: CAP, bufferedTimeoutMs: 600_000 } });
  try {
    const { client, ws } = await pausable(relay);
    const q = await newQueue(client);
    await client.send(q.sndId, BODY);
    ws.pause();
    const gets = Array.from({ length: GETS }, () => client.get(q.rcvId, q.rcvAuth.privateKey));
    await until('the relay to stop reading the client', async () => (await backpressure(relay, 'paused')) >= 1, 20_000);
    // It reads the client again while the kernel's socket buffers take what it sent; once
    // they are full, no more of its GETs run, however many others the relay serves meanwhile.
    let ran = await relayCommands(relay.server.metrics, 'GET');
    await until(
      'the GETs to stop running',
      async () => {
        await served(relay);
        const buffered = await largestBuffered(relay);
        assert.ok(buffered <= BOUND, `buffered ${buffered} > ${BOUND}`);
        const before = ran;
        ran = await relayCommands(relay.server.metrics, 'GET');
        return ran === before;
      },
      20_000,
    );
    assert.ok(ran < GETS, `${ran} of ${GETS} GETs ran while the client read nothing`);

    // Flow control, not loss: once the client reads, every GET is answered with the message.
    ws.resume();
    const answers = await Promise.all(gets);
    assert.ok(answers.every((m) => m?.type === 'MSG'));
    assert.equal(text(openMessage(crypto, q.rcvDhSecret, answers.at(-1)!)!.body), text(BODY));
    assert.equal(await backpressure(relay, 'closed'), 0);
    assert.ok((await backpressure(relay, 'paused')) >= 1);
    client.close();
  } finally {
    await relay.stop();
  }
});

test('a client that stays over the cap longer than bufferedTimeoutMs is closed 4008', async () => {
  const relay = await startRelay({ limits: { maxBufferedBytes: CAP, bufferedTimeoutMs: 100 } });
  try {
    const { client, ws } = await pausable(relay);
    const q = await newQueue(client);
    await client.send(q.sndId, BODY);
    ws.pause();
    for (let i = 0; i < GETS; i++) client.get(q.rcvId, q.rcvAuth.privateKey).catch(() => {});
    await until('the relay to close the client', async () => (await backpressure(relay, 'closed')) >= 1, 20_000);
    await served(relay);
    // The close frame waits behind what the client has not read: it sees it once it reads.
    const closed = closeCode(ws);
    ws.resume();
    assert.equal(await closed, CLOSE.SLOW);
    await until('the connection to be gone', () => relay.server.connections === 0);
  } finally {
    await relay.stop();
  }
});

test('deliveries to a client that does not read wait at the cap (the messages stay queued) and all arrive once it reads: paced, not closed', async () => {
  const QUEUES = 64;
  const relay = await startRelay({
    limits: { maxBufferedBytes: CAP, bufferedTimeoutMs: 600_000 },
    creation: { perConnection: { burst: QUEUES, perMinute: 1 }, perAddress: { burst: QUEUES + 1, perMinute: 1 } }, // + served()'s queue
  });
  try {
    const { client, ws } = await pausable(relay);
    const queues = [];
    for (let i = 0; i < QUEUES; i++) {
      const q = await newQueue(client);
      await client.subscribe(q.rcvId, q.rcvAuth.privateKey);
      queues.push(q);
    }
    ws.pause();
    // A full delivery window (16) on each queue: 64 × 16 × 15 KB, far past twice the cap and the kernel's buffers.
    const sender = await connect(relay.address, { timeoutMs: 60_000 });
    for (let round = 0; round < 16; round++) await Promise.all(queues.map((q) => sender.send(q.sndId, BODY)));
    const buffered = await largestBuffered(relay);
    assert.ok(buffered >= CAP, `the relay held deliveries back at the cap (${buffered} bytes buffered)`);
    assert.ok(buffered <= CAP + RELAY_BLOCK_SIZE, `no more than one MSG past the cap: ${buffered}`);
    assert.equal(await backpressure(relay, 'closed'), 0);
    await served(relay);
    ws.resume();
    await until('every message delivered', () => client.events.filter((e) => e.type === 'MSG').length === QUEUES * 16);
    assert.equal(await backpressure(relay, 'closed'), 0);
    sender.close();
    client.close();
  } finally {
    await relay.stop();
  }
});

test('NSUBS handing over kept NMSGs worth several times the cap: paced, not closed; a client that reads gets them all', async () => {
  const QUEUES = 300;
  const relay = await startRelay({
    // The smallest cap: 300 kept NMSGs are several times twice it.
    limits: { maxBufferedBytes: RELAY_BLOCK_SIZE },
    creation: { perConnection: { burst: QUEUES, perMinute: 1 }, perAddress: { burst: QUEUES, perMinute: 1 } },
  });
  try {
    const service = crypto.x25519KeyPair();
    const a = await connect(relay.address);
    await a.subscribeService(service);
    const queues = [];
    for (let i = 0; i < QUEUES; i++) {
      const q = await newQueue(a, true);
      await a.subscribeNotifier(q.ntf!.notifierId, q.ntf!.auth.privateKey);
      queues.push(q);
    }
    a.close();
    await until('the service connection to be gone', () => relay.server.connections === 0);
    const sender = await connect(relay.address);
    await Promise.all(queues.map((q) => sender.send(q.sndId, bytes('kept'), { notify: true })));
    const b = await connect(relay.address);
    assert.equal(await b.subscribeService(service), QUEUES);
    for (let i = 0; i < QUEUES; i++) await b.nextEvent('NMSG');
    await b.ping();
    assert.equal(await backpressure(relay, 'closed'), 0);
    b.close();
    sender.close();
  } finally {
    await relay.stop();
  }
});
