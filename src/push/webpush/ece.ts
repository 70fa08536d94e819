// Message encryption for Web Push (RFC 8291) in the aes128gcm content coding
// (RFC 8188), with node:crypto: the application server's side, and the user
// agent's (decryption) for tests and the test push service.
//
// Body = header ‖ one record:
//   salt (16) ‖ rs (u32 BE) ‖ idlen (1) = 65 ‖ keyid = the sender's ephemeral P-256 key (65)
//   AES-128-GCM(CEK, NONCE, plaintext ‖ 0x02) ‖ tag (16)
// 0x02 is the delimiter of the last (here: only) record; we add no padding
// bytes after it because every Hush push has one fixed size already.
//
// Keys (RFC 8291 §3.3–3.4, HKDF-SHA-256 written out as its HMAC steps, since
// each expansion needs one block only):
//   PRK_key = HMAC(auth_secret, ecdh_secret)
//   IKM     = HMAC(PRK_key, "WebPush: info" ‖ 0x00 ‖ ua_public ‖ as_public ‖ 0x01)
//   PRK     = HMAC(salt, IKM)
//   CEK     = HMAC(PRK, "Content-Encoding: aes128gcm" ‖ 0x00 ‖ 0x01)[0..16)
//   NONCE   = HMAC(PRK, "Content-Encoding: nonce" ‖ 0x00 ‖ 0x01)[0..12)
//
// A fresh ephemeral key pair and a random salt per message (RFC 8291 §3.1,
// RFC 8188 §2.1): a reused pair with a reused salt would reuse the GCM nonce.
// The cost is one P-256 scalar multiplication of the user agent's key (~0.2 ms);
// the rest is a few HMACs and AES over ~2 KB.
import { createCipheriv, createDecipheriv, createECDH, createHmac, randomBytes, type ECDH } from 'node:crypto';

export const SALT_LENGTH = 16;
/** Length of the sender's public key in the header (uncompressed P-256 point). */
export const KEYID_LENGTH = 65;
/** salt ‖ rs ‖ idlen ‖ keyid */
export const HEADER_LENGTH = SALT_LENGTH + 4 + 1 + KEYID_LENGTH;
export const TAG_LENGTH = 16;
/** RFC 8188 §2: a record holds at least one octet (the delimiter) and the tag. */
export const MIN_RECORD_SIZE = 18;
export const DEFAULT_RECORD_SIZE = 4096;
/** Largest body a push service must take (RFC 8030 §7.2); Hush pushes fit. */
export const MAX_PUSH_BODY = 4096;
/** Push services must take bodies of MAX_PUSH_BODY bytes: that − header − delimiter − tag. */
export const MAX_WEBPUSH_PLAINTEXT = MAX_PUSH_BODY - HEADER_LENGTH - 1 - TAG_LENGTH;

const LAST_RECORD = 0x02;
const NOT_LAST_RECORD = 0x01;
const KEY_INFO = Buffer.from('WebPush: info\0', 'latin1');
const CEK_INFO = Buffer.from('Content-Encoding: aes128gcm\0\x01', 'latin1');
const NONCE_INFO = Buffer.from('Content-Encoding: nonce\0\x01', 'latin1');
const ONE = Buffer.from([1]);

export interface WebPushKeys {
  prkKey: Uint8Array;
  ikm: Uint8Array;
  prk: Uint8Array;
  /** 16 bytes. */
  cek: Uint8Array;
  /** 12 bytes. */
  nonce: Uint8Array;
}

const hmac = (key: Uint8Array, ...data: Uint8Array[]): Buffer => {
  const h = createHmac('sha256', key);
  for (const d of data) h.update(d);
  return h.digest();
};

/** The RFC 8291 key schedule, from the ECDH secret on; exposed for the Appendix A vectors. */
export function deriveWebPushKeys(p: {
  ecdhSecret: Uint8Array;
  authSecret: Uint8Array;
  uaPublic: Uint8Array;
  asPublic: Uint8Array;
  salt: Uint8Array;
}): WebPushKeys {
  const prkKey = hmac(p.authSecret, p.ecdhSecret);
  const ikm = hmac(prkKey, KEY_INFO, p.uaPublic, p.asPublic, ONE);
  const prk = hmac(p.salt, ikm);
  return { prkKey, ikm, prk, cek: hmac(prk, CEK_INFO).subarray(0, 16), nonce: hmac(prk, NONCE_INFO).subarray(0, 12) };
}

export interface EncryptWebPushOptions {
  plaintext: Uint8Array;
  /** The subscription's p256dh (65 bytes). */
  uaPublic: Uint8Array;
  /** The subscription's auth (16 bytes). */
  authSecret: Uint8Array;
  /** Only for test vectors: a fixed salt (default random). */
  salt?: Uint8Array;
  /** Only for test vectors: a fixed sender key pair, private key raw (32 bytes) (default fresh per message). */
  asKeyPair?: { privateKey: Uint8Array };
  /** The rs header field (default 4096); must hold plaintext + 17. */
  recordSize?: number;
}

/**
 * The aes128gcm body for a push. Throws RangeError for a plaintext over
 * MAX_WEBPUSH_PLAINTEXT or a record size that cannot hold it, and TypeError for
 * keys of the wrong size or a p256dh that is not a point on P-256.
 */
export function encryptWebPush(o: EncryptWebPushOptions): Uint8Array {
  const { plaintext, uaPublic, authSecret } = o;
  if (plaintext.length > MAX_WEBPUSH_PLAINTEXT) throw new RangeError(`plaintext of ${plaintext.length} bytes over ${MAX_WEBPUSH_PLAINTEXT}`);
  const rs = o.recordSize ?? DEFAULT_RECORD_SIZE;
  if (!Number.isInteger(rs) || rs < MIN_RECORD_SIZE || rs > 0xffffffff) throw new RangeError('record size out of range');
  if (plaintext.length + 1 + TAG_LENGTH > rs) throw new RangeError(`record size ${rs} cannot hold ${plaintext.length} bytes in one record`);
  if (uaPublic.length !== KEYID_LENGTH || uaPublic[0] !== 0x04) throw new TypeError('p256dh must be a 65-byte uncompressed P-256 point');
  if (authSecret.length !== 16) throw new TypeError('auth secret must be 16 bytes');
  const salt = o.salt ?? randomBytes(SALT_LENGTH);
  if (salt.length !== SALT_LENGTH) throw new TypeError('salt must be 16 bytes');

  const ecdh = createECDH('prime256v1');
  if (o.asKeyPair) ecdh.setPrivateKey(o.asKeyPair.privateKey);
  else ecdh.generateKeys();
  const asPublic = ecdh.getPublicKey();
  let secret: Buffer;
  try {
    secret = ecdh.computeSecret(uaPublic);
  } catch {
    throw new TypeError('p256dh is not a point on P-256');
  }
  const { cek, nonce } = deriveWebPushKeys({ ecdhSecret: secret, authSecret, uaPublic, asPublic, salt });

  const out = Buffer.allocUnsafe(HEADER_LENGTH + plaintext.length + 1 + TAG_LENGTH);
  out.set(salt, 0);
  out.writeUInt32BE(rs, SALT_LENGTH);
  out[SALT_LENGTH + 4] = KEYID_LENGTH;
  out.set(asPublic, SALT_LENGTH + 5);
  const cipher = createCipheriv('aes-128-gcm', cek, nonce);
  let at = HEADER_LENGTH;
  at += cipher.update(plaintext).copy(out, at);
  at += cipher.update(Buffer.of(LAST_RECORD)).copy(out, at);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/** Why a body could not be decrypted. */
export class WebPushDecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebPushDecryptError';
  }
}

export interface DecryptWebPushKeys {
  /** The user agent's private key: raw (32 bytes), or an ECDH object holding it (saves deriving it again). */
  uaPrivate: Uint8Array | ECDH;
  uaPublic: Uint8Array;
  authSecret: Uint8Array;
}

/** The parsed aes128gcm header of a body. */
export interface Aes128gcmHeader {
  salt: Uint8Array;
  rs: number;
  keyid: Uint8Array;
}

/** Reads and checks the header of a Web Push body (one record, a 65-byte keyid); throws WebPushDecryptError. */
export function readWebPushHeader(body: Uint8Array): Aes128gcmHeader {
  const fail = (m: string) => new WebPushDecryptError(m);
  if (body.length < HEADER_LENGTH) throw fail('body shorter than the aes128gcm header');
  const salt = body.subarray(0, SALT_LENGTH);
  const rs = ((body[16]! << 24) | (body[17]! << 16) | (body[18]! << 8) | body[19]!) >>> 0;
  const idlen = body[20]!;
  if (idlen !== KEYID_LENGTH) throw fail(`keyid length ${idlen}, not ${KEYID_LENGTH}`);
  const keyid = body.subarray(21, HEADER_LENGTH);
  if (keyid[0] !== 0x04) throw fail('keyid is not an uncompressed P-256 point');
  if (rs < MIN_RECORD_SIZE) throw fail(`record size ${rs} under ${MIN_RECORD_SIZE}`);
  const record = body.length - HEADER_LENGTH;
  if (record < 1 + TAG_LENGTH) throw fail('record shorter than a delimiter and a tag');
  // every record but the last is exactly rs long: a longer body holds several (RFC 8291 §4: one)
  if (record > rs) throw fail('more than one record');
  return { salt, rs, keyid };
}

/** The plaintext of a Web Push body; throws WebPushDecryptError with the reason. */
export function decryptWebPush(body: Uint8Array, keys: DecryptWebPushKeys): Uint8Array {
  const fail = (m: string) => new WebPushDecryptError(m);
  const { salt, keyid } = readWebPushHeader(body);
  if (keys.uaPublic.length !== KEYID_LENGTH) throw fail('user agent public key must be 65 bytes');
  if (keys.authSecret.length !== 16) throw fail('auth secret must be 16 bytes');
  let ecdh: ECDH;
  if (keys.uaPrivate instanceof Uint8Array) {
    ecdh = createECDH('prime256v1');
    try {
      ecdh.setPrivateKey(keys.uaPrivate);
    } catch {
      throw fail('invalid user agent private key');
    }
  } else ecdh = keys.uaPrivate;
  let secret: Buffer;
  try {
    secret = ecdh.computeSecret(keyid);
  } catch {
    throw fail('keyid is not a point on P-256');
  }
  const { cek, nonce } = deriveWebPushKeys({ ecdhSecret: secret, authSecret: keys.authSecret, uaPublic: keys.uaPublic, asPublic: keyid, salt });
  const record = body.subarray(HEADER_LENGTH);
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - TAG_LENGTH));
  let padded: Buffer;
  try {
    padded = Buffer.concat([decipher.update(record.subarray(0, record.length - TAG_LENGTH)), decipher.final()]);
  } catch {
    throw fail('authentication tag mismatch');
  }
  // RFC 8188 §2: data ‖ delimiter ‖ zero or more 0x00
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0) throw fail('no padding delimiter');
  if (padded[i] === NOT_LAST_RECORD) throw fail('record is not marked as the last');
  if (padded[i] !== LAST_RECORD) throw fail('bad padding delimiter');
  return new Uint8Array(padded.buffer, padded.byteOffset, i);
}
