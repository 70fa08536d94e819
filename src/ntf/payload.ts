// What a push carries to the device, sealed with the token's DH secret
// (X25519(device tknDhKey, server srvDhKey)) and padded to one fixed size, so
// the push provider sees the same opaque blob for every kind of push:
//
//   data   = nonce(12) ‖ ChaCha20-Poly1305(tknDhSecret, nonce, padded)
//   padded = long(plain) ‖ zeros, PUSH_PLAIN_SIZE bytes in all
//   plain  = u8 kind, then
//     1 verification: key(32) code
//     2 message:      u8 n, n × (key(24) notifierId, key(12) nonce, key(36) sealedMeta), oldest first
//     3 check:        nothing (periodic "check your messages", TCRN)
//
// Message entries are the relay's NMSGs as they came: still sealed for the
// recipient, so the notification server never reads message IDs or times.
import { Decoder, Encoder, padTo, parse, ParseError, unpad, type Parsed } from '../core/encoding.ts';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { PUSH_DATA_SIZE, PUSH_KINDS, PUSH_PLAIN_SIZE } from '../push/device.ts';
import { META_SEALED_LENGTH, NMSG_NONCE_LENGTH } from '../relay/protocol.ts';
import { CODE_LENGTH, ID_LENGTH } from './protocol.ts';
/** Most entries a message push carries: the newest ones, one per queue. */
export const MAX_PUSH_ENTRIES = 16;

export interface PushEntry {
  notifierId: Uint8Array;
  nonce: Uint8Array;
  sealedMeta: Uint8Array;
}

export type PushContent =
  | { kind: 'verification'; code: Uint8Array }
  | { kind: 'message'; entries: PushEntry[] }
  | { kind: 'check' };

export function encodePushContent(c: PushContent): Uint8Array {
  const e = new Encoder(encodedSize(c)).u8(PUSH_KINDS.indexOf(c.kind) + 1);
  if (c.kind === 'verification') e.short(c.code);
  if (c.kind === 'message') {
    if (c.entries.length > MAX_PUSH_ENTRIES) throw new RangeError('too many push entries');
    e.u8(c.entries.length);
    for (const x of c.entries) e.short(x.notifierId).short(x.nonce).short(x.sealedMeta);
  }
  return e.done();
}

/** Exactly what encodePushContent writes, so its encoder neither grows nor copies. */
function encodedSize(c: PushContent): number {
  if (c.kind === 'verification') return 2 + c.code.length;
  if (c.kind === 'check') return 1;
  let n = 2;
  for (const x of c.entries) n += 3 + x.notifierId.length + x.nonce.length + x.sealedMeta.length;
  return n;
}

export function decodePushContent(b: Uint8Array): Parsed<PushContent> {
  return parse(b, (d: Decoder): PushContent => {
    const kind = PUSH_KINDS[d.u8() - 1];
    switch (kind) {
      case 'verification':
        return { kind, code: d.key(CODE_LENGTH, 'code') };
      case 'message': {
        const n = d.u8();
        if (n > MAX_PUSH_ENTRIES) throw new ParseError('too many push entries');
        const entries: PushEntry[] = [];
        for (let i = 0; i < n; i++)
          entries.push({ notifierId: d.key(ID_LENGTH, 'notifierId'), nonce: d.key(NMSG_NONCE_LENGTH, 'nonce'), sealedMeta: d.key(META_SEALED_LENGTH, 'sealedMeta') });
        return { kind, entries };
      }
      case 'check':
        return { kind };
      default:
        throw new ParseError('unknown push kind');
    }
  });
}

/** Server side: seals push content for the device. */
export function sealPush(crypto: CryptoSuite, tknDhSecret: Uint8Array, c: PushContent): Uint8Array {
  const padded = padTo(encodePushContent(c), PUSH_PLAIN_SIZE);
  const nonce = crypto.randomBytes(12);
  const sealed = crypto.seal(tknDhSecret, nonce, padded);
  const data = new Uint8Array(PUSH_DATA_SIZE);
  data.set(nonce);
  data.set(sealed, 12);
  return data;
}

/** Device side: opens a push's data. Undefined if it is not for this token or malformed. */
export function openPush(crypto: CryptoSuite, tknDhSecret: Uint8Array, data: Uint8Array): PushContent | undefined {
  if (data.length !== PUSH_DATA_SIZE) return undefined;
  const padded = crypto.open(tknDhSecret, data.subarray(0, 12), data.subarray(12));
  if (!padded) return undefined;
  const r = unpad(padded);
  if (!r.ok) return undefined;
  const c = decodePushContent(r.value);
  return c.ok ? c.value : undefined;
}
