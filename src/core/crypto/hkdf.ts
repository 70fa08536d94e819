// HKDF-SHA256 (RFC 5869) on a suite's HMAC. Node's hkdfSync makes key objects
// on every call and takes ~2x the two or three HMACs it needs for the short
// outputs the protocol derives (a client derives one per message received).
import { concat } from '../encoding.ts';

const HASH_LENGTH = 32;

export function hkdfWithHmac(
  hmac: (key: Uint8Array, data: Uint8Array) => Uint8Array,
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  if (!Number.isInteger(length) || length < 0 || length > 255 * HASH_LENGTH) throw new RangeError('HKDF-SHA256 output is 0 to 8160 bytes');
  const prk = hmac(salt.length > 0 ? salt : new Uint8Array(HASH_LENGTH), ikm);
  const okm = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, pos = 0; pos < length; i++, pos += HASH_LENGTH) {
    t = hmac(prk, concat(t, info, Uint8Array.of(i)));
    okm.set(t.subarray(0, Math.min(HASH_LENGTH, length - pos)), pos);
  }
  return okm;
}
