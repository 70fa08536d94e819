// Long-term server keys as PKCS#8 PEM files readable only by their owner: the
// Ed25519 identity (its fingerprint is in the server's address) and, for a
// notification server, the X25519 service key it identifies with at relays.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { KeyPair } from '../core/crypto/suite.ts';

type KeyType = 'ed25519' | 'x25519';

export function createKeyFile(file: string, type: KeyType = 'ed25519'): KeyPair {
  const { privateKey } = crypto.generateKeyPairSync(type as 'ed25519');
  fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
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
