// The relay protocol: commands, responses, events and errors, and their one
// encoding. Every command is a tag followed by its fields (see docs/protocol.md).
import { COMMON_ERRORS } from '../core/errors.ts';
import { Decoder, Encoder, parse, ParseError, type Parsed } from '../core/encoding.ts';

export const RELAY_PROTOCOL = 'relay';
export const RELAY_VERSIONS: [number, number] = [2, 2];
export const RELAY_BLOCK_SIZE = 16384;

/** Largest SEND body: its MSG (with seal overhead) still fits one block. */
export const MAX_MESSAGE_BYTES = 16_000;
export const ID_LENGTH = 24;
/** Messages the relay sends a subscribed recipient ahead of its ACKs, per queue. */
export const DELIVERY_WINDOW = 16;
export const MSG_ID_LENGTH = 12;
export const NMSG_NONCE_LENGTH = 12;
export const KEY = 32;

export const RELAY_ERRORS = [...COMMON_ERRORS, 'LARGE_MSG', 'NO_MSG'] as const;
export type RelayError = (typeof RELAY_ERRORS)[number];
const ERROR_SET: ReadonlySet<string> = new Set(RELAY_ERRORS);

/** Notifier credentials the recipient gives: the key the notifier authorizes with, and a DH key. */
export interface NotifierKeys {
  ntfAuthKey: Uint8Array;
  rcvNtfDhKey: Uint8Array;
}

export type RelayCommand =
  // recipient (entity: recipient ID; NEW has none and is authorized by its own rcvAuthKey)
  // password: the relay's creation password, if it has one (ASCII, from the relay address)
  | { type: 'NEW'; rcvAuthKey: Uint8Array; rcvDhKey: Uint8Array; ntf?: NotifierKeys; password?: Uint8Array }
  | { type: 'SUB' }
  | { type: 'GET' }
  | { type: 'ACK'; msgId: Uint8Array }
  | { type: 'KEY'; sndAuthKey: Uint8Array }
  | ({ type: 'NKEY' } & NotifierKeys)
  | { type: 'NDEL' }
  | { type: 'OFF' }
  | { type: 'DEL' }
  // sender (entity: sender ID)
  | { type: 'SEND'; notify: boolean; body: Uint8Array }
  // notifier (entity: notifier ID; NSUBS has none and is authorized by serviceKey)
  | { type: 'NSUB' }
  | { type: 'NSUBS'; serviceKey: Uint8Array }
  | { type: 'NACK'; nonce: Uint8Array }
  | { type: 'NUNS' }
  | { type: 'PING' };

export interface NotifierIds {
  notifierId: Uint8Array;
  srvNtfDhKey: Uint8Array;
}

export type RelayResponse =
  | { type: 'IDS'; rcvId: Uint8Array; sndId: Uint8Array; srvDhKey: Uint8Array; ntf?: NotifierIds }
  | ({ type: 'NID' } & NotifierIds)
  | { type: 'MSG'; msgId: Uint8Array; sealed: Uint8Array }
  | { type: 'NMSG'; nonce: Uint8Array; sealedMeta: Uint8Array }
  | { type: 'SOKS'; count: number }
  | { type: 'ENDS'; count: number }
  | { type: 'OK' }
  | { type: 'END' }
  | { type: 'DELD' }
  | { type: 'PONG' }
  | { type: 'ERR'; error: RelayError };

/** Plain text of MSG, sealed for the recipient: u64 timestamp, u8 flags, body. */
export interface ReceivedMessage {
  msgId: Uint8Array;
  ts: number;
  notify: boolean;
  body: Uint8Array;
}

/** Plain text of NMSG meta, sealed for the recipient: message ID and timestamp. */
export interface MessageMeta {
  msgId: Uint8Array;
  ts: number;
}

const FLAG_NOTIFY = 1;

export function encodeCommand(c: RelayCommand): Uint8Array {
  const e = new Encoder(64).tag(c.type);
  switch (c.type) {
    case 'NEW':
      e.short(c.rcvAuthKey).short(c.rcvDhKey).bool(c.ntf !== undefined);
      if (c.ntf) e.short(c.ntf.ntfAuthKey).short(c.ntf.rcvNtfDhKey);
      if (c.password) e.short(c.password);
      break;
    case 'ACK':
      e.short(c.msgId);
      break;
    case 'KEY':
      e.short(c.sndAuthKey);
      break;
    case 'NKEY':
      e.short(c.ntfAuthKey).short(c.rcvNtfDhKey);
      break;
    case 'SEND':
      e.u8(c.notify ? FLAG_NOTIFY : 0).long(c.body);
      break;
    case 'NSUBS':
      e.short(c.serviceKey);
      break;
    case 'NACK':
      e.short(c.nonce);
      break;
  }
  return e.done();
}

export function decodeCommand(b: Uint8Array): Parsed<RelayCommand> {
  return parse(b, (d): RelayCommand => {
    const type = d.tag();
    switch (type) {
      case 'NEW': {
        const rcvAuthKey = d.key(KEY, 'rcvAuthKey');
        const rcvDhKey = d.key(KEY, 'rcvDhKey');
        const c: RelayCommand = d.bool() ? { type, rcvAuthKey, rcvDhKey, ntf: notifierKeys(d) } : { type, rcvAuthKey, rcvDhKey };
        // An optional trailing field: absent means no password, so an empty one is not a second spelling of that.
        if (d.remaining > 0) {
          const password = d.short();
          if (password.length === 0) throw new ParseError('empty password');
          c.password = password;
        }
        return c;
      }
      case 'ACK':
        return { type, msgId: d.key(MSG_ID_LENGTH, 'msgId') };
      case 'KEY':
        return { type, sndAuthKey: d.key(KEY, 'sndAuthKey') };
      case 'NKEY':
        return { type, ...notifierKeys(d) };
      case 'SEND': {
        const flags = d.u8();
        if (flags & ~FLAG_NOTIFY) throw new ParseError('unknown SEND flags');
        return { type, notify: (flags & FLAG_NOTIFY) !== 0, body: d.long() };
      }
      case 'NSUBS':
        return { type, serviceKey: d.key(KEY, 'serviceKey') };
      case 'NACK':
        return { type, nonce: d.key(NMSG_NONCE_LENGTH, 'nonce') };
      case 'SUB':
      case 'GET':
      case 'NDEL':
      case 'OFF':
      case 'DEL':
      case 'NSUB':
      case 'NUNS':
      case 'PING':
        return { type };
      default:
        throw new ParseError(UNKNOWN_COMMAND);
    }
  });
}

/** decodeCommand's error for a well-formed but unknown tag (answered UNKNOWN, not SYNTAX). */
export const UNKNOWN_COMMAND = 'unknown command';

const notifierKeys = (d: Decoder): NotifierKeys => ({
  ntfAuthKey: d.key(KEY, 'ntfAuthKey'),
  rcvNtfDhKey: d.key(KEY, 'rcvNtfDhKey'),
});

export function encodeResponse(r: RelayResponse): Uint8Array {
  // A MSG is sized exactly (tag 1+3, msgId 1+n, sealed 2+n): no regrowing, no copy.
  const e = new Encoder(r.type === 'MSG' ? 7 + r.msgId.length + r.sealed.length : 64).tag(r.type);
  switch (r.type) {
    case 'IDS':
      e.short(r.rcvId).short(r.sndId).short(r.srvDhKey).bool(r.ntf !== undefined);
      if (r.ntf) e.short(r.ntf.notifierId).short(r.ntf.srvNtfDhKey);
      break;
    case 'NID':
      e.short(r.notifierId).short(r.srvNtfDhKey);
      break;
    case 'MSG':
      e.short(r.msgId).long(r.sealed);
      break;
    case 'NMSG':
      e.short(r.nonce).short(r.sealedMeta);
      break;
    case 'SOKS':
    case 'ENDS':
      e.u32(r.count);
      break;
    case 'ERR':
      e.tag(r.error);
      break;
  }
  return e.done();
}

export function decodeResponse(b: Uint8Array): Parsed<RelayResponse> {
  return parse(b, (d): RelayResponse => {
    const type = d.tag();
    switch (type) {
      case 'IDS': {
        const rcvId = d.key(ID_LENGTH, 'rcvId');
        const sndId = d.key(ID_LENGTH, 'sndId');
        const srvDhKey = d.key(KEY, 'srvDhKey');
        return d.bool()
          ? { type, rcvId, sndId, srvDhKey, ntf: notifierIds(d) }
          : { type, rcvId, sndId, srvDhKey };
      }
      case 'NID':
        return { type, ...notifierIds(d) };
      case 'MSG':
        return { type, msgId: d.key(MSG_ID_LENGTH, 'msgId'), sealed: d.long() };
      case 'NMSG':
        return { type, nonce: d.key(NMSG_NONCE_LENGTH, 'nonce'), sealedMeta: d.key(META_SEALED_LENGTH, 'meta') };
      case 'SOKS':
      case 'ENDS':
        return { type, count: d.u32() };
      case 'ERR': {
        const error = d.tag();
        if (!ERROR_SET.has(error)) throw new ParseError('unknown error');
        return { type, error: error as RelayError };
      }
      case 'OK':
      case 'END':
      case 'DELD':
      case 'PONG':
        return { type };
      default:
        throw new ParseError('unknown response');
    }
  });
}

const notifierIds = (d: Decoder): NotifierIds => ({
  notifierId: d.key(ID_LENGTH, 'notifierId'),
  srvNtfDhKey: d.key(KEY, 'srvNtfDhKey'),
});

export function encodeMessagePlain(ts: number, notify: boolean, body: Uint8Array): Uint8Array {
  return new Encoder(body.length + 9).u64(ts).u8(notify ? FLAG_NOTIFY : 0).raw(body).done();
}

export function decodeMessagePlain(msgId: Uint8Array, b: Uint8Array): Parsed<ReceivedMessage> {
  return parse(b, (d) => {
    const ts = d.u64();
    const flags = d.u8();
    if (flags & ~FLAG_NOTIFY) throw new ParseError('unknown message flags');
    return { msgId, ts, notify: (flags & FLAG_NOTIFY) !== 0, body: d.raw(d.remaining) };
  });
}

export const META_LENGTH = MSG_ID_LENGTH + 8;
export const META_SEALED_LENGTH = META_LENGTH + 16;

export const encodeMeta = (m: MessageMeta) => new Encoder(META_LENGTH).raw(m.msgId).u64(m.ts).done();

export const decodeMeta = (b: Uint8Array): Parsed<MessageMeta> =>
  parse(b, (d) => ({ msgId: d.raw(MSG_ID_LENGTH, 'msgId'), ts: d.u64() }));
