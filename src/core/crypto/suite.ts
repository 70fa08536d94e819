// The crypto seam: protocol code calls these few primitives and never a
// runtime's API directly. Clients use the @noble implementation (browsers,
// React Native, Node); servers use node:crypto for native speed. Both must
// agree bit for bit (test/core/crypto.test.ts).

export interface KeyPair {
  publicKey: Uint8Array;
  privateKey: Uint8Array;
}

export interface CryptoSuite {
  randomBytes(n: number): Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  x25519KeyPair(): KeyPair;
  /** Raw X25519 shared secret; undefined for a low-order (all-zero) result or a bad key. */
  x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | undefined;
  ed25519KeyPair(): KeyPair;
  ed25519Sign(privateKey: Uint8Array, data: Uint8Array): Uint8Array;
  ed25519Verify(publicKey: Uint8Array, signature: Uint8Array, data: Uint8Array): boolean;
  /** ChaCha20-Poly1305 (RFC 8439), 32-byte key, 12-byte nonce; output is ciphertext ‖ 16-byte tag. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array;
  /** Undefined when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Uint8Array | undefined;
}

export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
