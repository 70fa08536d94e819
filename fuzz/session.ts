// The fuzzer's side of a Hush protocol connection (relay or NTF), built from
// the core pieces (handshake, block, transmission) rather than ProtocolClient:
// it must send what a client never would — bad hellos, bad blocks, transmissions
// with any corrId — and see every transmission the server sends back.
//
// How "every input gets an answer or a close" is checked: a server answers the
// transmissions of a block in order, so each batch ends with a PING under a
// corrId of the fuzzer's own (the sentinel). Once its PONG is back, the batch
// must have had its answers: every transmission back counts as one but events
// (empty corrId and an event tag), and there must be at least as many as the
// batch had transmissions, less those that decode with an empty corrId (whose
// answers cannot be told from events). A connection that neither answers the
// sentinel nor closes within the bound is a hang.
import WebSocket from 'ws';
import { decodeBlock, encodeBlock, maxItemLength } from '../src/core/block.ts';
import type { CryptoSuite } from '../src/core/crypto/suite.ts';
import { Encoder } from '../src/core/encoding.ts';
import { answerServerHello, type ClientHandshake } from '../src/core/handshake.ts';
import { sharedKey } from '../src/core/keys.ts';
import { authenticator, decodeTransmission, encodeTransmission, signedPart } from '../src/core/transmission.ts';

/** A relay or notification server as the fuzzer sees it. */
export interface Target {
  name: 'relay' | 'ntf';
  /** ws://127.0.0.1:port/ */
  url: string;
  fingerprint: Uint8Array;
  protocol: string;
  versions: [number, number];
  blockSize: number;
  /** The protocol's encoded PING. */
  ping: Uint8Array;
  /** Tags the server sends unasked (empty corrId): not answers. */
  events: ReadonlySet<string>;
  crypto: CryptoSuite;
  /** How long an input may go without an answer or a close. */
  hangMs: number;
}

/** How an input ended: answered (the sentinel came back) or closed by the server; a hang is neither. */
export type Outcome = 'answered' | 'closed' | 'hang';

/** What the session saw that breaks the protocol from the server's side (a block that does not open…). */
export type BadReply = (why: string) => void;

const EMPTY = new Uint8Array(0);
/** First byte of the sentinel's corrId (the fuzzer's own corrIds start with 0). */
export const SENTINEL = 0xfe;
const key = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

/** Opens a WebSocket and resolves with the server's hello block, or the close that came instead. */
export function dial(t: Target): Promise<{ ws: WebSocket; hello?: Uint8Array; closed?: true; hang?: true }> {
  const ws = new WebSocket(t.url, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  ws.on('error', () => {});
  return new Promise((resolve) => {
    const timer = setTimeout(() => done({ ws, hang: true }), t.hangMs);
    const done = (r: { ws: WebSocket; hello?: Uint8Array; closed?: true; hang?: true }) => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
      resolve(r);
    };
    const onMessage = (data: Buffer) => done({ ws, hello: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    const onClose = () => done({ ws, closed: true });
    ws.on('message', onMessage);
    ws.on('close', onClose);
  });
}

/** The client hello a well-behaved client would answer `block` with, and the ciphers both sides then use. */
export function keysFor(t: Target, block: Uint8Array, bad: BadReply): ClientHandshake | undefined {
  const hs = answerServerHello(t.crypto, block, t);
  return hs.ok ? hs.value : void bad(hs.error);
}

export class FuzzSession {
  private readonly pending = new Map<string, (r: Uint8Array | undefined) => void>();
  private readonly authKeys = new WeakMap<Uint8Array, Uint8Array>();
  private corr = 0;
  /** Transmissions received that answer something (not events). */
  answers = 0;
  /** What came back, by tag ("ERR AUTH" for errors): the handlers the inputs reached. */
  readonly tags = new Map<string, number>();
  isClosed = false;
  /** Each transmission the server sends, decoded (events included). */
  onItem: ((corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array) => void) | undefined;
  /** The last block sealed, for the replay input. */
  lastBlock: Uint8Array | undefined;

  private constructor(
    readonly target: Target,
    private readonly ws: WebSocket,
    private readonly keys: ClientHandshake,
    private readonly bad: BadReply,
  ) {
    ws.on('message', (data: Buffer, binary: boolean) => this.receive(data, binary));
    ws.on('close', () => this.closed());
  }

  /** A session after a well-formed handshake; else how the server met the connection (closed it, or said nothing). */
  static async open(t: Target, bad: BadReply): Promise<FuzzSession | Outcome> {
    const d = await dial(t);
    const keys = d.hello && keysFor(t, d.hello, bad);
    if (!keys) {
      d.ws.terminate();
      return d.hang ? 'hang' : 'closed';
    }
    d.ws.send(encodeBlock([keys.clientHello], t.blockSize));
    return new FuzzSession(t, d.ws, keys, bad);
  }

  get contentSize(): number {
    return this.keys.send.contentSize;
  }

  /** Largest transmission a block of this session carries. */
  get maxItem(): number {
    return maxItemLength(this.contentSize);
  }

  /** A corrId no fuzzed transmission has: 8 bytes, counting. */
  nextCorrId(): Uint8Array {
    return new Encoder(8).u32(0).u32(++this.corr).done();
  }

  /** A transmission signed with `authKey` (an X25519 private key) on this session, or unsigned. */
  transmission(corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array): Uint8Array {
    const signed = signedPart(corrId, entityId, command);
    const auth = authKey ? authenticator(this.target.crypto, this.authKey(authKey), this.keys.hello.sessionId, signed) : EMPTY;
    return encodeTransmission(auth, signed);
  }

  private authKey(privateKey: Uint8Array): Uint8Array {
    let k = this.authKeys.get(privateKey);
    if (!k) {
      // the session key was checked in the handshake: the derivation cannot fail
      k = sharedKey(this.target.crypto, privateKey, this.keys.hello.sessionKey, 'auth', { version: this.keys.version })!;
      this.authKeys.set(privateKey, k);
    }
    return k;
  }

  /** One command, answered: its response's command bytes, or undefined on a close or a hang. */
  call(entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array): Promise<Uint8Array | undefined> {
    const corrId = this.nextCorrId();
    const reply = this.expect(corrId);
    this.sendBlock([this.transmission(corrId, entityId, command, authKey)]);
    return reply;
  }

  /**
   * Sends `items` in one block, the sentinel PING last, and waits for its answer.
   * `strict` is how many of the items must have been answered by then (all
   * but those that decode with an empty corrId, whose answers look like events).
   */
  async exchange(items: Uint8Array[]): Promise<{ outcome: Outcome; unanswered: number }> {
    const strict = items.reduce((n, it) => {
      const t = decodeTransmission(it);
      return t.ok && t.value.corrId.length === 0 ? n : n + 1;
    }, 0);
    const before = this.answers;
    const corrId = this.nextCorrId();
    corrId[0] = SENTINEL;
    const reply = this.expect(corrId);
    this.sendBlock([...items, this.transmission(corrId, EMPTY, this.target.ping)]);
    const r = await reply;
    if (r === undefined) return { outcome: this.isClosed ? 'closed' : 'hang', unanswered: 0 };
    // the sentinel's own answer is one of the answers counted
    return { outcome: 'answered', unanswered: Math.max(0, strict - (this.answers - before - 1)) };
  }

  /** Waits for the answer to `corrId`, a close, or the hang bound. */
  private expect(corrId: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.isClosed) return Promise.resolve(undefined);
    const k = key(corrId);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(k);
        resolve(undefined);
      }, this.target.hangMs);
      this.pending.set(k, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  sendBlock(items: Uint8Array[]): void {
    if (this.isClosed) return;
    this.lastBlock = this.keys.send.sealItems(items);
    this.ws.send(this.lastBlock);
  }

  /** Seals arbitrary content (the right size or not) under the session's next nonce. */
  sealRaw(content: Uint8Array): Uint8Array {
    return this.keys.send.seal(content);
  }

  sendFrame(data: Uint8Array | string): void {
    if (!this.isClosed) this.ws.send(data, { binary: typeof data !== 'string' });
  }

  private receive(data: Buffer, binary: boolean): void {
    const content = binary ? this.keys.recv.open(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) : undefined;
    if (!content) return this.fail('a block from the server does not open');
    const items = decodeBlock(content);
    if (!items.ok) return this.fail(`a block from the server does not decode: ${items.error}`);
    for (const item of items.value) {
      const t = decodeTransmission(item);
      if (!t.ok) return this.fail(`a transmission from the server does not decode: ${t.error}`);
      const { corrId, entityId, command } = t.value;
      this.onItem?.(corrId, entityId, command);
      const tag = tagOf(command);
      const name = tag === 'ERR' ? `ERR ${tagOf(command.subarray(4))}` : tag;
      this.tags.set(name, (this.tags.get(name) ?? 0) + 1);
      if (corrId.length > 0 || !this.target.events.has(tag)) this.answers++;
      const p = corrId.length > 0 ? this.pending.get(key(corrId)) : undefined;
      if (p) {
        this.pending.delete(key(corrId));
        p(command);
      }
    }
  }

  private fail(why: string): void {
    this.bad(why);
    this.close();
  }

  close(): void {
    this.ws.terminate();
    this.closed();
  }

  private closed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const p of this.pending.values()) p(undefined);
    this.pending.clear();
  }
}

/** The tag a command or response starts with ('' if none). */
export function tagOf(command: Uint8Array): string {
  const n = command[0] ?? 0;
  return n === 0 || n >= command.length ? '' : String.fromCharCode(...command.subarray(1, 1 + n));
}
