// The PROXY protocol on the protocol port (listener option proxyProtocol): the
// header's parser (v1, v2, its bounds); over the wire, a connection is
// admitted with the client address its header names (ws and wss), per-address
// connection caps and creation budgets count that address, one without a
// valid header in time is closed and counted (reason proxy), LOCAL is closed
// quietly, the HTTP timeouts still hold behind it; HAProxy's send-proxy and
// send-proxy-v2 as the sender; the settings; and with the option off nothing
// reads a header.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import tls from 'node:tls';
import fc from 'fast-check';
import WebSocket from 'ws';
import { formatAddress, parseAddress } from '../../src/core/address.ts';
import { ConnectionError, type WebSocketFactory, type WebSocketLike } from '../../src/core/client.ts';
import { loadGatewayConfig } from '../../src/gateway/config.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { loadNtfConfig } from '../../src/ntf/config.ts';
import { TEST_CERT, TEST_CERT_KEY } from '../../src/push/stand-ins/tls.ts';
import { RelayClient, RelayCommandError } from '../../src/relay/client.ts';
import { loadRelayConfig } from '../../src/relay/config.ts';
import { RELAY_BLOCK_SIZE, RELAY_PROTOCOL, RELAY_VERSIONS } from '../../src/relay/protocol.ts';
import { initRelay, startRelay as runRelay } from '../../src/relay/run.ts';
import type { ConnectionLimits } from '../../src/server/connection-limits.ts';
import { ConnectionMetrics } from '../../src/server/connection-metrics.ts';
import { MetricSet } from '../../src/server/metrics.ts';
import { ProtocolServer } from '../../src/server/protocol-server.ts';
import { parseProxyHeader } from '../../src/server/proxy-protocol.ts';
import { newQueue, silent, startRelay, tmpDir } from '../helpers.ts';
import { until } from '../ntf/helpers.ts';
import { freePort } from '../process.ts';

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v1 line for a TCP client at `address`. */
const v1 = (address: string, port = 40000) =>
  Buffer.from(`PROXY ${net.isIPv6(address) ? 'TCP6 ' + address + ' ::1' : 'TCP4 ' + address + ' 127.0.0.1'} ${port} 5224\r\n`);

/** A v2 header: PROXY for a TCP client at `address` (IPv4, or IPv6 written in all 8 groups), `tlvs` after the addresses; LOCAL without one. */
function v2(address?: string, { port = 40000, tlvs = Buffer.alloc(0) } = {}): Buffer {
  if (address === undefined) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])]);
  const v6 = address.includes(':');
  const src = v6 ? Buffer.from(address.split(':').map((g) => g.padStart(4, '0')).join(''), 'hex') : Buffer.from(address.split('.').map(Number));
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(port, 0);
  ports.writeUInt16BE(5224, 2);
  const body = Buffer.concat([src, Buffer.alloc(src.length), ports, tlvs]);
  const head = Buffer.from([0x21, v6 ? 0x21 : 0x11, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

describe('parseProxyHeader', () => {
  test('v1: TCP4 and TCP6 give the client address and port, and the line length; UNKNOWN is LOCAL', () => {
    const h = v1('203.0.113.7', 51000);
    assert.deepEqual(parseProxyHeader(Buffer.concat([h, Buffer.from('GET / HTTP/1.1\r\n')])), { command: 'proxy', address: '203.0.113.7', port: 51000, length: h.length });
    assert.deepEqual(parseProxyHeader(v1('2001:db8::7')), { command: 'proxy', address: '2001:db8::7', port: 40000, length: v1('2001:db8::7').length });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { command: 'local', length: 15 });
    // the spec's longest line: 107 bytes with its CRLF
    const longest = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    assert.equal(longest.length, 107);
    assert.deepEqual(parseProxyHeader(Buffer.from(longest)), { command: 'local', length: 107 });
  });

  test('v2: IPv4, IPv6 in its shortest form, IPv4-mapped as ::ffff:a.b.c.d, TLVs passed over; LOCAL', () => {
    const h = v2('203.0.113.7', { port: 51000 });
    assert.deepEqual(parseProxyHeader(Buffer.concat([h, Buffer.from('GET')])), { command: 'proxy', address: '203.0.113.7', port: 51000, length: 28 });
    assert.deepEqual(parseProxyHeader(v2('2001:db8:0:0:0:0:0:7')), { command: 'proxy', address: '2001:db8::7', port: 40000, length: 52 });
    assert.deepEqual(parseProxyHeader(v2('0:0:0:0:0:ffff:cb00:7107')), { command: 'proxy', address: '::ffff:203.0.113.7', port: 40000, length: 52 });
    // an ALPN TLV (type 0x01, length 8, "http/1.1") and a NOOP one
    const tlvs = Buffer.concat([Buffer.from([0x01, 0, 8]), Buffer.from('http/1.1'), Buffer.from([0x04, 0, 2, 0, 0])]);
    assert.deepEqual(parseProxyHeader(v2('203.0.113.7', { tlvs })), { command: 'proxy', address: '203.0.113.7', port: 40000, length: 28 + tlvs.length });
    assert.deepEqual(parseProxyHeader(v2()), { command: 'local', length: 16 });
  });

  test('a header not complete yet asks for more, byte by byte', () => {
    for (const h of [v1('203.0.113.7'), v2('2001:db8:0:0:0:0:0:7'), v2()])
      for (let i = 0; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)), 'more', `${i} bytes of ${h.length}`);
  });

  test('anything else is no header, known as soon as its bytes say so: wrong start, bad fields, over the bounds', () => {
    const lines = [
      'GET / HTTP/1.1\r\n',
      'PROXY TCP4 203.0.113.7 127.0.0.1 40000\r\n',
      'PROXY TCP4 203.0.113.7 127.0.0.1 40000 5224 more\r\n',
      'PROXY TCP4 2001:db8::7 127.0.0.1 40000 5224\r\n',
      'PROXY TCP6 203.0.113.7 ::1 40000 5224\r\n',
      'PROXY TCP4 203.0.113.256 127.0.0.1 40000 5224\r\n',
      'PROXY TCP4 203.0.113.7 127.0.0.1 65536 5224\r\n',
      'PROXY TCP4 203.0.113.7 127.0.0.1 040000 5224\r\n',
      'PROXY UDP4 203.0.113.7 127.0.0.1 40000 5224\r\n',
      'PROXY  TCP4 203.0.113.7 127.0.0.1 40000 5224\r\n',
    ];
    for (const l of lines) assert.equal(parseProxyHeader(Buffer.from(l)), undefined, l);
    // 107 bytes without a CRLF: no v1 line can be longer
    assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(96)}`)), undefined);
    assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(95)}`)), 'more');

    const ok = v2('203.0.113.7');
    const with13 = (byte12: number, byte13 = ok[13]!) => Buffer.concat([ok.subarray(0, 12), Buffer.from([byte12, byte13]), ok.subarray(14)]);
    assert.equal(parseProxyHeader(with13(0x11)), undefined, 'version 1 in binary');
    assert.equal(parseProxyHeader(with13(0x22)), undefined, 'command 2');
    assert.equal(parseProxyHeader(with13(0x21, 0x12)), undefined, 'UDP');
    assert.equal(parseProxyHeader(with13(0x21, 0x01)), undefined, 'PROXY with no address family');
    assert.equal(parseProxyHeader(with13(0x21, 0x31)), undefined, 'a unix socket');
    const short = Buffer.from(ok);
    short.writeUInt16BE(8, 14);
    assert.equal(parseProxyHeader(short.subarray(0, 24)), undefined, 'announcing less than its addresses');
    // announcing more than 536 bytes: refused from the 16 fixed bytes on, before any of it is read
    const huge = Buffer.from(ok.subarray(0, 16));
    huge.writeUInt16BE(600, 14);
    assert.equal(parseProxyHeader(huge), undefined);
    huge.writeUInt16BE(520, 14);
    assert.equal(parseProxyHeader(huge), 'more', 'exactly 536 in all is within the bound');
    assert.equal(parseProxyHeader(Buffer.concat([V2_SIGNATURE.subarray(0, 5), Buffer.from('x')])), undefined, 'the signature broken off');
  });

  test('any bytes: no throw, never more than 536 asked for, a header within what was given; what follows a header is not its business', () => {
    const starts = fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY '), V2_SIGNATURE, v2('203.0.113.7').subarray(0, 14));
    fc.assert(
      fc.property(starts, fc.uint8Array({ maxLength: 600 }), (start, rest) => {
        const buf = Buffer.concat([start, rest]);
        const h = parseProxyHeader(buf);
        if (h === 'more') assert.ok(buf.length < 536);
        else if (h) assert.ok(h.length <= buf.length);
      }),
    );
    const headers = fc.constantFrom(v1('203.0.113.7'), v1('2001:db8::7'), v2('198.51.100.9'), v2('2001:db8:0:0:0:0:0:9'), v2());
    fc.assert(fc.property(headers, fc.uint8Array({ maxLength: 100 }), (h, tail) => assert.deepEqual(parseProxyHeader(Buffer.concat([h, tail])), parseProxyHeader(h))));
  });
});

/** A WebSocket whose TCP connection first carries `header` (TLS after it, for wss), as from a balancer. */
function behind(header: Buffer): WebSocketFactory {
  return (url) =>
    new WebSocket(url, {
      perMessageDeflate: false,
      createConnection: ((o: net.TcpNetConnectOpts) => {
        const socket = net.connect({ host: o.host ?? '127.0.0.1', port: o.port });
        socket.write(header);
        return url.startsWith('wss:') ? tls.connect({ socket, rejectUnauthorized: false }) : socket;
      }) as typeof net.createConnection,
    }) as unknown as WebSocketLike;
}

/** A WebSocket from the loopback address `localAddress`, no header. */
const from =
  (localAddress: string): WebSocketFactory =>
  (url) =>
    new WebSocket(url, { perMessageDeflate: false, localAddress }) as unknown as WebSocketLike;

interface Recording {
  server: ProtocolServer;
  /** The address of each session, in the order they began. */
  addresses: string[];
  refused(reason: string): Promise<number>;
  /** A session's handshake with `webSocket`; rejects when the server refuses it. */
  open(webSocket: WebSocketFactory, onClose?: () => void): Promise<RelayClient>;
  port: number;
}

/** A bare ProtocolServer speaking the relay's handshake whose sessions only record their address. */
async function recording(t: { after(fn: () => Promise<void>): void }, o: { proxyProtocol?: boolean; tls?: boolean; limits?: Partial<ConnectionLimits> } = {}): Promise<Recording> {
  const addresses: string[] = [];
  const metrics = new ConnectionMetrics(new MetricSet('test'));
  const server = new ProtocolServer({
    protocol: RELAY_PROTOCOL,
    versions: RELAY_VERSIONS,
    blockSize: RELAY_BLOCK_SIZE,
    busyReply: new Uint8Array(0),
    identity: nodeCrypto.ed25519KeyPair(),
    crypto: nodeCrypto,
    host: '127.0.0.1',
    port: 0,
    ...(o.proxyProtocol ? { proxyProtocol: true } : {}),
    ...(o.tls ? { tls: { cert: TEST_CERT, key: TEST_CERT_KEY } } : {}),
    ...(o.limits ? { limits: o.limits } : {}),
    log: silent,
    metrics,
    barrier: () => {},
    handler: (session) => {
      addresses.push(session.address);
      return { transmission() {}, malformed() {}, closed() {} };
    },
  });
  const port = await server.listen();
  const clients: RelayClient[] = [];
  t.after(async () => {
    clients.forEach((c) => c.close());
    await server.close();
  });
  return {
    server,
    addresses,
    port,
    refused: async (reason) => (await metrics.refused.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0,
    open: async (webSocket, onClose) => {
      const c = await RelayClient.connect(server.address, { webSocket, timeoutMs: 5000, keepalive: false, ...(onClose ? { onClose } : {}) });
      clients.push(c);
      return c;
    },
  };
}

/** A raw TCP connection that writes `bytes`; resolves once the server has closed it. */
function dropped(port: number, ...bytes: Buffer[]): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  for (const b of bytes) socket.write(b);
  return new Promise((r) => socket.once('close', () => r()));
}

describe('behind a PROXY protocol sender', () => {
  for (const secure of [false, true])
    test(`admitted with the address the header names, v1 and v2, IPv4 and IPv6 (${secure ? 'wss' : 'ws'})`, async (t) => {
      const r = await recording(t, { proxyProtocol: true, tls: secure });
      await r.open(behind(v1('203.0.113.7')));
      await r.open(behind(v1('2001:db8:1:2::7')));
      await r.open(behind(v2('198.51.100.9')));
      await r.open(behind(v2('2001:db8:0:0:0:0:0:9')));
      await r.open(behind(v2('0:0:0:0:0:ffff:c000:0201')));
      await until('five sessions', () => r.addresses.length === 5);
      assert.deepEqual(r.addresses, ['203.0.113.7', '2001:db8:1:2::7', '198.51.100.9', '2001:db8::9', '::ffff:192.0.2.1']);
      assert.equal(await r.refused('proxy'), 0);
    });

  test('connections per address count the header address: two clients behind one balancer address have a budget each', async (t) => {
    const r = await recording(t, { proxyProtocol: true, limits: { maxConnectionsPerAddress: 1 } });
    await r.open(behind(v1('203.0.113.7')));
    await assert.rejects(r.open(behind(v2('203.0.113.7'))), ConnectionError);
    assert.equal(await r.refused('address'), 1);
    await r.open(behind(v2('203.0.113.8')));
    // an IPv6 client by its /64, however the header writes it
    await r.open(behind(v2('2001:db8:1:2:0:0:0:1')));
    await assert.rejects(r.open(behind(v1('2001:db8:1:2:ffff::2'))), ConnectionError);
    assert.equal(await r.refused('address'), 2);
    assert.deepEqual(r.addresses, ['203.0.113.7', '203.0.113.8', '2001:db8:1:2::1']);
  });

  test('creation budgets per address count the header address', async (t) => {
    const relay = await startRelay({ proxyProtocol: true, creation: { perConnection: { burst: 100, perMinute: 100 }, perAddress: { burst: 1, perMinute: 1 } } });
    t.after(() => relay.stop());
    const open = async (header: Buffer) => {
      const c = await RelayClient.connect(relay.address, { webSocket: behind(header), timeoutMs: 5000 });
      t.after(() => c.close());
      return c;
    };
    const [a1, a2, b] = [await open(v1('203.0.113.7')), await open(v2('203.0.113.7')), await open(v1('203.0.113.8'))];
    await newQueue(a1);
    await assert.rejects(newQueue(a2), (e) => e instanceof RelayCommandError && e.error === 'RATE');
    await newQueue(b);
    const refused = (await relay.server.metrics.creationsRefused.get()).values;
    assert.deepEqual(Object.fromEntries(refused.map((v) => [v.labels.reason, v.value])), { rate_address: 1 });
  });

  test('no header, a malformed or oversized one, or none in time: closed and counted (proxy); LOCAL closed uncounted', async (t) => {
    const r = await recording(t, { proxyProtocol: true, limits: { handshakeTimeoutMs: 500 } });
    await assert.rejects(r.open(nodeWebSocket()), ConnectionError);
    assert.equal(await r.refused('proxy'), 1, 'a client without a header');
    await assert.rejects(r.open(behind(Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 99999 5224\r\n'))), ConnectionError);
    assert.equal(await r.refused('proxy'), 2, 'a malformed header');
    const oversized = Buffer.from(v2('203.0.113.7').subarray(0, 16));
    oversized.writeUInt16BE(4000, 14);
    await dropped(r.port, oversized);
    await dropped(r.port, Buffer.from(`PROXY TCP4 ${'9'.repeat(200)}`));
    assert.equal(await r.refused('proxy'), 4, 'oversized, v2 and v1');
    // none in time: silent, and a header cut short
    await Promise.all([dropped(r.port), dropped(r.port, v1('203.0.113.7').subarray(0, 20))]);
    assert.equal(await r.refused('proxy'), 6, 'none in time');
    // LOCAL (a balancer's health check), and v1's UNKNOWN
    await dropped(r.port, v2(), Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await dropped(r.port, Buffer.from('PROXY UNKNOWN\r\n'));
    assert.equal(await r.refused('proxy'), 6);
    assert.equal(await r.refused('http'), 0);
    assert.deepEqual(r.addresses, []);
    await r.open(behind(v2('203.0.113.7')));
  });

  test('behind the header the upgrade request still has its deadline: trickled, it is dropped (http)', async (t) => {
    const r = await recording(t, { proxyProtocol: true, limits: { handshakeTimeoutMs: 500 } });
    const socket = net.connect(r.port, '127.0.0.1');
    socket.on('error', () => {});
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write(Buffer.concat([v1('203.0.113.7'), Buffer.from('GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nX-Slow: ')]));
    // each byte well within the timeout: only the request's deadline stops it
    const trickle = setInterval(() => socket.write('a'), 20);
    await closed.finally(() => clearInterval(trickle));
    assert.equal(await r.refused('http'), 1);
    assert.equal(await r.refused('proxy'), 0);
  });

  test('closing the server drops the connections still waiting for their header, not after their timeout', { timeout: 20_000 }, async (t) => {
    const r = await recording(t, { proxyProtocol: true, limits: { handshakeTimeoutMs: 60_000 } });
    const waiting = dropped(r.port, v1('203.0.113.7').subarray(0, 10));
    // accepted after the one above: once its session is up, that one is being read
    let ended!: () => void;
    const closed = new Promise<void>((resolve) => (ended = resolve));
    await r.open(behind(v1('203.0.113.8')), () => ended());
    await r.server.close();
    await Promise.all([waiting, closed]);
    assert.equal(await r.refused('proxy'), 0);
  });
});

test('with the option off nothing reads a header: one is a bad request (http), clients connect as before with their TCP address', async (t) => {
  const r = await recording(t);
  await r.open(from('127.0.0.2'));
  await assert.rejects(r.open(behind(v1('203.0.113.7'))), ConnectionError);
  assert.equal(await r.refused('http'), 1);
  assert.equal(await r.refused('proxy'), 0);
  assert.deepEqual(r.addresses, ['127.0.0.2']);
});

const haproxy = fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : undefined;

test(
  "HAProxy's send-proxy and send-proxy-v2: each session has its client's address, not the balancer's",
  { skip: process.env.CI === 'true' || haproxy ? false : 'haproxy not installed (apt-get install haproxy)', timeout: 60_000 },
  async (t) => {
    const r = await recording(t, { proxyProtocol: true });
    const [p1, p2] = [await freePort(), await freePort()];
    const dir = tmpDir('hush-haproxy-');
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const config = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(
      config,
      [
        'defaults',
        '    mode tcp',
        '    timeout connect 5s',
        '    timeout client 60s',
        '    timeout server 60s',
        'listen v1',
        `    bind 127.0.0.1:${p1}`,
        `    server s1 127.0.0.1:${r.port} send-proxy`,
        'listen v2',
        `    bind 127.0.0.1:${p2}`,
        // its health checks (to this port, so with the header) are LOCAL
        `    server s2 127.0.0.1:${r.port} send-proxy-v2 check inter 100ms`,
        '',
      ].join('\n'),
    );
    const lb = spawn(haproxy ?? 'haproxy', ['-db', '-f', config], { stdio: 'ignore' });
    t.after(() => void lb.kill('SIGKILL'));
    const a = parseAddress(r.server.address);
    assert.ok(a.ok);
    const via = (port: number, localAddress: string) =>
      until(
        `a session through HAProxy from ${localAddress}`,
        () => RelayClient.connect(formatAddress({ ...a.value, port }), { webSocket: from(localAddress), timeoutMs: 5000, keepalive: false }).catch(() => undefined),
        15_000,
      );
    const clients = [await via(p1, '127.0.0.2'), await via(p2, '127.0.0.3')];
    t.after(() => clients.forEach((c) => c.close()));
    await until('both sessions', () => r.addresses.length >= 2);
    assert.deepEqual([...new Set(r.addresses)].sort(), ['127.0.0.2', '127.0.0.3']);
    assert.equal(await r.refused('proxy'), 0);
    assert.equal(await r.refused('http'), 0);
  },
);

describe('the proxyProtocol setting', () => {
  test('relay.json and ntf.json: off by default, on from the file or HUSH_<SERVER>_PROXY_PROTOCOL; the gateway has none', () => {
    const dir = tmpDir();
    assert.equal(loadRelayConfig(dir, {}).proxyProtocol, false);
    assert.equal(loadRelayConfig(dir, { HUSH_RELAY_PROXY_PROTOCOL: 'true' }).proxyProtocol, true);
    assert.equal(loadNtfConfig(dir, { HUSH_NTF_PROXY_PROTOCOL: 'true' }).proxyProtocol, true);
    fs.writeFileSync(path.join(dir, 'ntf.json'), JSON.stringify({ proxyProtocol: true }));
    assert.equal(loadNtfConfig(dir, {}).proxyProtocol, true);
    assert.throws(() => loadRelayConfig(dir, { HUSH_RELAY_PROXY_PROTOCOL: 'yes' }), /proxyProtocol.*HUSH_RELAY_PROXY_PROTOCOL/);
    fs.writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify({ proxyProtocol: true }));
    assert.throws(() => loadGatewayConfig(dir, {}), /proxyProtocol/);
  });

  test('`hush relay start` with HUSH_RELAY_PROXY_PROTOCOL=true reads the header', async (t) => {
    const dir = tmpDir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    initRelay({ dir, port: 0 });
    const relay = await runRelay(dir, { HUSH_RELAY_PROXY_PROTOCOL: 'true', HUSH_RELAY_METRICS_PORT: '0', HUSH_LOG_LEVEL: 'silent' });
    t.after(() => relay.stop());
    const c = await RelayClient.connect(relay.address, { webSocket: behind(v2('203.0.113.7')), timeoutMs: 5000 });
    await c.ping();
    c.close();
    await assert.rejects(RelayClient.connect(relay.address, { webSocket: nodeWebSocket(), timeoutMs: 5000 }), ConnectionError);
  });
});
