// The PROXY protocol (HAProxy's `send-proxy` v1 text, `send-proxy-v2` binary):
// a balancer in TCP mode says, in a header before the client's first byte,
// whose connection it is. Read before HTTP and TLS see the socket, so that
// every per-address limit counts the client, not the balancer.
import net from 'node:net';
import tls from 'node:tls';

/** A client's source address, or LOCAL: the balancer's own connection (a health check). */
export type ProxyHeader = { command: 'proxy'; address: string; port: number; length: number } | { command: 'local'; length: number };

/** The longest v1 line, CRLF included (the spec's bound). */
const V1_MAX = 107;
const V1_PREFIX = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
/**
 * The 16 fixed bytes and what they announce (IPv6 addresses take 36, and
 * TLVs such as ALPN): the spec fits headers into the smallest TCP segment
 * every host takes, 536 bytes.
 */
const V2_MAX = 536;

const startsLike = (buf: Buffer, prefix: Buffer) => buf.subarray(0, prefix.length).equals(prefix.subarray(0, Math.min(buf.length, prefix.length)));
const PORT = /^(0|[1-9][0-9]{0,4})$/;

/**
 * The header at the start of `buf`; 'more' while `buf` is the start of one
 * that is not complete yet (never past the bounds above); undefined when it
 * is no valid header — for a TCP client, none but IPv4 and IPv6 over a stream.
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader | 'more' | undefined {
  if (buf.length === 0) return 'more';
  if (startsLike(buf, V1_PREFIX)) return parseV1(buf);
  if (startsLike(buf, V2_SIGNATURE)) return parseV2(buf);
  return undefined;
}

function parseV1(buf: Buffer): ProxyHeader | 'more' | undefined {
  const end = buf.subarray(0, V1_MAX).indexOf('\r\n');
  if (end < 0) return buf.length < V1_MAX ? 'more' : undefined;
  const length = end + 2;
  const [, proto, src = '', dst = '', srcPort = '', dstPort = '', ...extra] = buf.toString('latin1', 0, end).split(' ');
  // UNKNOWN: the sender has no client address to give (its own connection), whatever follows.
  if (proto === 'UNKNOWN') return { command: 'local', length };
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  const valid =
    family !== 0 && extra.length === 0 && net.isIP(src) === family && net.isIP(dst) === family && [srcPort, dstPort].every((p) => PORT.test(p) && Number(p) <= 65535);
  return valid ? { command: 'proxy', address: src, port: Number(srcPort), length } : undefined;
}

function parseV2(buf: Buffer): ProxyHeader | 'more' | undefined {
  if (buf.length < 16) return 'more';
  const version = buf[12]! >> 4;
  const command = buf[12]! & 0xf;
  const length = 16 + buf.readUInt16BE(14);
  if (version !== 2 || command > 1 || length > V2_MAX) return undefined;
  if (buf.length < length) return 'more';
  if (command === 0) return { command: 'local', length };
  const family = buf[13]! >> 4;
  const stream = (buf[13]! & 0xf) === 1;
  const body = buf.subarray(16, length);
  if (stream && family === 1 && body.length >= 12) return { command: 'proxy', address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8), length };
  if (stream && family === 2 && body.length >= 36) return { command: 'proxy', address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32), length };
  return undefined;
}

/** Written as Node writes a peer's IPv6 address: IPv4-mapped as ::ffff:a.b.c.d (addressKey counts it as that IPv4 client), else shortest. */
function ipv6(b: Buffer): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b.readUInt16BE(10) === 0xffff) return `::ffff:${[...b.subarray(12)].join('.')}`;
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16)).join(':');
  // The URL parser writes IPv6 hosts in their shortest form (RFC 5952).
  return new URL(`http://[${groups}]/`).hostname.slice(1, -1);
}

interface Peer {
  address: string;
  port: number;
}

const peerKey = (socket: net.Socket) => `${socket.remoteAddress}|${socket.remotePort}`;

/** The rest of the stack (connection caps, sessions) sees the client's address where it reads the peer's. */
function presentAs(socket: net.Socket, peer: Peer): void {
  Object.defineProperties(socket, {
    remoteAddress: { value: peer.address },
    remotePort: { value: peer.port },
    remoteFamily: { value: net.isIPv6(peer.address) ? 'IPv6' : 'IPv4' },
  });
}

/**
 * Listens in front of `target` (an http or https server that does not listen
 * itself): every connection must start with a PROXY header within
 * `timeoutMs`, or it is closed and `refused()`; then `target` gets it
 * ('connection'), with the bytes after the header still to read and the
 * client's address as its peer. LOCAL is closed without a word.
 */
export class ProxyProtocolListener extends net.Server {
  /** Connections whose header has not come yet. */
  private readonly pending = new Set<net.Socket>();
  /**
   * For a TLS target: the client of each connection handed on, by the
   * balancer's end of it. The TLS socket wrapping it reads its peer from the
   * descriptor, so it is found by that, and told the client's address too.
   */
  private readonly tlsClients: Map<string, Peer> | undefined;

  constructor(
    private readonly target: net.Server,
    private readonly opts: { timeoutMs: number; refused: () => void },
  ) {
    // As http.Server takes its own connections: it decides about half-closed ones.
    super({ allowHalfOpen: true, noDelay: true });
    this.on('connection', (socket: net.Socket) => this.readHeader(socket));
    // http checks its request timeouts (headersTimeout, requestTimeout) only from its 'listening' on.
    this.on('listening', () => target.emit('listening'));
    if (target instanceof tls.Server) {
      const clients = (this.tlsClients = new Map());
      target.on('secureConnection', (socket: tls.TLSSocket) => {
        const peer = clients.get(peerKey(socket));
        if (peer) presentAs(socket, peer);
      });
    }
  }

  private readHeader(socket: net.Socket): void {
    this.pending.add(socket);
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(), this.opts.timeoutMs);
    const done = () => {
      clearTimeout(timer);
      this.pending.delete(socket);
      socket.off('readable', read).off('end', fail);
    };
    const fail = () => {
      done();
      socket.destroy();
      this.opts.refused();
    };
    const read = () => {
      for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const header = parseProxyHeader(buf);
      if (header === 'more') return;
      if (!header) return fail();
      done();
      if (header.command === 'local') return void socket.destroy();
      if (buf.length > header.length) socket.unshift(buf.subarray(header.length));
      const clients = this.tlsClients;
      if (clients) {
        const key = peerKey(socket);
        clients.set(key, header);
        socket.once('close', () => clients.delete(key));
      }
      presentAs(socket, header);
      this.target.emit('connection', socket);
    };
    // A reset before the header: 'close' follows (and http takes errors over with the socket).
    socket.on('error', () => {});
    socket.once('close', done);
    socket.on('readable', read).on('end', fail);
  }

  /** Stops listening and drops the connections still without a header; those handed on are the target's to close. */
  override close(callback?: (err?: Error) => void): this {
    for (const socket of this.pending) socket.destroy();
    return super.close(callback);
  }
}
