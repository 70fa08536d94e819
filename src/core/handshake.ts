// Handshake: the first block each way, unencrypted and padded to the block size.
//
// server → client  SERVER_HELLO: tag(protocol) u16 minVersion u16 maxVersion
//                  short(identityKey 32) short(sessionKey 32) short(sessionId 32)
//                  short(signature 64)
//   signature = Ed25519(identity, "hush-hello" ‖ the hello up to the signature)
// client → server  CLIENT_HELLO: u16 version short(fingerprint 32) short(clientKey 32)
//
// The client checks the identity key against the fingerprint pinned in the
// address and the signature over the fresh session key; both sides then derive
// the block keys from X25519(clientKey, sessionKey) (keys.ts: HKDF salted with
// the sessionId, labelled with the negotiated version, so a changed version in
// the unsigned client hello gives keys that open nothing). Command
// authenticators are HMACs keyed by the same derivation of X25519(entity key,
// sessionKey) over sessionId ‖ transmission, worthless on any other connection.
import { ascii, concat, Decoder, Encoder, equalBytes, parse, ParseError, type Parsed } from './encoding.ts';
import { BlockCipher, decodeBlock } from './block.ts';
import type { CryptoSuite, KeyPair } from './crypto/suite.ts';
import { sharedKey } from './keys.ts';

export interface ServerHello {
  protocol: string;
  minVersion: number;
  maxVersion: number;
  identityKey: Uint8Array;
  sessionKey: Uint8Array;
  sessionId: Uint8Array;
  signature: Uint8Array;
}

export interface ClientHello {
  version: number;
  fingerprint: Uint8Array;
  clientKey: Uint8Array;
}

const HELLO_CONTEXT = ascii('hush-hello');

function helloBody(h: Omit<ServerHello, 'signature'>): Encoder {
  return new Encoder(160)
    .tag(h.protocol)
    .u16(h.minVersion)
    .u16(h.maxVersion)
    .short(h.identityKey)
    .short(h.sessionKey)
    .short(h.sessionId);
}

export function encodeServerHello(h: ServerHello): Uint8Array {
  return helloBody(h).short(h.signature).done();
}

export function signServerHello(
  crypto: CryptoSuite,
  identityPrivateKey: Uint8Array,
  h: Omit<ServerHello, 'signature'>,
): ServerHello {
  const signature = crypto.ed25519Sign(identityPrivateKey, concat(HELLO_CONTEXT, helloBody(h).done()));
  return { ...h, signature };
}

export function decodeServerHello(b: Uint8Array): Parsed<ServerHello> {
  return parse(b, (d: Decoder) => {
    const protocol = d.tag();
    const minVersion = d.u16();
    const maxVersion = d.u16();
    if (minVersion > maxVersion || minVersion === 0) throw new ParseError('bad version range');
    return {
      protocol,
      minVersion,
      maxVersion,
      identityKey: d.key(32, 'identity key'),
      sessionKey: d.key(32, 'session key'),
      sessionId: d.key(32, 'session id'),
      signature: d.key(64, 'signature'),
    };
  });
}

export function verifyServerHello(crypto: CryptoSuite, h: ServerHello): boolean {
  const { signature, ...body } = h;
  return crypto.ed25519Verify(h.identityKey, signature, concat(HELLO_CONTEXT, helloBody(body).done()));
}

export function encodeClientHello(h: ClientHello): Uint8Array {
  return new Encoder(80).u16(h.version).short(h.fingerprint).short(h.clientKey).done();
}

export function decodeClientHello(b: Uint8Array): Parsed<ClientHello> {
  return parse(b, (d: Decoder) => ({
    version: d.u16(),
    fingerprint: d.key(32, 'fingerprint'),
    clientKey: d.key(32, 'client key'),
  }));
}

/** Highest version both sides speak, or undefined. */
export function negotiateVersion(ours: [number, number], theirs: [number, number]): number | undefined {
  const v = Math.min(ours[1], theirs[1]);
  return v >= Math.max(ours[0], theirs[0]) ? v : undefined;
}

export interface BlockKeys {
  clientToServer: Uint8Array;
  serverToClient: Uint8Array;
}

/** Both directions' block keys from one side's private key and the other's public key; undefined for a key of small order. */
export function deriveBlockKeys(
  crypto: CryptoSuite,
  privateKey: Uint8Array,
  publicKey: Uint8Array,
  sessionId: Uint8Array,
  version: number,
): BlockKeys | undefined {
  const okm = sharedKey(crypto, privateKey, publicKey, 'block keys', { version, salt: sessionId, length: 64 });
  return okm && { clientToServer: okm.slice(0, 32), serverToClient: okm.slice(32) };
}

export const fingerprintMatches = (crypto: CryptoSuite, identityKey: Uint8Array, fingerprint: Uint8Array) =>
  equalBytes(crypto.sha256(identityKey), fingerprint);

/** What a client expects of the server it dials: the address's fingerprint, its protocol and versions. */
export interface HandshakeExpectation {
  protocol: string;
  fingerprint: Uint8Array;
  versions: [number, number];
  blockSize: number;
}

/** The client's side of a checked server hello: its answer, and the session's ciphers. */
export interface ClientHandshake {
  hello: ServerHello;
  version: number;
  clientKey: KeyPair;
  clientHello: Uint8Array;
  send: BlockCipher;
  recv: BlockCipher;
}

/**
 * Checks the server's hello block (protocol, pinned identity, signature,
 * a common version, a session key not of small order) and makes the client
 * hello that answers it.
 */
export function answerServerHello(crypto: CryptoSuite, block: Uint8Array, expect: HandshakeExpectation): Parsed<ClientHandshake> {
  const fail = (error: string) => ({ ok: false as const, error });
  if (block.length !== expect.blockSize) return fail('bad hello block');
  const items = decodeBlock(block);
  if (!items.ok || items.value.length !== 1) return fail('bad hello block');
  const decoded = decodeServerHello(items.value[0]!);
  if (!decoded.ok) return fail(`bad server hello: ${decoded.error}`);
  const hello = decoded.value;
  if (hello.protocol !== expect.protocol) return fail(`server speaks ${hello.protocol}, not ${expect.protocol}`);
  if (!fingerprintMatches(crypto, hello.identityKey, expect.fingerprint)) return fail('server identity does not match the address fingerprint');
  if (!verifyServerHello(crypto, hello)) return fail('bad server hello signature');
  const version = negotiateVersion(expect.versions, [hello.minVersion, hello.maxVersion]);
  if (version === undefined) return fail('no common protocol version');
  const clientKey = crypto.x25519KeyPair();
  const keys = deriveBlockKeys(crypto, clientKey.privateKey, hello.sessionKey, hello.sessionId, version);
  if (!keys) return fail('bad session key');
  return {
    ok: true,
    value: {
      hello,
      version,
      clientKey,
      clientHello: encodeClientHello({ version, fingerprint: expect.fingerprint, clientKey: clientKey.publicKey }),
      send: new BlockCipher(crypto, keys.clientToServer, expect.blockSize),
      recv: new BlockCipher(crypto, keys.serverToClient, expect.blockSize),
    },
  };
}
