// The notification server (NTF) protocol: token and subscription commands,
// their responses, statuses and errors, and their one encoding. Same core as
// the relay (blocks, handshake, session-bound authenticators); see docs/ntf.md.
import { COMMON_ERRORS } from '../core/errors.ts';
import { Decoder, Encoder, parse, ParseError, type Parsed } from '../core/encoding.ts';
import { isInvalidReason, readDevice, writeDevice, type DeviceToken, type InvalidReason } from '../push/device.ts';

export const NTF_PROTOCOL = 'ntf';
export const NTF_VERSIONS: [number, number] = [2, 2];
export const NTF_BLOCK_SIZE = 4096;

export const ID_LENGTH = 24;
export const KEY = 32;
export const CODE_LENGTH = 32;
/** TCRN intervals below this many minutes are refused with QUOTA. */
export const MIN_CRON_MINUTES = 20;

export const NTF_ERRORS = [...COMMON_ERRORS, 'NO_PROVIDER', 'RELAY'] as const;
export type NtfError = (typeof NTF_ERRORS)[number];
const ERROR_SET: ReadonlySet<string> = new Set(NTF_ERRORS);

export const TOKEN_STATUSES = ['NEW', 'REGISTERED', 'CONFIRMED', 'ACTIVE', 'INVALID', 'EXPIRED'] as const;
export type TokenStatusName = (typeof TOKEN_STATUSES)[number];
export type TokenStatus = { status: Exclude<TokenStatusName, 'INVALID'> } | { status: 'INVALID'; reason: InvalidReason };
export const isTokenStatusName = (s: string): s is TokenStatusName => (TOKEN_STATUSES as readonly string[]).includes(s);

export const SUB_STATUSES = ['NEW', 'PENDING', 'ACTIVE', 'INACTIVE', 'END', 'DELETED', 'AUTH'] as const;
export type SubStatus = (typeof SUB_STATUSES)[number];
export const isSubStatus = (s: string): s is SubStatus => (SUB_STATUSES as readonly string[]).includes(s);
/** Terminal statuses: the client must create the subscription again. */
export const TERMINAL_SUB_STATUSES: ReadonlySet<SubStatus> = new Set(['END', 'DELETED', 'AUTH']);

export type NtfCommand =
  // token commands: entity is the token ID (TNEW: empty, authorized by its own tknAuthKey;
  // password: the server's creation password, if it has one, ASCII from its address)
  | { type: 'TNEW'; device: DeviceToken; tknAuthKey: Uint8Array; tknDhKey: Uint8Array; password?: Uint8Array }
  | { type: 'TVFY'; code: Uint8Array }
  | { type: 'TCHK' }
  | { type: 'TRPL'; device: DeviceToken }
  | { type: 'TDEL' }
  | { type: 'TCRN'; minutes: number }
  // subscription commands, authorized by the token key: SNEW's entity is the token ID, the others' the subscription ID
  | { type: 'SNEW'; relay: string; notifierId: Uint8Array; ntfAuthKey: Uint8Array }
  | { type: 'SCHK' }
  | { type: 'SDEL' }
  | { type: 'PING' };

export type NtfResponse =
  | { type: 'IDTKN'; tokenId: Uint8Array; srvDhKey: Uint8Array }
  | { type: 'IDSUB'; subId: Uint8Array }
  | ({ type: 'TKN' } & TokenStatus)
  | { type: 'SUB'; status: SubStatus }
  | { type: 'OK' }
  | { type: 'PONG' }
  | { type: 'ERR'; error: NtfError };

export function encodeCommand(c: NtfCommand): Uint8Array {
  const e = new Encoder(96).tag(c.type);
  switch (c.type) {
    case 'TNEW':
      writeDevice(e, c.device).short(c.tknAuthKey).short(c.tknDhKey);
      if (c.password) e.short(c.password);
      break;
    case 'TVFY':
      e.short(c.code);
      break;
    case 'TRPL':
      writeDevice(e, c.device);
      break;
    case 'TCRN':
      e.u16(c.minutes);
      break;
    case 'SNEW':
      e.short(new TextEncoder().encode(c.relay)).short(c.notifierId).short(c.ntfAuthKey);
      break;
  }
  return e.done();
}

export const UNKNOWN_COMMAND = 'unknown command';

export function decodeCommand(b: Uint8Array): Parsed<NtfCommand> {
  return parse(b, (d): NtfCommand => {
    const type = d.tag();
    switch (type) {
      case 'TNEW': {
        const c: NtfCommand = { type, device: readDevice(d), tknAuthKey: d.key(KEY, 'tknAuthKey'), tknDhKey: d.key(KEY, 'tknDhKey') };
        // An optional trailing field: absent means no password, so an empty one is not a second spelling of that.
        if (d.remaining > 0) {
          const password = d.short();
          if (password.length === 0) throw new ParseError('empty password');
          c.password = password;
        }
        return c;
      }
      case 'TVFY':
        return { type, code: d.key(CODE_LENGTH, 'code') };
      case 'TRPL':
        return { type, device: readDevice(d) };
      case 'TCRN':
        return { type, minutes: d.u16() };
      case 'SNEW': {
        const relay = d.short();
        for (const c of relay) if (c < 0x21 || c > 0x7e) throw new ParseError('relay address is not ASCII');
        return {
          type,
          relay: String.fromCharCode(...relay),
          notifierId: d.key(ID_LENGTH, 'notifierId'),
          ntfAuthKey: d.key(KEY, 'ntfAuthKey'),
        };
      }
      case 'TCHK':
      case 'TDEL':
      case 'SCHK':
      case 'SDEL':
      case 'PING':
        return { type };
      default:
        throw new ParseError(UNKNOWN_COMMAND);
    }
  });
}

export function encodeResponse(r: NtfResponse): Uint8Array {
  const e = new Encoder(64).tag(r.type);
  switch (r.type) {
    case 'IDTKN':
      e.short(r.tokenId).short(r.srvDhKey);
      break;
    case 'IDSUB':
      e.short(r.subId);
      break;
    case 'TKN':
      writeTokenStatus(e, r);
      break;
    case 'SUB':
      e.tag(r.status);
      break;
    case 'ERR':
      e.tag(r.error);
      break;
  }
  return e.done();
}

export function decodeResponse(b: Uint8Array): Parsed<NtfResponse> {
  return parse(b, (d): NtfResponse => {
    const type = d.tag();
    switch (type) {
      case 'IDTKN':
        return { type, tokenId: d.key(ID_LENGTH, 'tokenId'), srvDhKey: d.key(KEY, 'srvDhKey') };
      case 'IDSUB':
        return { type, subId: d.key(ID_LENGTH, 'subId') };
      case 'TKN':
        return { type, ...readTokenStatus(d) };
      case 'SUB': {
        const status = d.tag();
        if (!isSubStatus(status)) throw new ParseError('unknown subscription status');
        return { type, status };
      }
      case 'ERR': {
        const error = d.tag();
        if (!ERROR_SET.has(error)) throw new ParseError('unknown error');
        return { type, error: error as NtfError };
      }
      case 'OK':
      case 'PONG':
        return { type };
      default:
        throw new ParseError('unknown response');
    }
  });
}

export function readTokenStatus(d: Decoder): TokenStatus {
  const status = d.tag();
  if (!isTokenStatusName(status)) throw new ParseError('unknown token status');
  if (status !== 'INVALID') return { status };
  const reason = d.tag();
  if (!isInvalidReason(reason)) throw new ParseError('unknown invalid reason');
  return { status, reason };
}

export function writeTokenStatus(e: Encoder, s: TokenStatus): Encoder {
  e.tag(s.status);
  if (s.status === 'INVALID') e.tag(s.reason);
  return e;
}
