// What one client may hold of a server: connections (in all, and per address),
// time to finish its handshake, and bytes the server buffers for it. The same
// settings in relay.json and ntf.json (`limits`); the push gateway caps
// connections per address too.
import type net from 'node:net';
import { nonNegativeSchema, positiveSchema as positive, type EnvMap } from './config.ts';

export interface ConnectionLimits {
  /** Open connections at most, all addresses together; over it a connection is closed 4004 instead of a hello. */
  maxConnections: number;
  /** TCP connections per client address (an IPv6 client: per /64), from accept to close; 0: no cap. */
  maxConnectionsPerAddress: number;
  /** Replies a session may have waiting before new commands get BUSY. */
  maxPending: number;
  /**
   * Outbound bytes of a session (sealed blocks its socket has not taken, and
   * replies waiting for the store) at which the server stops reading it; it
   * reads again at half of this. Closed (4008) when an event from elsewhere
   * would take it past twice this (plus what its own last command added).
   */
  maxBufferedBytes: number;
  /** A session that stays over maxBufferedBytes this long is closed (4008). */
  bufferedTimeoutMs: number;
  /** Each of the HTTP upgrade request (TLS handshake included) and the hello exchange must finish within this. */
  handshakeTimeoutMs: number;
  /** A session that sends no complete block for this long is closed (4007). */
  idleTimeoutMs: number;
}

/** Clients PING after 10 s of quiet; a browser tab in the background may fire timers only once a minute. */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/** Defaults a public server can run with. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 10_000,
  // Carrier-grade NAT puts many phones behind one address: room for them, not for one client's thousands.
  maxConnectionsPerAddress: 100,
  maxPending: 4096,
  // On top of the kernel's socket buffers (megabytes), which carry a client's throughput: this only bounds a stalled one.
  maxBufferedBytes: 256 * 1024,
  bufferedTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
};

const d = DEFAULT_CONNECTION_LIMITS;

/** The `limits` settings of relay.json and ntf.json (the idle timeout is each server's own: limits or liveness). */
export const connectionLimitFields = {
  maxConnections: positive.default(d.maxConnections),
  maxConnectionsPerAddress: nonNegativeSchema.default(d.maxConnectionsPerAddress),
  maxPending: positive.default(d.maxPending),
  maxBufferedKB: positive.default(d.maxBufferedBytes / 1024),
  bufferedTimeoutSeconds: positive.default(d.bufferedTimeoutMs / 1000),
  handshakeTimeoutSeconds: positive.default(d.handshakeTimeoutMs / 1000),
};

/** `prefix` + MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, MAX_PENDING, MAX_BUFFERED_KB, BUFFERED_TIMEOUT_SECONDS, HANDSHAKE_TIMEOUT_SECONDS. */
export const connectionLimitsEnv = (prefix: string): EnvMap => ({
  [`${prefix}MAX_CONNECTIONS`]: 'limits.maxConnections',
  [`${prefix}MAX_CONNECTIONS_PER_ADDRESS`]: 'limits.maxConnectionsPerAddress',
  [`${prefix}MAX_PENDING`]: 'limits.maxPending',
  [`${prefix}MAX_BUFFERED_KB`]: 'limits.maxBufferedKB',
  [`${prefix}BUFFERED_TIMEOUT_SECONDS`]: 'limits.bufferedTimeoutSeconds',
  [`${prefix}HANDSHAKE_TIMEOUT_SECONDS`]: 'limits.handshakeTimeoutSeconds',
});

type LimitSettings = { [K in keyof typeof connectionLimitFields]: number };

/** ConnectionLimits from the settings (seconds, KB) and the idle timeout. */
export const connectionLimitsOf = (l: LimitSettings, idleTimeoutSeconds: number): ConnectionLimits => ({
  maxConnections: l.maxConnections,
  maxConnectionsPerAddress: l.maxConnectionsPerAddress,
  maxPending: l.maxPending,
  maxBufferedBytes: l.maxBufferedKB * 1024,
  bufferedTimeoutMs: l.bufferedTimeoutSeconds * 1000,
  handshakeTimeoutMs: l.handshakeTimeoutSeconds * 1000,
  idleTimeoutMs: idleTimeoutSeconds * 1000,
});

/**
 * The key a client address is counted under: an IPv4 address (also when
 * mapped into IPv6) as it is, an IPv6 address by its /64 — a subscriber
 * usually holds a whole /64, so it would otherwise have 2^64 addresses.
 */
export function addressKey(ip: string): string {
  if (ip.startsWith('::ffff:') && ip.includes('.')) return ip.slice(7);
  if (!ip.includes(':')) return ip;
  const [head = '', tail] = ip.split('::');
  const groups = head ? head.split(':') : [];
  if (tail !== undefined) {
    // "::" stands for the zero groups between head and tail (a dotted IPv4 tail is two groups).
    const rest = tail ? tail.split(':') : [];
    const zeros = 8 - groups.length - rest.length - (tail.includes('.') ? 1 : 0);
    groups.push(...Array<string>(Math.max(0, zeros)).fill('0'), ...rest);
  }
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Caps the TCP connections `server` holds per client address (addressKey),
 * counted from accept to close, so a handshake in progress and a socket
 * closing both count. A connection over the cap is destroyed at once, before
 * any byte is read. Behind a proxy every client has the proxy's address,
 * unless the proxy names the client in a PROXY protocol header (proxy-protocol.ts,
 * which hands `server` the connection with that address once it is read).
 */
export function capConnectionsPerAddress(server: net.Server, max: number, refused: () => void): void {
  if (max <= 0) return;
  const open = new Map<string, number>();
  server.on('connection', (socket: net.Socket) => {
    const key = addressKey(socket.remoteAddress ?? '');
    const n = open.get(key) ?? 0;
    if (n >= max) {
      socket.destroy();
      refused();
      return;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = open.get(key)! - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    });
  });
}
