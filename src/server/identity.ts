// Long-term server keys as PKCS#8 PEM files readable only by their owner: the
// Ed25519 identity (its fingerprint is in the server's address) and, for a
// notification server, the X25519 service key it identifies with at relays.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { KeyPair } from '../core/crypto/suite.ts';

type KeyType = 'ed25519' | 'x25519';

/**
 * A new key pair as PEM (PKCS#8, SPKI), encoded by the generating call itself.
 * Exporting a KeyObject that generateKeyPairSync just returned can deadlock
 * Node 20: a GC during the export runs the finished key job's destructor, which
 * waits for the lock the export holds (seen as a process idle forever).
 */
export function generatePemKeyPair(
  type: 'ed25519' | 'x25519' | 'ec' | 'rsa',
  options: { namedCurve?: string; modulusLength?: number } = {},
): { privateKey: string; publicKey: string } {
  return crypto.generateKeyPairSync(type as 'ec', {
    ...(options as { namedCurve: string }),
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

export function createKeyFile(file: string, type: KeyType = 'ed25519'): KeyPair {
  fs.writeFileSync(file, generatePemKeyPair(type).privateKey, { mode: 0o600, flag: 'wx' });
  return readKeyFile(file, type);
}

export function readKeyFile(file: string, type: KeyType = 'ed25519'): KeyPair {
  const key = crypto.createPrivateKey(fs.readFileSync(file));
  if (key.asymmetricKeyType !== type) throw new Error(`${file}: not an ${type} private key`);
  const jwk = key.export({ format: 'jwk' });
  return {
    privateKey: new Uint8Array(Buffer.from(jwk.d!, 'base64url')),
    publicKey: new Uint8Array(Buffer.from(jwk.x!, 'base64url')),
  };
}
