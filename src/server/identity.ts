// A server's Ed25519 identity key, kept as a PKCS#8 PEM file readable only by its owner.
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { KeyPair } from '../core/crypto/suite.ts';

export function createIdentity(file: string): KeyPair {
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  fs.writeFileSync(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  return readIdentity(file);
}

export function readIdentity(file: string): KeyPair {
  const key = crypto.createPrivateKey(fs.readFileSync(file));
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file}: not an Ed25519 private key`);
  const jwk = key.export({ format: 'jwk' });
  return {
    privateKey: new Uint8Array(Buffer.from(jwk.d!, 'base64url')),
    publicKey: new Uint8Array(Buffer.from(jwk.x!, 'base64url')),
  };
}
