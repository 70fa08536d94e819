// Isomorphic CryptoSuite on audited pure-JS libraries (@noble/*).
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import type { CryptoSuite } from './suite.ts';

export const nobleCrypto: CryptoSuite = {
  randomBytes: (n) => randomBytes(n),
  sha256: (data) => sha256(data),
  hmacSha256: (key, data) => hmac(sha256, key, data),
  hkdfSha256: (ikm, salt, info, length) => hkdf(sha256, ikm, salt, info, length),
  x25519KeyPair() {
    const privateKey = x25519.utils.randomSecretKey();
    return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
  },
  x25519(privateKey, publicKey) {
    try {
      return x25519.getSharedSecret(privateKey, publicKey);
    } catch {
      return undefined;
    }
  },
  ed25519KeyPair() {
    const privateKey = ed25519.utils.randomSecretKey();
    return { privateKey, publicKey: ed25519.getPublicKey(privateKey) };
  },
  ed25519Sign: (privateKey, data) => ed25519.sign(data, privateKey),
  ed25519Verify(publicKey, signature, data) {
    try {
      return ed25519.verify(signature, data, publicKey, { zip215: false }); // RFC 8032 rules, as OpenSSL
    } catch {
      return false;
    }
  },
  seal: (key, nonce, plaintext, aad) => chacha20poly1305(key, nonce, aad).encrypt(plaintext),
  open(key, nonce, sealed, aad) {
    try {
      return chacha20poly1305(key, nonce, aad).decrypt(sealed);
    } catch {
      return undefined;
    }
  },
};
