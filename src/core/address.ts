// Server addresses pin the server's identity: hush://<fingerprint>@host:port
// (WebSocket over TLS) or hush+ws://<fingerprint>@host:port (plain WebSocket,
// for loopback and tests; blocks are still encrypted to the pinned key).
// fingerprint = base64url(SHA-256(Ed25519 identity public key)).
// A server that needs a creation password (NEW, TNEW) takes it in the address:
// hush://<fingerprint>:<password>@host:port. It is for creating only, so an
// address handed to anyone else (an invitation, an SNEW) goes without it.
import { fromBase64Url, toBase64Url } from './encoding.ts';
import type { CryptoSuite } from './crypto/suite.ts';

export interface ServerAddress {
  fingerprint: Uint8Array;
  host: string;
  port: number;
  tls: boolean;
  password?: string;
}

export type AddressResult = { ok: true; value: ServerAddress } | { ok: false; error: string };

const ADDRESS = /^hush(\+ws)?:\/\/([A-Za-z0-9_-]{43})(?::([A-Za-z0-9._~-]{1,64}))?@(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([1-9][0-9]{0,4})$/;

export function parseAddress(text: string): AddressResult {
  const m = ADDRESS.exec(text);
  if (!m) return { ok: false, error: 'address must be hush://<fingerprint>[:<password>]@host:port' };
  const fingerprint = fromBase64Url(m[2]!);
  const port = Number(m[5]);
  if (!fingerprint || fingerprint.length !== 32) return { ok: false, error: 'bad fingerprint' };
  if (port < 1 || port > 65535) return { ok: false, error: 'bad port' };
  const value: ServerAddress = { fingerprint, host: m[4]!, port, tls: m[1] === undefined };
  if (m[3] !== undefined) value.password = m[3];
  return { ok: true, value };
}

export function formatAddress(a: ServerAddress): string {
  const password = a.password !== undefined ? `:${a.password}` : '';
  return `hush${a.tls ? '' : '+ws'}://${toBase64Url(a.fingerprint)}${password}@${a.host}:${a.port}`;
}

/** The address without its creation password: what may be handed to others. */
export function publicAddress(text: string): string {
  const a = parseAddress(text);
  if (!a.ok || a.value.password === undefined) return text;
  const { password: _, ...rest } = a.value;
  return formatAddress(rest);
}

export const fingerprintOf = (crypto: CryptoSuite, identityKey: Uint8Array) => crypto.sha256(identityKey);

export const webSocketUrl = (a: ServerAddress) => `${a.tls ? 'wss' : 'ws'}://${a.host}:${a.port}/`;
