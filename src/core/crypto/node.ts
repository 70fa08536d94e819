// Server-side CryptoSuite on node:crypto (native, several times faster than
// pure JS). Keys cross the seam as raw bytes; DER prefixes wrap them for OpenSSL.
import crypto from 'node:crypto';
import type { CryptoSuite, KeyPair } from './suite.ts';

const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');

// Importing a private key costs more than the DH itself (OpenSSL derives the
// public half), so key objects are cached per raw array: servers reuse theirs.
const privateKeys = new WeakMap<Uint8Array, crypto.KeyObject>();
function privateKey(prefix: Buffer, raw: Uint8Array): crypto.KeyObject {
  let k = privateKeys.get(raw);
  if (!k) {
    k = crypto.createPrivateKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'pkcs8' });
    privateKeys.set(raw, k);
  }
  return k;
}
// JWK import of a public key is ~10x faster than DER.
const publicKey = (crv: 'X25519' | 'Ed25519', raw: Uint8Array) =>
  crypto.createPublicKey({ key: { kty: 'OKP', crv, x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });

function rawPair(type: 'x25519' | 'ed25519'): KeyPair {
  const { privateKey: priv } = crypto.generateKeyPairSync(type as 'x25519');
  // One JWK export carries both halves (DER costs two exports and ~50x more), and
  // the key object goes into the cache so its first use needs no re-import.
  const jwk = priv.export({ format: 'jwk' });
  const privateKey = new Uint8Array(Buffer.from(jwk.d!, 'base64url'));
  privateKeys.set(privateKey, priv);
  return { publicKey: new Uint8Array(Buffer.from(jwk.x!, 'base64url')), privateKey };
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
  x25519KeyPair: () => rawPair('x25519'),
  x25519(priv, pub) {
    if (priv.length !== 32 || pub.length !== 32) return undefined;
    try {
      return u8(crypto.diffieHellman({ privateKey: privateKey(X25519_PKCS8, priv), publicKey: publicKey('X25519', pub) }));
    } catch {
      return undefined; // OpenSSL refuses low-order points
    }
  },
  ed25519KeyPair: () => rawPair('ed25519'),
  ed25519Sign: (priv, data) => u8(crypto.sign(null, data, privateKey(ED25519_PKCS8, priv))),
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
    const tail = c.final();
    return u8(Buffer.concat([head, tail, c.getAuthTag()]));
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
