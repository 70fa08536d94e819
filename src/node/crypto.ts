// Server-side CryptoSuite on node:crypto (native, several times faster than
// pure JS). Keys cross the seam as raw bytes; DER prefixes wrap them for OpenSSL.
import crypto from 'node:crypto';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';

type Curve = 'X25519' | 'Ed25519';

// Key objects are cached per raw array: servers reuse theirs, and an import
// costs more than the DH itself. Imported as JWK, ~17x faster than PKCS#8 DER:
// Node builds a private OKP key from `d` alone (the public half is derived; `x`
// must be present but is not read), so a placeholder `x` serves.
const X_PLACEHOLDER = 'A'.repeat(43);
const privateKeys = new WeakMap<Uint8Array, crypto.KeyObject>();
function keyObject(crv: Curve, raw: Uint8Array): crypto.KeyObject {
  let k = privateKeys.get(raw);
  if (!k) {
    k = crypto.createPrivateKey({ key: { kty: 'OKP', crv, d: Buffer.from(raw).toString('base64url'), x: X_PLACEHOLDER }, format: 'jwk' });
    privateKeys.set(raw, k);
  }
  return k;
}
// JWK import of a public key is ~10x faster than DER.
const publicKey = (crv: Curve, raw: Uint8Array) =>
  crypto.createPublicKey({ key: { kty: 'OKP', crv, x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });

// A private key is 32 random bytes on both curves. Imported rather than made by
// generateKeyPairSync: exporting a key that call just returned can deadlock
// Node 20 (a GC during the export runs the finished key job's destructor, which
// waits for the lock the export holds), and it did, idling a server forever.
function rawPair(crv: Curve): KeyPair {
  const privateKey = new Uint8Array(crypto.randomBytes(32));
  // the key object stays cached, so its first use needs no import
  const x = keyObject(crv, privateKey).export({ format: 'jwk' }).x!;
  return { publicKey: new Uint8Array(Buffer.from(x, 'base64url')), privateKey };
}

const u8 = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

// Small random values (IDs, nonces: one or two per message on a relay) are cut
// from a pool filled from OpenSSL 4 KiB at a time: a randomBytes call costs
// microseconds, most of it fixed. Each value is copied out and its pool bytes
// zeroed, so nothing handed out stays behind in the pool.
const POOL_BYTES = 4096;
const POOLED_MAX = 64;
let pool = Buffer.alloc(0);
let poolPos = 0;
function randomBytes(n: number): Uint8Array {
  if (n > POOLED_MAX) return u8(crypto.randomBytes(n));
  if (poolPos + n > pool.length) {
    pool = crypto.randomBytes(POOL_BYTES);
    poolPos = 0;
  }
  const out = new Uint8Array(n);
  out.set(pool.subarray(poolPos, poolPos + n));
  pool.fill(0, poolPos, poolPos + n);
  poolPos += n;
  return out;
}

export const nodeCrypto: CryptoSuite = {
  randomBytes,
  sha256: (data) => u8(crypto.createHash('sha256').update(data).digest()),
  hmacSha256: (key, data) => u8(crypto.createHmac('sha256', key).update(data).digest()),
  hkdfSha256: (ikm, salt, info, length) => new Uint8Array(crypto.hkdfSync('sha256', ikm, salt, info, length)),
  x25519KeyPair: () => rawPair('X25519'),
  x25519(priv, pub) {
    if (priv.length !== 32 || pub.length !== 32) return undefined;
    try {
      return u8(crypto.diffieHellman({ privateKey: keyObject('X25519', priv), publicKey: publicKey('X25519', pub) }));
    } catch {
      return undefined; // OpenSSL refuses low-order points
    }
  },
  ed25519KeyPair: () => rawPair('Ed25519'),
  ed25519Sign: (priv, data) => u8(crypto.sign(null, data, keyObject('Ed25519', priv))),
  ed25519Verify(pub, signature, data) {
    if (pub.length !== 32 || signature.length !== 64) return false;
    try {
      return crypto.verify(null, data, publicKey('Ed25519', pub), signature);
    } catch {
      return false;
    }
  },
  seal(key, nonce, plaintext, aad) {
    const c = crypto.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    if (aad) c.setAAD(aad, { plaintextLength: plaintext.length });
    const head = c.update(plaintext);
    const tail = c.final(); // empty: a stream cipher
    // Not Buffer.concat: a short result would be a view into Node's shared 8 KB
    // pool, which a kept one (a relay's pending NMSG) would pin whole. Unpooled
    // and not zero-filled: every byte is written next, on every block.
    const out = u8(Buffer.allocUnsafeSlow(head.length + tail.length + 16));
    out.set(head);
    out.set(tail, head.length);
    out.set(c.getAuthTag(), head.length + tail.length);
    return out;
  },
  open(key, nonce, sealed, aad) {
    if (sealed.length < 16) return undefined;
    const d = crypto.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    if (aad) d.setAAD(aad, { plaintextLength: sealed.length - 16 });
    try {
      const head = d.update(sealed.subarray(0, sealed.length - 16));
      const tail = d.final(); // empty for a stream cipher: then no copy of the (block-sized) head
      return u8(tail.length === 0 ? head : Buffer.concat([head, tail]));
    } catch {
      return undefined;
    }
  },
};
