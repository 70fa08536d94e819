// Protocol client shared by every Hush protocol: opens a WebSocket, checks the
// server's identity against the pinned fingerprint, encrypts blocks, batches
// requests issued in the same tick into one block, and matches responses to
// requests by corrId. Runtime-neutral: the WebSocket comes through a factory
// (the platform's WebSocket by default; `ws` in Node, see node/websocket.ts).
import { BlockCipher, decodeBlock, encodeBlock, groupBlocks, maxItemLength } from './block.ts';
import { type ServerAddress, webSocketUrl } from './address.ts';
import { Encoder, latin1 } from './encoding.ts';
import type { CryptoSuite } from './crypto/suite.ts';
import { answerServerHello } from './handshake.ts';
import { sharedKey } from './keys.ts';
import {
  authenticator,
  decodeTransmission,
  encodeTransmission,
  signedPart,
  type Transmission,
} from './transmission.ts';

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export const platformWebSocket: WebSocketFactory = (url) =>
  new (globalThis as unknown as { WebSocket: new (u: string) => WebSocketLike }).WebSocket(url);

export interface ClientOptions {
  address: ServerAddress;
  protocol: string;
  versions: [number, number];
  blockSize: number;
  crypto: CryptoSuite;
  webSocket?: WebSocketFactory;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Server-initiated transmissions (empty corrId). */
  onEvent?: (entityId: Uint8Array, command: Uint8Array) => void;
  onClose?: (reason: string) => void;
  /** Probes of a quiet link; `false` turns them off. */
  keepalive?: Partial<KeepaliveOptions> | false;
  /** The protocol's PING command, sent to probe the link. */
  ping: Uint8Array;
  /** The round trip of each answered probe. */
  onPing?: (rttMs: number) => void;
}

/**
 * A link silently dropped (a NAT timeout, a partition) gives no close event:
 * only a probe notices. A link that has received or sent nothing for
 * `intervalMs` is PINGed; one that then receives nothing for `timeoutMs` is
 * closed, so its owner reconnects. Defaults: a dead link is closed within 20 s.
 */
export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { intervalMs: 10_000, timeoutMs: 10_000 };

export class ConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionError';
  }
}

interface Pending {
  resolve: (command: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class ProtocolClient {
  private outbox: Uint8Array[] = [];
  private flushQueued = false;
  private readonly pending = new Map<string, Pending>();
  private readonly authKeys = new WeakMap<Uint8Array, Uint8Array>();
  private nextCorrId = 1;
  private closedReason: string | undefined;
  private lastReceived = Date.now();
  private lastSent = Date.now();
  private probeTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly opts: ClientOptions,
    readonly version: number,
    readonly sessionId: Uint8Array,
    private readonly sessionKey: Uint8Array,
    private readonly sendCipher: BlockCipher,
    private readonly recvCipher: BlockCipher,
  ) {}

  static connect(opts: ClientOptions): Promise<ProtocolClient> {
    const { crypto, blockSize } = opts;
    const ws = (opts.webSocket ?? platformWebSocket)(webSocketUrl(opts.address));
    // Browsers default to Blobs: ask for ArrayBuffers. Node's `ws` gives Buffers (views of what the
    // socket read) unless asked for ArrayBuffers, which it would copy every block into.
    if (ws.binaryType !== 'nodebuffer') ws.binaryType = 'arraybuffer';
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        ws.onmessage = ws.onclose = ws.onerror = null;
        try {
          ws.close();
        } catch {}
        reject(new ConnectionError(why));
      };
      const timer = setTimeout(() => fail('handshake timeout'), opts.timeoutMs ?? 10_000);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        clearTimeout(timer);
        fail(`closed during handshake: ${ev.code} ${ev.reason}`);
      };
      ws.onmessage = (ev) => {
        clearTimeout(timer);
        const block = toBytes(ev.data);
        const hs = block ? answerServerHello(crypto, block, { ...opts, fingerprint: opts.address.fingerprint, blockSize }) : undefined;
        if (!hs?.ok) return fail(hs?.error ?? 'bad hello block');
        const { hello, version, send, recv } = hs.value;
        ws.send(encodeBlock([hs.value.clientHello], blockSize));
        const client = new ProtocolClient(ws, opts, version, hello.sessionId, hello.sessionKey, send, recv);
        client.attach();
        resolve(client);
      };
    });
  }

  private attach(): void {
    this.ws.onmessage = (ev) => {
      this.lastReceived = Date.now();
      this.receive(toBytes(ev.data));
    };
    this.ws.onclose = (ev) => this.closed(`connection closed: ${ev.code} ${ev.reason}`);
    this.ws.onerror = () => {};
    if (this.opts.keepalive !== false) this.watch(this.opts.ping, { ...DEFAULT_KEEPALIVE, ...this.opts.keepalive });
  }

  /**
   * PINGs when the link has received or sent nothing for intervalMs (so a live
   * client never looks idle to the server), and closes it when a PING has had
   * nothing back for timeoutMs. A timer that fires late (a throttled background
   * tab) sends a PING; only an unanswered PING closes the link.
   */
  private watch(ping: Uint8Array, k: KeepaliveOptions): void {
    let probeSentAt: number | undefined;
    const check = () => {
      if (this.closedReason !== undefined) return;
      const now = Date.now();
      if (probeSentAt !== undefined && this.lastReceived > probeSentAt) probeSentAt = undefined;
      if (probeSentAt !== undefined && now - probeSentAt >= k.timeoutMs) return this.close(`no answer to PING in ${now - probeSentAt} ms`);
      const quiet = now - Math.min(this.lastReceived, this.lastSent);
      if (probeSentAt === undefined && quiet >= k.intervalMs) {
        const sent = (probeSentAt = now);
        this.request(EMPTY, ping).then(
          () => {
            if (probeSentAt === sent) probeSentAt = undefined;
            this.opts.onPing?.(Date.now() - sent);
          },
          () => {},
        );
      }
      const due = probeSentAt !== undefined ? Math.min(k.intervalMs, probeSentAt + k.timeoutMs - now) : k.intervalMs - quiet;
      this.probeTimer = setTimeout(check, Math.max(1, due));
    };
    this.probeTimer = setTimeout(check, k.intervalMs);
  }

  get connected(): boolean {
    return this.closedReason === undefined;
  }

  /**
   * Sends a command and resolves with the response's command bytes.
   * `authKey` is the entity's X25519 private key; omit it for unauthenticated commands.
   */
  request(entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array): Promise<Uint8Array> {
    if (this.closedReason !== undefined) return Promise.reject(new ConnectionError(this.closedReason));
    const corrId = new Encoder(8).u32(0).u32(this.nextCorrId++).done();
    const signed = signedPart(corrId, entityId, command);
    const hmacKey = authKey && this.authKey(authKey);
    if (authKey && !hmacKey) return Promise.reject(new TypeError('not an X25519 private key'));
    const auth = hmacKey ? authenticator(this.opts.crypto, hmacKey, this.sessionId, signed) : new Uint8Array(0);
    const t = encodeTransmission(auth, signed);
    // Refused here: groupBlocks would throw later inside the flush microtask, which crashes the process.
    if (t.length > maxItemLength(this.sendCipher.contentSize))
      return Promise.reject(new RangeError('transmission larger than a block'));
    return new Promise((resolve, reject) => {
      const key = latin1(corrId);
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new ConnectionError('request timeout'));
      }, this.opts.timeoutMs ?? 30_000);
      this.pending.set(key, { resolve, reject, timer });
      this.enqueue(t);
    });
  }

  /** Sends raw transmission bytes as they are (for tests of bad input). */
  sendRaw(transmission: Uint8Array): void {
    this.enqueue(transmission);
  }

  /** Undefined only for a private key X25519 refuses (the session key was checked in the handshake). */
  private authKey(privateKey: Uint8Array): Uint8Array | undefined {
    let k = this.authKeys.get(privateKey);
    if (!k) {
      k = sharedKey(this.opts.crypto, privateKey, this.sessionKey, 'auth', { version: this.version });
      if (k) this.authKeys.set(privateKey, k);
    }
    return k;
  }

  private enqueue(t: Uint8Array): void {
    this.outbox.push(t);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    const items = this.outbox;
    this.outbox = [];
    if (this.closedReason !== undefined) return;
    this.lastSent = Date.now();
    for (const batch of groupBlocks(items, this.sendCipher.contentSize)) this.ws.send(this.sendCipher.sealItems(batch));
  }

  private receive(data: Uint8Array | undefined): void {
    const content = data && this.recvCipher.open(data);
    if (!content) return this.close('bad block from server');
    const items = decodeBlock(content);
    if (!items.ok) return this.close(`bad block from server: ${items.error}`);
    for (const item of items.value) {
      const t = decodeTransmission(item);
      if (!t.ok) return this.close(`bad transmission from server: ${t.error}`);
      this.dispatch(t.value);
    }
  }

  private dispatch(t: Transmission): void {
    if (t.corrId.length === 0) return this.opts.onEvent?.(t.entityId, t.command);
    const key = latin1(t.corrId);
    const p = this.pending.get(key);
    if (!p) return; // a response after its timeout
    this.pending.delete(key);
    clearTimeout(p.timer);
    p.resolve(t.command);
  }

  close(reason = 'closed by client'): void {
    if (this.closedReason !== undefined) return;
    try {
      this.ws.close(1000);
    } catch {}
    this.closed(reason);
  }

  private closed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    clearTimeout(this.probeTimer);
    this.ws.onmessage = this.ws.onclose = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new ConnectionError(reason));
    }
    this.pending.clear();
    this.opts.onClose?.(reason);
  }
}

const EMPTY = new Uint8Array(0);

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}
