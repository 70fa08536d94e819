// NTF store records: each change of the notification server's state as one
// record, applied by the memory store, appended by the journal, and turned into
// SQL by the PostgreSQL store. Fields added later are trailing and optional
// in decoding, so a journal written before them still loads (see each).
import { ByteCounter, Decoder, Encoder, latin1Bytes, parse, ParseError, type Parsed } from '../../core/encoding.ts';
import { readTokenStatus, writeTokenStatus, type TokenStatus } from '../protocol.ts';
import { readDevice, writeDevice, type DeviceToken } from '../../push/device.ts';
import { isStoredSubStatus, type LastNotification, type SentNotification, type StoredSubStatus, type SubRecord, type TokenRecord } from './store.ts';

export type NtfRecord =
  | { t: 'TNEW'; token: TokenRecord }
  // at: the token's new statusAt (TokenRecord). from: the status it replaces, for a database that
  // several servers write (the change applies only if it is still that); not journaled.
  | { t: 'TSTAT'; tokenId: string; status: TokenStatus; at: number; from?: TokenStatus['status'] }
  | { t: 'TDEV'; tokenId: string; device: DeviceToken; code: Uint8Array; at: number }
  | { t: 'TCODE'; tokenId: string; code: Uint8Array; at: number }
  | { t: 'TCRN'; tokenId: string; minutes: number; nextAt: number }
  | { t: 'TDEL'; tokenId: string }
  | { t: 'SNEW'; sub: SubRecord }
  | { t: 'SSTAT'; subId: string; status: StoredSubStatus }
  | { t: 'SDEL'; subId: string }
  | { t: 'LAST'; tokenId: string; n: LastNotification }
  | { t: 'SENT'; tokenId: string; sent: SentNotification[] };

const TAGS = ['TNEW', 'TSTAT', 'TDEV', 'TCODE', 'TCRN', 'TDEL', 'SNEW', 'SSTAT', 'SDEL', 'LAST', 'SENT'] as const;

const str = (e: Encoder, s: string) => e.short(latin1Bytes(s));
const readStr = (d: Decoder) => d.shortLatin1();
function readSubStatus(d: Decoder): StoredSubStatus {
  const s = d.tag();
  if (!isStoredSubStatus(s)) throw new ParseError('bad stored status');
  return s;
}

// Records written before token expiry lack statusAt and verified: statusAt 0
// (unknown; the server's first expiry sweep stamps it), verified true (such a
// token gets the longer grace of a verified one, never less than it had).
const readAt = (d: Decoder) => (d.remaining > 0 ? d.u64() : 0);
const expiryFields = (d: Decoder) => (d.remaining > 0 ? { statusAt: d.u64(), verified: d.bool() } : { statusAt: 0, verified: true });

export const encodeNtfRecord = (r: NtfRecord) => writeNtfRecord(new Encoder(160), r).done();

/** encodeNtfRecord(r).length, without the bytes (the journal measures the live state with it). */
export const ntfRecordSize = (r: NtfRecord) => writeNtfRecord(new ByteCounter(), r).length;

function writeNtfRecord(e: Encoder, r: NtfRecord): Encoder {
  e.u8(TAGS.indexOf(r.t));
  switch (r.t) {
    case 'TNEW': {
      const k = r.token;
      str(e, k.tokenId);
      writeDevice(e, k.device).short(k.tknAuthKey).short(k.tknDhKey).short(k.srvDhKey).short(k.tknDhSecret);
      writeTokenStatus(e, k.status).short(k.code).u16(k.cronMinutes).u64(k.cronNextAt).u64(k.statusAt).bool(k.verified);
      break;
    }
    case 'TSTAT':
      writeTokenStatus(str(e, r.tokenId), r.status).u64(r.at);
      break;
    case 'TDEV':
      writeDevice(str(e, r.tokenId), r.device).short(r.code).u64(r.at);
      break;
    case 'TCODE':
      str(e, r.tokenId).short(r.code).u64(r.at);
      break;
    case 'TCRN':
      str(e, r.tokenId).u16(r.minutes).u64(r.nextAt);
      break;
    case 'TDEL':
      str(e, r.tokenId);
      break;
    case 'SNEW': {
      const s = r.sub;
      str(str(str(str(str(e, s.subId), s.tokenId), s.relay), s.notifierId), s.ntfAuthKey).tag(s.status);
      break;
    }
    case 'SSTAT':
      str(e, r.subId).tag(r.status);
      break;
    case 'SDEL':
      str(e, r.subId);
      break;
    case 'LAST':
      str(str(e, r.tokenId), r.n.subId).short(r.n.nonce).short(r.n.sealedMeta).u64(r.n.ts);
      break;
    case 'SENT':
      str(e, r.tokenId).u8(r.sent.length);
      for (const x of r.sent) str(e, x.subId).short(x.nonce);
      break;
  }
  return e;
}

/** The record owns its bytes (parse's copy mode): stores keep them, and the journal decodes from a buffer it reuses. */
export function decodeNtfRecord(b: Uint8Array): Parsed<NtfRecord> {
  return parse(
    b,
    (d): NtfRecord => {
      const t = TAGS[d.u8()];
      switch (t) {
        case 'TNEW':
          return {
            t,
            token: {
              tokenId: readStr(d),
              device: readDevice(d),
              tknAuthKey: d.short(),
              tknDhKey: d.short(),
              srvDhKey: d.short(),
              tknDhSecret: d.short(),
              status: readTokenStatus(d),
              code: d.short(),
              cronMinutes: d.u16(),
              cronNextAt: d.u64(),
              ...expiryFields(d),
            },
          };
        case 'TSTAT':
          return { t, tokenId: readStr(d), status: readTokenStatus(d), at: readAt(d) };
        case 'TDEV':
          return { t, tokenId: readStr(d), device: readDevice(d), code: d.short(), at: readAt(d) };
        case 'TCODE':
          return { t, tokenId: readStr(d), code: d.short(), at: readAt(d) };
        case 'TCRN':
          return { t, tokenId: readStr(d), minutes: d.u16(), nextAt: d.u64() };
        case 'TDEL':
          return { t, tokenId: readStr(d) };
        case 'SNEW':
          return {
            t,
            sub: {
              subId: readStr(d),
              tokenId: readStr(d),
              relay: readStr(d),
              notifierId: readStr(d),
              ntfAuthKey: readStr(d),
              status: readSubStatus(d),
            },
          };
        case 'SSTAT':
          return { t, subId: readStr(d), status: readSubStatus(d) };
        case 'SDEL':
          return { t, subId: readStr(d) };
        case 'LAST':
          return { t, tokenId: readStr(d), n: { subId: readStr(d), nonce: d.short(), sealedMeta: d.short(), ts: d.u64() } };
        case 'SENT': {
          const tokenId = readStr(d);
          const sent = Array.from({ length: d.u8() }, () => ({ subId: readStr(d), nonce: d.short() }));
          return { t, tokenId, sent };
        }
        default:
          throw new ParseError('unknown record');
      }
    },
    true,
  );
}
