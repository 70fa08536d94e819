// Store records: each mutation of the relay's state as one record. The memory
// store applies them; the journal appends them and replays them on start, and
// compaction rewrites the live state as QNEW/MADD/PSET records.
import { ByteCounter, Decoder, Encoder, parse, ParseError, type Parsed } from '../../core/encoding.ts';
import type { NotifierRecord, PendingNotification, QueueRecord, StoredMessage } from './store.ts';

export type StoreRecord =
  | { t: 'QNEW'; q: QueueRecord }
  | { t: 'QKEY'; rcvId: Uint8Array; sndAuthKey: Uint8Array }
  | { t: 'NSET'; rcvId: Uint8Array; n: NotifierRecord }
  | { t: 'NDEL'; rcvId: Uint8Array }
  | { t: 'NSVC'; rcvId: Uint8Array; serviceId?: Uint8Array }
  | { t: 'QOFF'; rcvId: Uint8Array }
  | { t: 'QDEL'; rcvId: Uint8Array }
  | { t: 'MADD'; rcvId: Uint8Array; m: StoredMessage }
  | { t: 'MACK'; rcvId: Uint8Array; msgId: Uint8Array }
  | { t: 'PSET'; rcvId: Uint8Array; p: PendingNotification }
  | { t: 'PCLR'; rcvId: Uint8Array };

const TAGS = ['QNEW', 'QKEY', 'NSET', 'NDEL', 'NSVC', 'QOFF', 'QDEL', 'MADD', 'MACK', 'PSET', 'PCLR'] as const;

const optional = (e: Encoder, b: Uint8Array | undefined) => e.bool(b !== undefined) && b && e.short(b);
const readOptional = (d: Decoder) => (d.bool() ? d.short() : undefined);

function writeNotifier(e: Encoder, n: NotifierRecord): void {
  e.short(n.notifierId).short(n.ntfAuthKey).short(n.rcvNtfDhSecret);
  optional(e, n.serviceId);
}

function readNotifier(d: Decoder): NotifierRecord {
  const n: NotifierRecord = { notifierId: d.short(), ntfAuthKey: d.short(), rcvNtfDhSecret: d.short() };
  const serviceId = readOptional(d);
  return serviceId ? { ...n, serviceId } : n;
}

export function encodeRecord(r: StoreRecord): Uint8Array {
  // Sized so the two records of every message need no copy: MADD exactly (tag, rcvId, msgId,
  // ts, notify, body), the rest within 64 bytes, small enough for V8 to allocate cheaply (the
  // encoder grows for the larger, rarer ones).
  return writeRecord(new Encoder(r.t === 'MADD' ? 14 + r.rcvId.length + r.m.msgId.length + r.m.body.length : 64), r).done();
}

/** encodeRecord(r).length, without the bytes (the journal measures the live state with it). */
export const recordSize = (r: StoreRecord) => writeRecord(new ByteCounter(), r).length;

function writeRecord(e: Encoder, r: StoreRecord): Encoder {
  e.u8(TAGS.indexOf(r.t));
  switch (r.t) {
    case 'QNEW': {
      const q = r.q;
      e.short(q.rcvId).short(q.sndId).short(q.rcvAuthKey).short(q.rcvDhSecret).bool(q.suspended);
      optional(e, q.sndAuthKey);
      e.bool(q.notifier !== undefined);
      if (q.notifier) writeNotifier(e, q.notifier);
      break;
    }
    case 'QKEY':
      e.short(r.rcvId).short(r.sndAuthKey);
      break;
    case 'NSET':
      e.short(r.rcvId);
      writeNotifier(e, r.n);
      break;
    case 'NSVC':
      e.short(r.rcvId);
      optional(e, r.serviceId);
      break;
    case 'MADD':
      e.short(r.rcvId).short(r.m.msgId).u64(r.m.ts).bool(r.m.notify).long(r.m.body);
      break;
    case 'MACK':
      e.short(r.rcvId).short(r.msgId);
      break;
    case 'PSET':
      e.short(r.rcvId).short(r.p.nonce).short(r.p.sealedMeta).u64(r.p.ts);
      break;
    default:
      e.short(r.rcvId);
  }
  return e;
}

/** The record owns its bytes (parse's copy mode): stores keep them, and the journal decodes from a buffer it reuses. */
export function decodeRecord(b: Uint8Array): Parsed<StoreRecord> {
  return parse(
    b,
    (d): StoreRecord => {
      const t = TAGS[d.u8()];
      if (!t) throw new ParseError('unknown record');
      switch (t) {
        case 'QNEW': {
          const q: QueueRecord = {
            rcvId: d.short(),
            sndId: d.short(),
            rcvAuthKey: d.short(),
            rcvDhSecret: d.short(),
            suspended: d.bool(),
          };
          const sndAuthKey = readOptional(d);
          if (sndAuthKey) q.sndAuthKey = sndAuthKey;
          if (d.bool()) q.notifier = readNotifier(d);
          return { t, q };
        }
        case 'QKEY':
          return { t, rcvId: d.short(), sndAuthKey: d.short() };
        case 'NSET':
          return { t, rcvId: d.short(), n: readNotifier(d) };
        case 'NSVC': {
          const rcvId = d.short();
          const serviceId = readOptional(d);
          return serviceId ? { t, rcvId, serviceId } : { t, rcvId };
        }
        case 'MADD': {
          const rcvId = d.short();
          return { t, rcvId, m: { msgId: d.short(), ts: d.u64(), notify: d.bool(), body: d.long() } };
        }
        case 'MACK':
          return { t, rcvId: d.short(), msgId: d.short() };
        case 'PSET':
          return { t, rcvId: d.short(), p: { nonce: d.short(), sealedMeta: d.short(), ts: d.u64() } };
        default:
          return { t, rcvId: d.short() };
      }
    },
    true,
  );
}
