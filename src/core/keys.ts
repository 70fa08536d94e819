// X25519 public-key checks and the key schedule (docs/protocol.md §1.9).
//
// A public key of small order makes X25519 give the same secret (all zero)
// whatever the private key, so whoever sent it knows the result: such keys are
// refused wherever they arrive. And no raw X25519 output is ever used as a
// key: each goes through HKDF-SHA256 with a label naming its use and the
// protocol version, so a secret made for one purpose opens nothing of another.
import type { CryptoSuite } from './crypto/suite.ts';
import { ascii, concat } from './encoding.ts';

const fromHex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));

/**
 * The u-coordinates of the points of small order, with the non-canonical
 * spellings of 0 and 1 (p, p + 1): libsodium's list. Compared with the top bit
 * of the last byte cleared, as X25519 ignores it (RFC 7748 §5).
 */
export const SMALL_ORDER_KEYS: readonly Uint8Array[] = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0
  '0100000000000000000000000000000000000000000000000000000000000000', // 1
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p (= 0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p + 1 (= 1)
].map(fromHex);

/** True for a 32-byte X25519 public key not of small order (all-zero included). Same work for every key. */
export function isValidPublicKey(key: Uint8Array): boolean {
  if (key.length !== 32) return false;
  let weak = 0;
  for (const bad of SMALL_ORDER_KEYS) {
    let d = (key[31]! & 0x7f) ^ bad[31]!;
    for (let i = 0; i < 31; i++) d |= key[i]! ^ bad[i]!;
    weak |= (d - 1) >>> 31; // 1 when d is 0, without a branch
  }
  return weak === 0;
}

/**
 * The protocol version whose key schedule this is. Secrets that outlive a
 * session (queue, notifier, token secrets) are labelled with it; session keys
 * (block keys, authenticators) with the version the session negotiated.
 */
export const KEY_SCHEDULE_VERSION = 2;

/** What a derived key is for: the label's second half. */
export type KeyUse = 'block keys' | 'auth' | 'relay recipient' | 'relay notifier' | 'ntf token' | 'sealed token' | 'e2e' | 'e2e request';

export interface KeyOptions {
  /** The version in the label; KEY_SCHEDULE_VERSION by default. */
  version?: number;
  /** HKDF salt; empty by default. */
  salt?: Uint8Array;
  /** Bytes appended to the label, binding the key to them (e.g. both parties' public keys). */
  context?: Uint8Array;
  /** Output bytes; 32 by default. */
  length?: number;
}

/** The HKDF info: ASCII "hush/<version> <use>", then the context bytes. */
export function keyInfo(use: KeyUse, version: number, context?: Uint8Array): Uint8Array {
  const label = ascii(`hush/${version} ${use}`);
  return context ? concat(label, context) : label;
}

/**
 * HKDF-SHA256(ikm X25519(privateKey, publicKey), salt, info keyInfo(use)):
 * the one way Hush turns a key agreement into a key. Undefined for a public
 * key of small order (or one X25519 refuses).
 */
export function sharedKey(
  crypto: CryptoSuite,
  privateKey: Uint8Array,
  publicKey: Uint8Array,
  use: KeyUse,
  o: KeyOptions = {},
): Uint8Array | undefined {
  if (!isValidPublicKey(publicKey)) return undefined;
  const dh = crypto.x25519(privateKey, publicKey);
  if (!dh) return undefined;
  return crypto.hkdfSha256(dh, o.salt ?? EMPTY, keyInfo(use, o.version ?? KEY_SCHEDULE_VERSION, o.context), o.length ?? 32);
}

const EMPTY = new Uint8Array(0);
