// WebSocket server shared by every Hush protocol: handshake, block encryption,
// batching of replies, connection limits and backpressure. A protocol plugs
// in a handler per session; the handler works synchronously on in-memory state
// and the server holds every reply until `barrier()` (the store's durability
// flush) resolves, so nothing is acknowledged before it is safe on disk.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { formatAddress, fingerprintOf } from '../core/address.ts';
import { BlockCipher, decodeBlock, encodeBlock, groupBlocks } from '../core/block.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import {
  decodeClientHello,
  deriveBlockKeys,
  encodeServerHello,
  fingerprintMatches,
  signServerHello,
} from '../core/handshake.ts';
import { latin1 } from '../core/encoding.ts';
import { isValidPublicKey, sharedKey } from '../core/keys.ts';
import {
  decodeTransmission,
  encodeUnauthenticated,
  verifyAuthenticator,
  type Transmission,
} from '../core/transmission.ts';
import type { Logger } from 'pino';
import { capConnectionsPerAddress, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './connection-limits.ts';
import type { ConnectionMetrics } from './connection-metrics.ts';
import { ProxyProtocolListener } from './proxy-protocol.ts';

/** WebSocket close codes Hush servers use. */
export const CLOSE = {
  PROTOCOL: 4000, // bad block, bad hello, text frame
  VERSION: 4001,
  IDENTITY: 4002,
  HANDSHAKE_TIMEOUT: 4003,
  CONNECTIONS: 4004,
  BUSY: 4005,
  INTERNAL: 4006,
  IDLE: 4007,
  SLOW: 4008, // the client does not read what it is sent
} as const;

export interface SessionHandler {
  /** A transmission that decoded; the handler must answer it through session.reply. */
  transmission(t: Transmission): void;
  /** A transmission that did not decode: answer it with a syntax error. */
  malformed(corrId: Uint8Array, reason: string): void;
  closed(): void;
  /** The client caught up after `congested()` said it had not: events held back may go now. */
  drained?(): void;
}

/** What tells one Hush protocol from another on the wire. */
export interface ServerSpec {
  protocol: string;
  versions: [number, number];
  blockSize: number;
  /** Errors a protocol answers for transmissions it cannot take. */
  busyReply: Uint8Array;
}

/** Where and as whom a server listens: the options a relay or NTF server passes on to its ProtocolServer. */
export interface ListenerOptions {
  identity: KeyPair;
  crypto: CryptoSuite;
  host: string;
  port: number;
  /** Host name put in the printed address (defaults to `host`). */
  publicHost?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Behind a balancer that sends the PROXY protocol (HAProxy's send-proxy,
   * send-proxy-v2): every connection starts with its header, and the client
   * address in it is the connection's for every per-address limit.
   */
  proxyProtocol?: boolean;
  log: Logger;
}

export interface ProtocolServerOptions extends ServerSpec, ListenerOptions {
  /** Unset ones: DEFAULT_CONNECTION_LIMITS. */
  limits?: Partial<ConnectionLimits>;
  barrier: () => Promise<void> | void;
  /** Commands received wait for it before they run (a cluster member catching up with the others' writes). */
  gate?: () => Promise<void>;
  handler: (session: Session) => SessionHandler;
  metrics?: ConnectionMetrics;
}

/** What a Hush server (relay, NTF) plugs into its ProtocolServer. */
export interface ServerParts {
  limits: Partial<ConnectionLimits>;
  /** Replies wait for its flush: nothing is acknowledged before it is durable. */
  store: { flush(): Promise<void> | void };
  metrics: { connections: ConnectionMetrics };
  handler: (session: Session) => SessionHandler;
  gate?: () => Promise<void>;
}

/** The ProtocolServer of a Hush server: `spec` on the wire, listening where `listener` says. */
export function serveProtocol(spec: ServerSpec, listener: ListenerOptions, parts: ServerParts): ProtocolServer {
  const { identity, crypto, host, port, publicHost, tls, proxyProtocol, log } = listener;
  return new ProtocolServer({
    ...spec,
    identity,
    crypto,
    host,
    port,
    ...(publicHost !== undefined ? { publicHost } : {}),
    ...(tls ? { tls } : {}),
    ...(proxyProtocol ? { proxyProtocol } : {}),
    log,
    limits: parts.limits,
    barrier: () => parts.store.flush(),
    ...(parts.gate ? { gate: parts.gate } : {}),
    handler: parts.handler,
    metrics: parts.metrics.connections,
  });
}

let sessionCounter = 0;

export class Session {
  /** Log-safe session number (the sessionId itself is never logged). */
  readonly n = ++sessionCounter;
  handler!: SessionHandler;
  private outbox: Uint8Array[] = [];
  /** What the replies queued or waiting for the store will cost sealed (cost()), not yet given to the socket. */
  private held = 0;
  /** Transmissions received and not yet run (from `next` on): the rest of a block while the client is not reading. */
  private inbox: Uint8Array[] = [];
  private next = 0;
  /** Runs while the socket is paused: closes a session that stays over the cap too long. */
  private slowTimer: ReturnType<typeof setTimeout> | undefined;
  /** An event would have taken it past twice the cap: the next flush closes it. */
  private overflowed = false;
  /** While its own transmissions run: what they produce is bounded by the pause, not by `overflowed`. */
  private running = false;
  /** Commands wait for the server's gate. */
  private gated = false;
  /** congested() said yes: drained() is owed once the client has read down to half the cap. */
  private owed = false;
  private readonly authKeys = new Map<string, Uint8Array>();
  closed = false;
  /** When the last block arrived (ms). */
  lastReceived: number;

  constructor(
    private readonly server: ProtocolServer,
    private readonly ws: WebSocket,
    /** The peer's IP address, for per-address limits; never logged. */
    readonly address: string,
    readonly sessionId: Uint8Array,
    private readonly sessionKey: KeyPair,
    readonly version: number,
    private readonly cipherIn: BlockCipher,
    private readonly cipherOut: BlockCipher,
  ) {
    this.lastReceived = Date.now();
  }

  /**
   * True if `t` carries a valid authenticator for `publicKey` on this session;
   * `publicKey` undefined: `t`'s entity is unknown. The key is derived once per
   * (scope, entity ID, key) and session, then an HMAC per command: cheap on the
   * hot path, and useless on any other connection. An unknown entity, or a key
   * of small order, is checked alike against a stand-in (this session's own
   * public key, a valid point) and fails: every new ID costs one X25519, known
   * or not, on a fresh session as on a warm one. `scope` names the kind of ID
   * (recipient, sender...): one ID probed as two kinds costs two either way.
   */
  verify(t: Transmission, publicKey: Uint8Array | undefined, scope: string): boolean {
    const known = publicKey !== undefined && isValidPublicKey(publicKey);
    const key = known ? publicKey : this.sessionKey.publicKey;
    const id = authKeyId(scope, t.entityId, key);
    let k = this.authKeys.get(id);
    if (!k) {
      const { crypto } = this.server;
      // Should X25519 refuse a point the check let through, a random key keeps the work and the failure: never a zero key.
      k = sharedKey(crypto, this.sessionKey.privateKey, key, 'auth', { version: this.version }) ?? crypto.randomBytes(32);
      this.cacheAuthKey(id, k);
    }
    return verifyAuthenticator(this.server.crypto, k, this.sessionId, t) && known;
  }

  /**
   * `t`, just verified for `publicKey` under `scope`, created an entity whose
   * commands that key authenticates (a NEW's queue, a TNEW's token): its key
   * on this session is the one just derived, so the creator's next command
   * needs no second X25519. Only the creator's session learns anything from
   * it, and it knows the entity exists.
   */
  created(t: Transmission, publicKey: Uint8Array, scope: string, entityScope: string, entityId: Uint8Array): void {
    const k = this.authKeys.get(authKeyId(scope, t.entityId, publicKey));
    if (k) this.cacheAuthKey(authKeyId(entityScope, entityId, publicKey), k);
  }

  /** Bounded per session (part of its memory bound): the oldest key goes first. */
  private cacheAuthKey(id: string, k: Uint8Array): void {
    if (this.authKeys.size >= AUTH_KEY_CACHE) this.authKeys.delete(this.authKeys.keys().next().value!);
    this.authKeys.set(id, k);
  }

  /** Queues a reply (corrId set) or an event (empty corrId). */
  send(corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array): void {
    if (this.closed || this.overflowed) return;
    const item = encodeUnauthenticated(corrId, entityId, command);
    // Events from others come whether this client reads or not: past twice the cap
    // it is closed, by the flush (a handler may be iterating its sessions now).
    if (!this.running && this.buffered + this.cost(item) > 2 * this.server.limits.maxBufferedBytes) this.overflowed = true;
    else {
      this.outbox.push(item);
      this.held += this.cost(item);
    }
    this.server.markDirty(this);
  }

  /**
   * At most what a reply adds to the sealed blocks: twice its size with its
   * length prefix, and a block at most. Any two blocks in a row carry more
   * than a block's content, so a batch seals to less than its costs and a block.
   */
  private cost(item: Uint8Array): number {
    return Math.min(this.cipherOut.blockSize, 2 * (item.length + 2));
  }

  /**
   * True while the outbound bytes are at the cap: an event kept elsewhere (a
   * queued message, a kept NMSG) should wait, and the handler's drained() is
   * called once the client has read down to half the cap. So a busy client
   * that reads is paced, not closed.
   */
  congested(): boolean {
    if (this.buffered < this.server.limits.maxBufferedBytes) return false;
    this.owed = true;
    return true;
  }

  /** Outbound bytes: sealed blocks the socket has not sent, and what the replies not yet sealed will cost. */
  get buffered(): number {
    return this.ws.bufferedAmount + this.held;
  }

  takeOutbox(): Uint8Array[] {
    const o = this.outbox;
    this.outbox = [];
    return o;
  }

  writeBlocks(items: Uint8Array[]): void {
    if (this.closed) return;
    for (const item of items) this.held -= this.cost(item);
    if (this.overflowed) return this.slow('over twice maxBufferedBytes');
    for (const batch of groupBlocks(items, this.cipherOut.contentSize)) this.ws.send(this.cipherOut.sealItems(batch), this.sent);
    this.sent();
  }

  receive(data: Uint8Array): void {
    // ws still emits frames that arrive while the socket is closing: once this
    // session has closed (bad block, BUSY...), its commands must not run, or a
    // detached session could take subscriptions or store messages.
    if (this.closed) return;
    this.lastReceived = Date.now();
    const content = this.cipherIn.open(data);
    if (!content) return this.close(CLOSE.PROTOCOL, 'bad block');
    const items = decodeBlock(content);
    if (!items.ok) return this.close(CLOSE.PROTOCOL, `bad block: ${items.error}`);
    for (const item of items.value) this.inbox.push(item);
    const gate = this.server.opts.gate;
    if (!gate) return this.run();
    if (this.gated) return; // run when the gate opens
    this.gated = true;
    void gate().then(() => {
      this.gated = false;
      this.run();
    });
  }

  /**
   * Runs the received transmissions in order while the client reads what it
   * is sent. At maxBufferedBytes the rest wait and the socket is not read
   * until the client has caught up: a 70-byte GET answered by a 16 KB MSG
   * cannot make the server buffer more than the client takes.
   */
  private run(): void {
    if (this.gated) return;
    const { maxPending, maxBufferedBytes } = this.server.limits;
    this.running = true;
    try {
      while (this.next < this.inbox.length && !this.closed) {
        if (this.buffered >= maxBufferedBytes) return this.pause();
        const item = this.inbox[this.next++]!;
        const t = decodeTransmission(item);
        if (this.outbox.length >= maxPending) {
          if (this.outbox.length >= 2 * maxPending) return this.close(CLOSE.BUSY, 'too many pending commands');
          this.send(t.ok ? t.value.corrId : EMPTY, t.ok ? t.value.entityId : EMPTY, this.server.opts.busyReply);
          continue;
        }
        if (t.ok) this.handler.transmission(t.value);
        else this.handler.malformed(corrIdOf(item), t.error);
      }
    } finally {
      this.running = false;
    }
    this.inbox = [];
    this.next = 0;
  }

  private pause(): void {
    if (this.slowTimer) return;
    this.ws.pause();
    this.server.backpressure('paused');
    this.slowTimer = setTimeout(() => this.slow('over maxBufferedBytes too long'), this.server.limits.bufferedTimeoutMs);
  }

  /** After the socket took data: once the client has read down to half the cap, it is read again. */
  private readonly sent = (): void => {
    if (this.closed || this.buffered > this.server.limits.maxBufferedBytes / 2) return;
    if (this.owed) {
      this.owed = false;
      this.handler.drained?.();
    }
    if (!this.slowTimer) return;
    clearTimeout(this.slowTimer);
    this.slowTimer = undefined;
    this.ws.resume();
    this.run();
  };

  private slow(why: string): void {
    this.server.backpressure('closed', { session: this.n, why, bytes: this.buffered });
    this.close(CLOSE.SLOW, 'client not reading');
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason);
    this.detach();
  }

  detach(): void {
    if (this.closed) return;
    this.closed = true;
    this.outbox = [];
    this.inbox = [];
    if (this.slowTimer) {
      clearTimeout(this.slowTimer);
      // Read again, or the client's answer to the close frame would never be seen.
      this.ws.resume();
    }
    this.server.sessionClosed(this);
  }
}

const EMPTY = new Uint8Array(0);
/** Authenticator keys a session keeps: ~250 bytes each, and one X25519 to make again. */
const AUTH_KEY_CACHE = 1024;
const authKeyId = (scope: string, entityId: Uint8Array, key: Uint8Array) => `${scope}\0${latin1(entityId)}${latin1(key)}`;

/** Best-effort corrId of an undecodable transmission, so the client can match the error. */
function corrIdOf(item: Uint8Array): Uint8Array {
  const authLen = item[0];
  if (authLen === undefined || 1 + authLen >= item.length) return EMPTY;
  const len = item[1 + authLen]!;
  const start = 2 + authLen;
  return len <= 24 && start + len <= item.length ? item.slice(start, start + len) : EMPTY;
}

export class ProtocolServer {
  readonly crypto: CryptoSuite;
  private readonly http: http.Server;
  /** What listens: the http server, or the PROXY protocol reader that hands it the connections. */
  private readonly listener: NetServer;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<Session>();
  /** WebSockets within maxConnections, from accept (handshake included) until their socket has closed. */
  private admitted = 0;
  private dirty = new Set<Session>();
  private flushScheduled = false;
  private flushing: Promise<void> = Promise.resolve();
  private idleTimer: ReturnType<typeof setInterval> | undefined;
  readonly limits: ConnectionLimits;
  private readonly refusalLogged = new Map<string, number>();
  /** The address clients use (hush://fingerprint@publicHost:port), set by listen(). */
  address = '';

  constructor(readonly opts: ProtocolServerOptions) {
    this.crypto = opts.crypto;
    const limits = (this.limits = { ...DEFAULT_CONNECTION_LIMITS, ...opts.limits });
    // A reply must fit under the cap, or every one would close its session.
    if (limits.maxBufferedBytes < opts.blockSize) throw new RangeError(`maxBufferedBytes is at least a block (${opts.blockSize})`);
    // Slowloris: the upgrade request, trickled or not, must be complete within the
    // handshake timeout (Node checks it every connectionsCheckingInterval).
    const t = limits.handshakeTimeoutMs;
    const timeouts = { headersTimeout: t, requestTimeout: t, connectionsCheckingInterval: Math.min(1000, Math.max(10, t / 4)) };
    this.http = opts.tls
      ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: t, ...timeouts })
      : http.createServer(timeouts);
    capConnectionsPerAddress(this.http, limits.maxConnectionsPerAddress, () => this.refused('address'));
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code !== 'ECONNRESET') this.refused('http');
      socket.destroy();
    });
    this.http.on('request', (_req, res) => res.writeHead(426).end('WebSocket only\n'));
    this.listener = opts.proxyProtocol ? new ProxyProtocolListener(this.http, { timeoutMs: t, refused: () => this.refused('proxy') }) : this.http;
    this.wss = new WebSocketServer({ server: this.http, maxPayload: opts.blockSize, perMessageDeflate: false });
    this.wss.on('connection', (ws, req) => this.accept(ws, req.socket.remoteAddress ?? ''));
    opts.metrics?.bind(() => this.largestBuffered());
  }

  async listen(): Promise<number> {
    const port = await new Promise<number>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(this.opts.port, this.opts.host, () => resolve((this.listener.address() as AddressInfo).port));
    });
    this.idleTimer = setInterval(() => this.closeIdle(), Math.max(this.limits.idleTimeoutMs / 4, 10));
    this.idleTimer.unref();
    this.address = formatAddress({
      fingerprint: fingerprintOf(this.crypto, this.opts.identity.publicKey),
      host: this.opts.publicHost ?? this.opts.host,
      port,
      tls: this.opts.tls !== undefined,
    });
    return port;
  }

  /** Connections within maxConnections: in the handshake, in session, or closing. */
  get connections(): number {
    return this.admitted;
  }

  /** The outbound bytes of the session that has the most (a gauge for operators and the abuse benchmark). */
  largestBuffered(): number {
    let max = 0;
    for (const s of this.sessions) max = Math.max(max, s.buffered);
    return max;
  }

  /** Counts a refused connection; logs each reason at most once a minute (a flood must not flood the log). */
  private refused(reason: 'limit' | 'address' | 'http' | 'handshake' | 'proxy'): void {
    this.opts.metrics?.refused.inc({ reason });
    const now = Date.now();
    if (now - (this.refusalLogged.get(reason) ?? -Infinity) < 60_000) return;
    this.refusalLogged.set(reason, now);
    this.opts.log.warn({ event: 'connection_refused', reason, hint: 'counted in the connections_refused_total metric; logged once a minute' });
  }

  /** A session over its outbound cap: paused (reads stop), or closed 4008. */
  backpressure(event: 'paused' | 'closed', details?: Record<string, unknown>): void {
    this.opts.metrics?.backpressure.inc({ event });
    if (event === 'closed') this.opts.log.info({ event: 'slow_client_closed', ...details });
  }

  private accept(ws: WebSocket, address: string): void {
    const { crypto, blockSize } = this.opts;
    ws.on('error', () => {});
    if (this.admitted >= this.limits.maxConnections) {
      this.refused('limit');
      ws.close(CLOSE.CONNECTIONS, 'too many connections');
      return;
    }
    this.admitted++;
    let done = false;
    const finish = () => {
      done = true;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      finish();
      this.refused('handshake');
      ws.close(CLOSE.HANDSHAKE_TIMEOUT, 'handshake timeout');
    }, this.limits.handshakeTimeoutMs);
    ws.once('close', () => {
      finish();
      this.admitted--;
      // its slot is free (tests wait for this); a session closes in this same 'close' event
      this.opts.log.debug({ event: 'connection_closed' });
    });
    const sessionKey = crypto.x25519KeyPair();
    const sessionId = crypto.randomBytes(32);
    const hello = signServerHello(crypto, this.opts.identity.privateKey, {
      protocol: this.opts.protocol,
      minVersion: this.opts.versions[0],
      maxVersion: this.opts.versions[1],
      identityKey: this.opts.identity.publicKey,
      sessionKey: sessionKey.publicKey,
      sessionId,
    });
    ws.send(encodeBlock([encodeServerHello(hello)], blockSize));
    ws.once('message', (data, isBinary) => {
      if (done) return; // timed out: the socket is closing, a late hello starts nothing
      finish();
      const block = isBinary ? toU8(data) : undefined;
      const items = block?.length === blockSize ? decodeBlock(block) : undefined;
      const ch = items?.ok && items.value.length === 1 ? decodeClientHello(items.value[0]!) : undefined;
      if (!ch?.ok) return ws.close(CLOSE.PROTOCOL, 'bad client hello');
      const { version, fingerprint, clientKey } = ch.value;
      if (version < this.opts.versions[0] || version > this.opts.versions[1])
        return ws.close(CLOSE.VERSION, 'unsupported version');
      if (!fingerprintMatches(crypto, this.opts.identity.publicKey, fingerprint))
        return ws.close(CLOSE.IDENTITY, 'identity mismatch');
      const keys = deriveBlockKeys(crypto, sessionKey.privateKey, clientKey, sessionId, version);
      if (!keys) return ws.close(CLOSE.PROTOCOL, 'bad client key');
      const session = new Session(
        this,
        ws,
        address,
        sessionId,
        sessionKey,
        version,
        new BlockCipher(crypto, keys.clientToServer, blockSize),
        new BlockCipher(crypto, keys.serverToClient, blockSize),
      );
      session.handler = this.opts.handler(session);
      this.sessions.add(session);
      this.opts.metrics?.open.set(this.sessions.size);
      ws.on('message', (msg, binary) => {
        if (!binary) return session.close(CLOSE.PROTOCOL, 'text frame');
        session.receive(toU8(msg));
      });
      ws.on('close', () => session.detach());
    });
  }

  /** Closes sessions that sent nothing for idleTimeoutMs: a peer gone silently must not hold a slot. */
  private closeIdle(): void {
    const limit = Date.now() - this.limits.idleTimeoutMs;
    let n = 0;
    for (const s of this.sessions)
      if (s.lastReceived < limit) {
        s.close(CLOSE.IDLE, 'idle timeout');
        n++;
      }
    if (n > 0) this.opts.log.info({ event: 'idle_closed', sessions: n });
  }

  sessionClosed(session: Session): void {
    if (!this.sessions.delete(session)) return;
    this.dirty.delete(session);
    session.handler.closed();
    this.opts.metrics?.open.set(this.sessions.size);
  }

  markDirty(session: Session): void {
    this.dirty.add(session);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Group commit: one durability barrier for every reply queued since the last one. */
  private flush(): void {
    this.flushScheduled = false;
    const batch = [...this.dirty].map((s) => [s, s.takeOutbox()] as const);
    this.dirty.clear();
    // The barrier starts now, covering just this batch, so a store that syncs can
    // take the batches that pile up behind a slow sync into its next one; the
    // replies still leave in order, after those of earlier batches.
    const barrier = Promise.resolve().then(() => this.opts.barrier());
    this.flushing = Promise.all([this.flushing, barrier])
      .then(
        () => {
          for (const [s, items] of batch) {
            try {
              s.writeBlocks(items);
            } catch (err) {
              // A reply that fits no block is a server bug: drop that session, keep serving.
              this.opts.log.error({ event: 'reply_failed', session: s.n, err: String(err) });
              s.close(CLOSE.INTERNAL, 'reply too large');
            }
          }
        },
        (err) => {
          this.opts.log.error({ event: 'store_flush_failed', err: String(err) });
          for (const [s] of batch) s.close(CLOSE.INTERNAL, 'store failure');
        },
      );
  }

  /** Resolves when every reply queued so far has been written to its socket. */
  async drain(): Promise<void> {
    while (this.flushScheduled || this.dirty.size > 0) await new Promise((r) => setImmediate(r));
    await this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.idleTimer);
    for (const s of this.sessions) s.close(1001, 'server shutting down');
    // Sockets still in the handshake go at once; closing ones get a second to say goodbye.
    for (const ws of this.wss.clients) if (ws.readyState === ws.OPEN) ws.terminate();
    const terminateAll = () => {
      for (const ws of this.wss.clients) ws.terminate();
    };
    const grace = setTimeout(terminateAll, 1000);
    // Bounded: a peer that never answers the close handshake must not hold up shutdown.
    const closed = (f: (cb: () => void) => void) =>
      new Promise<void>((r) => {
        const t = setTimeout(r, 3000);
        f(() => {
          clearTimeout(t);
          r();
        });
      });
    await closed((cb) => this.wss.close(() => cb()));
    terminateAll();
    this.http.closeAllConnections();
    await closed((cb) => this.listener.close(() => cb()));
    // One that never listened still stops its request timers.
    if (this.listener !== this.http) this.http.close();
    clearTimeout(grace);
  }
}

function toU8(data: unknown): Uint8Array {
  if (Buffer.isBuffer(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  return new Uint8Array(data as ArrayBuffer);
}
