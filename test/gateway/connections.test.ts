// What any client may hold of the push gateway, authorized or not:
// connections per address and streams per HTTP/2 connection.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { MAX_STREAMS_PER_CONNECTION } from '../../src/gateway/limits.ts';
import { INFO_PATH } from '../../src/push/gateway/protocol.ts';
import { GatewayServer, type GatewayServerOptions } from '../../src/gateway/server.ts';
import { silent } from '../helpers.ts';

/** An HTTP/2 session from `localAddress`: its remote settings once connected, or undefined if the gateway drops it first. */
async function session(url: string, localAddress = '127.0.0.1'): Promise<{ s: http2.ClientHttp2Session; settings?: http2.Settings }> {
  const { hostname, port } = new URL(url);
  const s = http2.connect(url, { createConnection: () => net.connect({ host: hostname, port: Number(port), localAddress }) });
  s.on('error', () => {});
  const settings = await new Promise<http2.Settings | undefined>((resolve) => {
    s.once('remoteSettings', (r) => resolve(r));
    s.once('close', () => resolve(undefined));
  });
  return settings ? { s, settings } : { s };
}

/** A gateway with no providers or servers: only its connection handling is under test. */
async function startGateway(o: Partial<GatewayServerOptions>): Promise<GatewayServer> {
  const gateway = new GatewayServer({ host: '127.0.0.1', port: 0, sealKey: nodeCrypto.x25519KeyPair(), crypto: nodeCrypto, providers: [], servers: [], log: silent, ...o });
  await gateway.start();
  return gateway;
}

test('gateway: connections per address capped at accept (another address is served), streams per connection announced', async () => {
  const gateway = await startGateway({ maxConnectionsPerAddress: 2 });
  const open: http2.ClientHttp2Session[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const { s, settings } = await session(gateway.url);
      open.push(s);
      assert.equal(settings?.maxConcurrentStreams, MAX_STREAMS_PER_CONNECTION);
    }
    const third = await session(gateway.url);
    assert.equal(third.settings, undefined, 'a third connection from 127.0.0.1 is dropped');
    assert.equal((await gateway.metrics.connectionsRefused.get()).values[0]?.value, 1);
    const other = await session(gateway.url, '127.0.0.2');
    open.push(other.s);
    assert.ok(other.settings, '127.0.0.2 is served');
    const status = await new Promise<number | undefined>((resolve) => {
      const req = other.s.request({ ':path': INFO_PATH });
      req.on('response', (h) => resolve(h[':status']));
      req.on('error', () => resolve(undefined));
      req.resume();
    });
    assert.equal(status, 200);
  } finally {
    for (const s of open) s.close();
    await gateway.stop();
  }
});

test('gateway: a connection answered with a connection error (GOAWAY) is closed once idle, and frees its slot', async () => {
  const gateway = await startGateway({ maxConnectionsPerAddress: 1, idleTimeoutMs: 200 });
  try {
    const { hostname, port } = new URL(gateway.url);
    const raw = net.connect({ host: hostname, port: Number(port) });
    raw.on('error', () => {});
    const goaway = new Promise<void>((resolve) => raw.on('data', (d: Buffer) => d.includes(Buffer.from([0, 0, 8, 7])) && resolve()));
    const closed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    raw.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // SETTINGS, empty
    raw.write(Buffer.from([0, 0, 9, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])); // PING of length 9: a connection error
    await goaway;
    raw.end(); // Node keeps the session even after the peer's FIN: only the idle timeout frees it
    await closed;
    const next = await session(gateway.url);
    assert.ok(next.settings, 'the slot is free again');
    next.s.close();
  } finally {
    await gateway.stop();
  }
});
