// Server addresses pin the server's identity: hush://<fingerprint>@host:port
// (WebSocket over TLS) or hush+ws://<fingerprint>@host:port (plain WebSocket,
// for loopback and tests; blocks are still encrypted to the pinned key).
// fingerprint = base64url(SHA-256(Ed25519 identity public key)).
import { fromBase64Url, toBase64Url } from './encoding.ts';
import type { CryptoSuite } from './crypto/suite.ts';

export interface ServerAddress {
  fingerprint: Uint8Array;
  host: string;
  port: number;
  tls: boolean;
}

export type AddressResult = { ok: true; value: ServerAddress } | { ok: false; error: string };

const ADDRESS = /^hush(\+ws)?:\/\/([A-Za-z0-9_-]{43})@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([1-9][0-9]{0,4})$/;

export function parseAddress(text: string): AddressResult {
  const m = ADDRESS.exec(text);
  if (!m) return { ok: false, error: 'address must be hush://<fingerprint>@host:port' };
  const fingerprint = fromBase64Url(m[2]!);
  const port = Number(m[4]);
  if (!fingerprint || fingerprint.length !== 32) return { ok: false, error: 'bad fingerprint' };
  if (port < 1 || port > 65535) return { ok: false, error: 'bad port' };
  return { ok: true, value: { fingerprint, host: m[3]!, port, tls: m[1] === undefined } };
}

export function formatAddress(a: ServerAddress): string {
  return `hush${a.tls ? '' : '+ws'}://${toBase64Url(a.fingerprint)}@${a.host}:${a.port}`;
}

export const fingerprintOf = (crypto: CryptoSuite, identityKey: Uint8Array) => crypto.sha256(identityKey);

export const webSocketUrl = (a: ServerAddress) => `${a.tls ? 'wss' : 'ws'}://${a.host}:${a.port}/`;
