// WebSocket server shared by every Hush protocol: handshake, block encryption,
// batching of replies, connection and pending-command limits. A protocol plugs
// in a handler per session; the handler works synchronously on in-memory state
// and the server holds every reply until `barrier()` (the store's durability
// flush) resolves, so nothing is acknowledged before it is safe on disk.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
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
import {
  decodeTransmission,
  encodeUnauthenticated,
  verifyAuthenticator,
  type Transmission,
} from '../core/transmission.ts';
import type { Logger } from 'pino';

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
} as const;

export interface SessionHandler {
  /** A transmission that decoded; the handler must answer it through session.reply. */
  transmission(t: Transmission): void;
  /** A transmission that did not decode: answer it with a syntax error. */
  malformed(corrId: Uint8Array, reason: string): void;
  closed(): void;
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
  log: Logger;
}

export interface ProtocolServerOptions extends ServerSpec, ListenerOptions {
  maxConnections: number;
  /** Replies a session may have waiting before new commands get BUSY. */
  maxPending: number;
  handshakeTimeoutMs?: number;
  /** A session that sends nothing for this long is closed (clients PING quiet links well within it). */
  idleTimeoutMs?: number;
  barrier: () => Promise<void> | void;
  handler: (session: Session) => SessionHandler;
  onConnections?: (n: number) => void;
}

/** What a Hush server (relay, NTF) plugs into its ProtocolServer. */
export interface ServerParts {
  limits: { maxConnections: number; maxPending: number; idleTimeoutMs?: number };
  /** Replies wait for its flush: nothing is acknowledged before it is durable. */
  store: { flush(): Promise<void> | void };
  metrics: { connections: { set(n: number): void } };
  handler: (session: Session) => SessionHandler;
}

/** The ProtocolServer of a Hush server: `spec` on the wire, listening where `listener` says. */
export function serveProtocol(spec: ServerSpec, listener: ListenerOptions, parts: ServerParts): ProtocolServer {
  const { identity, crypto, host, port, publicHost, tls, log } = listener;
  return new ProtocolServer({
    ...spec,
    identity,
    crypto,
    host,
    port,
    ...(publicHost !== undefined ? { publicHost } : {}),
    ...(tls ? { tls } : {}),
    log,
    maxConnections: parts.limits.maxConnections,
    maxPending: parts.limits.maxPending,
    ...(parts.limits.idleTimeoutMs !== undefined ? { idleTimeoutMs: parts.limits.idleTimeoutMs } : {}),
    barrier: () => parts.store.flush(),
    handler: parts.handler,
    onConnections: (n) => parts.metrics.connections.set(n),
  });
}

/** Clients PING after 10 s of quiet; a browser tab in the background may fire timers only once a minute. */
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

let sessionCounter = 0;

export class Session {
  /** Log-safe session number (the sessionId itself is never logged). */
  readonly n = ++sessionCounter;
  handler!: SessionHandler;
  private outbox: Uint8Array[] = [];
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
   * True if `t` carries a valid authenticator for `publicKey` on this session.
   * The X25519 secret is computed once per key and session, then an HMAC per
   * command: cheap on the hot path, and useless on any other connection.
   */
  verify(t: Transmission, publicKey: Uint8Array): boolean {
    const id = keyId(publicKey);
    let k = this.authKeys.get(id);
    if (!k) {
      k = this.server.crypto.x25519(this.sessionKey.privateKey, publicKey) ?? new Uint8Array(32);
      if (this.authKeys.size >= 100_000) this.authKeys.clear();
      this.authKeys.set(id, k);
    }
    return verifyAuthenticator(this.server.crypto, k, this.sessionId, t);
  }

  /** Queues a reply (corrId set) or an event (empty corrId). */
  send(corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array): void {
    if (this.closed) return;
    this.outbox.push(encodeUnauthenticated(corrId, entityId, command));
    this.server.markDirty(this);
  }

  get pending(): number {
    return this.outbox.length;
  }

  takeOutbox(): Uint8Array[] {
    const o = this.outbox;
    this.outbox = [];
    return o;
  }

  writeBlocks(items: Uint8Array[]): void {
    if (this.closed) return;
    for (const batch of groupBlocks(items, this.cipherOut.contentSize)) this.ws.send(this.cipherOut.sealItems(batch));
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
    for (const item of items.value) {
      const t = decodeTransmission(item);
      if (this.outbox.length >= this.server.opts.maxPending) {
        if (this.outbox.length >= 2 * this.server.opts.maxPending) return this.close(CLOSE.BUSY, 'too many pending commands');
        this.send(t.ok ? t.value.corrId : EMPTY, t.ok ? t.value.entityId : EMPTY, this.server.opts.busyReply);
        continue;
      }
      if (t.ok) this.handler.transmission(t.value);
      else this.handler.malformed(corrIdOf(item), t.error);
    }
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
    this.server.sessionClosed(this);
  }
}

const EMPTY = new Uint8Array(0);
const keyId = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

/** Best-effort corrId of an undecodable transmission, so the client can match the error. */
function corrIdOf(item: Uint8Array): Uint8Array {
  const authLen = item[0];
  if (authLen === undefined || 1 + authLen >= item.length) return EMPTY;
  const len = item[1 + authLen]!;
  const start = 2 + authLen;
  return len <= 24 && start + len <= item.length ? item.slice(start, start + len) : EMPTY;
}

/**
 * The error for a transmission whose shape does not fit its command: an entity
 * ID and an authenticator either required or forbidden. Undefined if it fits.
 */
export function shapeError(
  t: Transmission,
  entity: boolean,
  auth: boolean,
): 'NO_ENTITY' | 'HAS_ENTITY' | 'NO_AUTH' | 'HAS_AUTH' | undefined {
  if (entity !== t.entityId.length > 0) return entity ? 'NO_ENTITY' : 'HAS_ENTITY';
  if (auth !== t.auth.length > 0) return auth ? 'NO_AUTH' : 'HAS_AUTH';
  return undefined;
}

export class ProtocolServer {
  readonly crypto: CryptoSuite;
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<Session>();
  private handshaking = 0;
  private dirty = new Set<Session>();
  private flushScheduled = false;
  private flushing: Promise<void> = Promise.resolve();
  private idleTimer: ReturnType<typeof setInterval> | undefined;
  private readonly idleTimeoutMs: number;
  /** The address clients use (hush://fingerprint@publicHost:port), set by listen(). */
  address = '';

  constructor(readonly opts: ProtocolServerOptions) {
    this.crypto = opts.crypto;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.http = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }) : http.createServer();
    this.http.on('request', (_req, res) => res.writeHead(426).end('WebSocket only\n'));
    this.wss = new WebSocketServer({ server: this.http, maxPayload: opts.blockSize, perMessageDeflate: false });
    this.wss.on('connection', (ws, req) => this.accept(ws, req.socket.remoteAddress ?? ''));
  }

  async listen(): Promise<number> {
    const port = await new Promise<number>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => resolve((this.http.address() as AddressInfo).port));
    });
    this.idleTimer = setInterval(() => this.closeIdle(), Math.max(this.idleTimeoutMs / 4, 10));
    this.idleTimer.unref();
    this.address = formatAddress({
      fingerprint: fingerprintOf(this.crypto, this.opts.identity.publicKey),
      host: this.opts.publicHost ?? this.opts.host,
      port,
      tls: this.opts.tls !== undefined,
    });
    return port;
  }

  get connections(): number {
    return this.sessions.size + this.handshaking;
  }

  private accept(ws: WebSocket, address: string): void {
    const { crypto, blockSize, log } = this.opts;
    if (this.connections >= this.opts.maxConnections) {
      log.warn({ event: 'connection_refused', reason: 'limit' });
      ws.close(CLOSE.CONNECTIONS, 'too many connections');
      return;
    }
    this.handshaking++;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        this.handshaking--;
        clearTimeout(timer);
      }
    };
    const timer = setTimeout(() => {
      finish();
      ws.close(CLOSE.HANDSHAKE_TIMEOUT, 'handshake timeout');
    }, this.opts.handshakeTimeoutMs ?? 10_000);
    ws.on('error', () => {});
    ws.once('close', finish);
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
      const dh = crypto.x25519(sessionKey.privateKey, clientKey);
      if (!dh) return ws.close(CLOSE.PROTOCOL, 'bad client key');
      const keys = deriveBlockKeys(crypto, dh, sessionId);
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
      this.opts.onConnections?.(this.sessions.size);
      ws.on('message', (msg, binary) => {
        if (!binary) return session.close(CLOSE.PROTOCOL, 'text frame');
        session.receive(toU8(msg));
      });
      ws.on('close', () => session.detach());
    });
  }

  /** Closes sessions that sent nothing for idleTimeoutMs: a peer gone silently must not hold a slot. */
  private closeIdle(): void {
    const limit = Date.now() - this.idleTimeoutMs;
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
    this.opts.onConnections?.(this.sessions.size);
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
            if (items.length === 0) continue;
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
    await closed((cb) => this.http.close(() => cb()));
    clearTimeout(grace);
  }
}

function toU8(data: unknown): Uint8Array {
  if (Buffer.isBuffer(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  return new Uint8Array(data as ArrayBuffer);
}
