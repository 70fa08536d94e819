// End-to-end encryption between two contacts (docs/sdk.md §3).
//
// The invitation carries the inviter's X25519 key; the acceptor's first message
// carries its own. Both sides compute one shared secret and derive two chain
// keys from it, one per direction. Every message steps its direction's chain
// (a symmetric hash ratchet): the message key is used once and the chain moves
// on, so a key taken from a device later opens no message received before
// (forward secrecy). There is no DH ratchet step, so no healing after such a
// compromise (docs/sdk.md says why).
//
// Every envelope is exactly E2E_BODY_SIZE bytes, whatever it holds, so the
// relay (which stores what the sender SENDs) learns nothing from lengths.
import { concat, Decoder, Encoder, padTo, parse, ParseError, unpad, type Parsed } from '../core/encoding.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import { sharedKey } from '../core/keys.ts';
import { MAX_MESSAGE_BYTES } from '../relay/protocol.ts';

export const E2E_VERSION = 1;
/** Every SEND body: the relay's largest, so all messages look alike. */
export const E2E_BODY_SIZE = MAX_MESSAGE_BYTES;
/** How far ahead of the next expected message one may arrive (keys for the gap are kept). */
export const MAX_SKIP = 256;

const FIRST = 1;
const NEXT = 2;
const TAG = 16;
const FIRST_HEADER = 2 + 33 + 4;
const NEXT_HEADER = 2 + 4;
/** Largest plain content of an envelope (the smaller, first-message one). */
export const MAX_CONTENT_BYTES = E2E_BODY_SIZE - FIRST_HEADER - TAG - 4;

const MESSAGE_INFO = new TextEncoder().encode('hush e2e message');

export interface Ratchet {
  sendChain: Uint8Array;
  /** Number of the next message sent. */
  sendN: number;
  recvChain: Uint8Array;
  /** Number of the next message expected. */
  recvN: number;
  /** Message keys of skipped numbers (lost or reordered messages), by number. */
  skipped: Record<string, Uint8Array>;
}

export type Role = 'inviter' | 'acceptor';

/**
 * Both sides' chains from the shared secret, bound to both public keys; undefined for a bad peer key (small order).
 * `e2e request`: a contact request and its answer, the address owner in the inviter's role.
 */
export function initRatchet(crypto: CryptoSuite, role: Role, mine: KeyPair, theirs: Uint8Array, use: 'e2e' | 'e2e request' = 'e2e'): Ratchet | undefined {
  const [inviterKey, acceptorKey] = role === 'inviter' ? [mine.publicKey, theirs] : [theirs, mine.publicKey];
  const okm = sharedKey(crypto, mine.privateKey, theirs, use, { context: concat(inviterKey, acceptorKey), length: 64 });
  if (!okm) return undefined;
  const toAcceptor = okm.slice(0, 32);
  const toInviter = okm.slice(32);
  return role === 'inviter'
    ? { sendChain: toAcceptor, sendN: 0, recvChain: toInviter, recvN: 0, skipped: {} }
    : { sendChain: toInviter, sendN: 0, recvChain: toAcceptor, recvN: 0, skipped: {} };
}

const ONE = new Uint8Array([1]);
const TWO = new Uint8Array([2]);

/** One chain step: the message key, and the next chain key. */
function step(crypto: CryptoSuite, chain: Uint8Array): [messageKey: Uint8Array, next: Uint8Array] {
  return [crypto.hmacSha256(chain, ONE), crypto.hmacSha256(chain, TWO)];
}

function messageCipher(crypto: CryptoSuite, messageKey: Uint8Array) {
  const okm = crypto.hkdfSha256(messageKey, new Uint8Array(0), MESSAGE_INFO, 44);
  return { key: okm.subarray(0, 32), nonce: okm.subarray(32) };
}

/**
 * Encrypts `content` as the next message. Returns the envelope and the ratchet
 * to store; the caller keeps the old one until the new one is stored.
 * `firstKey`: the acceptor's public key, sent with its first message.
 */
export function encrypt(
  crypto: CryptoSuite,
  r: Ratchet,
  content: Uint8Array,
  firstKey?: Uint8Array,
): { envelope: Uint8Array; ratchet: Ratchet } {
  const n = r.sendN;
  const header = new Encoder(FIRST_HEADER).u8(E2E_VERSION).u8(firstKey ? FIRST : NEXT);
  if (firstKey) header.short(firstKey);
  const h = header.u32(n).done();
  const [mk, next] = step(crypto, r.sendChain);
  const { key, nonce } = messageCipher(crypto, mk);
  const sealed = crypto.seal(key, nonce, padTo(content, E2E_BODY_SIZE - h.length - TAG), h);
  const envelope = new Uint8Array(E2E_BODY_SIZE);
  envelope.set(h);
  envelope.set(sealed, h.length);
  return { envelope, ratchet: { ...r, sendChain: next, sendN: n + 1 } };
}

export interface EnvelopeHeader {
  /** The sender's public key, on an acceptor's first message only. */
  firstKey?: Uint8Array;
  n: number;
  header: Uint8Array;
  sealed: Uint8Array;
}

/** Reads an envelope's clear header (strict: size, version, kind). */
export function readEnvelope(body: Uint8Array): Parsed<EnvelopeHeader> {
  if (body.length !== E2E_BODY_SIZE) return { ok: false, error: `envelope must be ${E2E_BODY_SIZE} bytes` };
  let headerLength = 0;
  const r = parse(body, (d: Decoder) => {
    if (d.u8() !== E2E_VERSION) throw new ParseError('unknown e2e version');
    const kind = d.u8();
    if (kind !== FIRST && kind !== NEXT) throw new ParseError('unknown envelope kind');
    const firstKey = kind === FIRST ? d.key(32, 'sender key') : undefined;
    const n = d.u32();
    headerLength = kind === FIRST ? FIRST_HEADER : NEXT_HEADER;
    d.raw(d.remaining);
    return { n, ...(firstKey ? { firstKey } : {}) };
  });
  if (!r.ok) return r;
  return { ok: true, value: { ...r.value, header: body.subarray(0, headerLength), sealed: body.subarray(headerLength) } };
}

export type Decrypted =
  | { ok: true; content: Uint8Array; ratchet: Ratchet }
  | { ok: false; error: 'duplicate' | 'too far ahead' | 'bad message' };

/**
 * Opens a message. The ratchet passed in is not changed: the caller stores the
 * returned one once it has handled the content. A message number already
 * used (a redelivery) is 'duplicate'.
 */
export function decrypt(crypto: CryptoSuite, r: Ratchet, env: EnvelopeHeader): Decrypted {
  const { n } = env;
  let messageKey: Uint8Array | undefined;
  let next: Ratchet;
  if (n < r.recvN) {
    messageKey = r.skipped[n];
    if (!messageKey) return { ok: false, error: 'duplicate' };
    const { [n]: _, ...skipped } = r.skipped;
    next = { ...r, skipped };
  } else {
    if (n - r.recvN > MAX_SKIP) return { ok: false, error: 'too far ahead' };
    const skipped = { ...r.skipped };
    let chain = r.recvChain;
    for (let i = r.recvN; i <= n; i++) {
      const [mk, c] = step(crypto, chain);
      chain = c;
      if (i < n) skipped[i] = mk;
      else messageKey = mk;
    }
    // Keep the newest MAX_SKIP skipped keys: older gaps are messages that will not come.
    const numbers = Object.keys(skipped).map(Number).sort((a, b) => a - b);
    for (const old of numbers.slice(0, Math.max(0, numbers.length - MAX_SKIP))) delete skipped[old];
    next = { ...r, recvChain: chain, recvN: n + 1, skipped };
  }
  const { key, nonce } = messageCipher(crypto, messageKey!);
  const padded = crypto.open(key, nonce, env.sealed, env.header);
  const content = padded && unpad(padded);
  if (!content?.ok) return { ok: false, error: 'bad message' };
  return { ok: true, content: content.value, ratchet: next };
}
