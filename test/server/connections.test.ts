// Connection limits of the shared ProtocolServer, over the wire against an
// in-process relay: connections per address (handshakes included), slowloris
// on the HTTP upgrade and on a WebSocket frame, the hello timeout; and the
// `limits` settings of relay.json and ntf.json.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { ConnectionError, type WebSocketFactory } from '../../src/core/client.ts';
import { parseAddress, webSocketUrl } from '../../src/core/address.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { RELAY_BLOCK_SIZE } from '../../src/relay/protocol.ts';
import { loadNtfConfig } from '../../src/ntf/config.ts';
import { loadRelayConfig } from '../../src/relay/config.ts';
import { addressKey, connectionLimitsOf, DEFAULT_CONNECTION_LIMITS } from '../../src/server/connection-limits.ts';
import { CLOSE } from '../../src/server/protocol-server.ts';
import { connect, startRelay, tmpDir, type TestRelay } from '../helpers.ts';
import { until } from '../ntf/helpers.ts';

const refused = async (relay: TestRelay, reason: string) =>
  (await relay.server.metrics.connections.refused.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

/** A raw WebSocket to the relay from `localAddress`, open (the server's hello on its way). */
async function rawSocket(relay: TestRelay, localAddress = '127.0.0.1'): Promise<WebSocket> {
  const a = parseAddress(relay.address);
  assert.ok(a.ok);
  const ws = new WebSocket(webSocketUrl(a.value), { perMessageDeflate: false, localAddress });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('close', (code) => reject(new Error(`closed ${code}`)));
  });
  return ws;
}

const closeCode = (ws: WebSocket) => new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));

/** A raw TCP connection to the relay's port; `closed` resolves when the server drops it. */
function tcp(relay: TestRelay): { socket: net.Socket; closed: Promise<void> } {
  const a = parseAddress(relay.address);
  assert.ok(a.ok);
  const socket = net.connect(a.value.port, '127.0.0.1');
  socket.on('error', () => {});
  return { socket, closed: new Promise((r) => socket.once('close', () => r())) };
}

test('the address key: IPv4 as it is (also IPv4-mapped), IPv6 by its /64', () => {
  assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002::'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8::5:6:7:8:9'), '2001:db8:0:5::/64', 'the zeros "::" stands for come before the tail');
  assert.notEqual(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'));
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
});

test('connections per address: over the cap refused at accept, handshakes included; another address and a freed slot are served', async () => {
  const relay = await startRelay({ limits: { maxConnectionsPerAddress: 2 } });
  try {
    const client = await connect(relay.address);
    // A second connection that never sends its hello holds a slot too.
    const handshaking = await rawSocket(relay);
    await assert.rejects(connect(relay.address), ConnectionError);
    assert.equal(await refused(relay, 'address'), 1);
    // Counted per address: 127.0.0.2 is someone else.
    const other = await rawSocket(relay, '127.0.0.2');
    other.close();
    handshaking.close();
    await until('the slot to be free', () => relay.server.connections === 1);
    const again = await connect(relay.address);
    await again.ping();
    await client.ping();
    again.close();
    client.close();
  } finally {
    await relay.stop();
  }
});

test('maxConnectionsPerAddress 0: no cap (not a cap of none)', async () => {
  const relay = await startRelay({ limits: { maxConnectionsPerAddress: 0 } });
  try {
    const clients = [await connect(relay.address), await connect(relay.address), await connect(relay.address)];
    for (const c of clients) c.close();
    assert.equal(await refused(relay, 'address'), 0);
  } finally {
    await relay.stop();
  }
});

describe('slowloris and handshakes', () => {
  const HANDSHAKE_MS = 500;

  test('an upgrade request trickled byte by byte, or none at all, is dropped after the handshake timeout', async () => {
    const relay = await startRelay({ limits: { handshakeTimeoutMs: HANDSHAKE_MS } });
    try {
      const silent = tcp(relay);
      const slow = tcp(relay);
      slow.socket.write('GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nX-Slow: ');
      // Each byte well within the timeout: only the whole request's deadline stops it.
      const trickle = setInterval(() => slow.socket.write('a'), 20);
      await Promise.all([silent.closed, slow.closed]).finally(() => clearInterval(trickle));
      assert.equal(await refused(relay, 'http'), 2);
      const c = await connect(relay.address);
      await c.ping();
      c.close();
    } finally {
      await relay.stop();
    }
  });

  test('no hello within the handshake timeout: closed 4003', async () => {
    const relay = await startRelay({ limits: { handshakeTimeoutMs: HANDSHAKE_MS } });
    try {
      const ws = await rawSocket(relay);
      assert.equal(await closeCode(ws), CLOSE.HANDSHAKE_TIMEOUT);
      assert.equal(await refused(relay, 'handshake'), 1);
    } finally {
      await relay.stop();
    }
  });

  test('a WebSocket frame trickled byte by byte does not count as received: the idle timeout closes it (4007)', async () => {
    const relay = await startRelay({ limits: { idleTimeoutMs: 500 } });
    try {
      let ws: WebSocket | undefined;
      const factory: WebSocketFactory = (url) => {
        const s = nodeWebSocket()(url);
        ws = s as unknown as WebSocket;
        return s;
      };
      const c = await connect(relay.address, { webSocket: factory, keepalive: false });
      await c.ping();
      const closed = closeCode(ws!);
      // A masked binary frame of one block, written to the socket a byte at a time.
      const frame = Buffer.concat([Buffer.from([0x82, 0xfe, RELAY_BLOCK_SIZE >> 8, RELAY_BLOCK_SIZE & 0xff, 1, 2, 3, 4]), Buffer.alloc(RELAY_BLOCK_SIZE)]);
      const socket = (ws as unknown as { _socket: net.Socket })._socket;
      let i = 0;
      const trickle = setInterval(() => socket.write(frame.subarray(i, ++i)), 20);
      // Were each byte to count, the bytes (every 20 ms) would keep it open for good.
      assert.equal(await closed.finally(() => clearInterval(trickle)), CLOSE.IDLE);
    } finally {
      await relay.stop();
    }
  });
});

describe('the limits settings', () => {
  test('relay.json limits: defaults, then the file, then HUSH_RELAY_* variables', () => {
    const dir = tmpDir();
    const d = loadRelayConfig(dir, {}).limits;
    assert.deepEqual(connectionLimitsOf(d, d.idleTimeoutSeconds), DEFAULT_CONNECTION_LIMITS);
    writeFileSync(`${dir}/relay.json`, JSON.stringify({ limits: { maxConnectionsPerAddress: 0, maxBufferedKB: 256 } }));
    const c = loadRelayConfig(dir, { HUSH_RELAY_HANDSHAKE_TIMEOUT_SECONDS: '3', HUSH_RELAY_BUFFERED_TIMEOUT_SECONDS: '7' });
    assert.deepEqual(connectionLimitsOf(c.limits, c.limits.idleTimeoutSeconds), {
      ...DEFAULT_CONNECTION_LIMITS,
      maxConnectionsPerAddress: 0,
      maxBufferedBytes: 256 * 1024,
      handshakeTimeoutMs: 3000,
      bufferedTimeoutMs: 7000,
    });
    assert.throws(() => loadRelayConfig(dir, { HUSH_RELAY_MAX_CONNECTIONS_PER_ADDRESS: '-1' }), /limits.maxConnectionsPerAddress.*HUSH_RELAY_MAX_CONNECTIONS_PER_ADDRESS/);
  });

  test('ntf.json limits: the same settings, HUSH_NTF_* variables; the idle timeout stays in liveness', () => {
    const dir = tmpDir();
    writeFileSync(`${dir}/ntf.json`, JSON.stringify({ limits: { maxConnections: 500 }, liveness: { idleTimeoutSeconds: 60 } }));
    const c = loadNtfConfig(dir, { HUSH_NTF_MAX_CONNECTIONS_PER_ADDRESS: '20', HUSH_NTF_MAX_BUFFERED_KB: '512' });
    assert.deepEqual(connectionLimitsOf(c.limits, c.liveness.idleTimeoutSeconds), {
      ...DEFAULT_CONNECTION_LIMITS,
      maxConnections: 500,
      maxConnectionsPerAddress: 20,
      maxBufferedBytes: 512 * 1024,
      idleTimeoutMs: 60_000,
    });
    writeFileSync(`${dir}/ntf.json`, JSON.stringify({ limits: { idleTimeoutSeconds: 60 } }));
    assert.throws(() => loadNtfConfig(dir, {}), /limits/);
  });
});
