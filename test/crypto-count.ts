// A CryptoSuite that counts the calls which make up the work of checking an
// authenticator (X25519, HMAC, HKDF): equal counts mean equal work, measured
// without a clock, so a privacy test can compare what two probes cost.
import type { CryptoSuite } from '../src/core/crypto/suite.ts';

export interface CryptoCounts {
  x25519: number;
  hmac: number;
  hkdf: number;
}

export interface CountingCrypto extends CryptoSuite {
  readonly counts: CryptoCounts;
  /** The calls made since `before` (a copy of `counts`). */
  since(before: CryptoCounts): CryptoCounts;
}

export function countingCrypto(base: CryptoSuite): CountingCrypto {
  const counts: CryptoCounts = { x25519: 0, hmac: 0, hkdf: 0 };
  return {
    ...base,
    counts,
    since: (b) => ({ x25519: counts.x25519 - b.x25519, hmac: counts.hmac - b.hmac, hkdf: counts.hkdf - b.hkdf }),
    x25519(priv, pub) {
      counts.x25519++;
      return base.x25519(priv, pub);
    },
    hmacSha256(key, data) {
      counts.hmac++;
      return base.hmacSha256(key, data);
    },
    hkdfSha256(ikm, salt, info, length) {
      counts.hkdf++;
      return base.hkdfSha256(ikm, salt, info, length);
    },
  };
}
