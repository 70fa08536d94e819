// A transmission is one command, response or event inside a block:
//   short(authenticator) short(corrId) short(entityId) command
// `command` is a tag and its fields, defined per protocol. The authenticator
// is empty or HMAC-SHA256(key, sessionId ‖ everything after the authenticator),
// key = X25519(entity private key, server session key). corrId is empty on
// events the server sends unasked.
import { concat, Decoder, Encoder, equalBytes, parse, ParseError, type Parsed } from './encoding.ts';
import type { CryptoSuite } from './crypto/suite.ts';

export const AUTH_LENGTH = 32;
export const MAX_CORR_ID = 24;
export const MAX_ENTITY_ID = 32;

export interface Transmission {
  auth: Uint8Array;
  corrId: Uint8Array;
  entityId: Uint8Array;
  command: Uint8Array;
  /** The authenticated bytes (everything after the authenticator). */
  signed: Uint8Array;
}

export function decodeTransmission(b: Uint8Array): Parsed<Transmission> {
  return parse(b, (d: Decoder) => {
    const auth = d.short();
    if (auth.length !== 0 && auth.length !== AUTH_LENGTH) throw new ParseError('bad authenticator length');
    const signed = b.subarray(1 + auth.length);
    const corrId = d.short();
    if (corrId.length > MAX_CORR_ID) throw new ParseError('corrId too long');
    const entityId = d.short();
    if (entityId.length > MAX_ENTITY_ID) throw new ParseError('entityId too long');
    const command = d.raw(d.remaining);
    if (command.length === 0) throw new ParseError('empty command');
    return { auth, corrId, entityId, command, signed };
  });
}

export function signedPart(corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array): Uint8Array {
  return new Encoder(command.length + 64).short(corrId).short(entityId).raw(command).done();
}

export function encodeTransmission(auth: Uint8Array, signed: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(auth.length), auth, signed);
}

/**
 * encodeTransmission(empty authenticator, signedPart(corrId, entityId, command))
 * in one allocation: the form of every reply and event a server sends.
 */
export function encodeUnauthenticated(corrId: Uint8Array, entityId: Uint8Array, command: Uint8Array): Uint8Array {
  if (corrId.length > 0xff || entityId.length > 0xff) throw new RangeError('short bytes over 255');
  const out = new Uint8Array(3 + corrId.length + entityId.length + command.length);
  out[1] = corrId.length;
  out.set(corrId, 2);
  const e = 2 + corrId.length;
  out[e] = entityId.length;
  out.set(entityId, e + 1);
  out.set(command, e + 1 + entityId.length);
  return out;
}

export function authenticator(crypto: CryptoSuite, key: Uint8Array, sessionId: Uint8Array, signed: Uint8Array) {
  return crypto.hmacSha256(key, concat(sessionId, signed));
}

export function verifyAuthenticator(
  crypto: CryptoSuite,
  key: Uint8Array,
  sessionId: Uint8Array,
  t: Transmission,
): boolean {
  return t.auth.length === AUTH_LENGTH && equalBytes(authenticator(crypto, key, sessionId, t.signed), t.auth);
}
