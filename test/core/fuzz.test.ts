// Property-based fuzzing of every parser of untrusted bytes or text:
//  (a) arbitrary input never throws: the result is {ok:false,error} or {ok:true,value};
//  (b) generated valid values survive encode → decode unchanged;
//  (c) mutated valid encodings (truncated, flipped, extended) never throw, and
//      whatever still decodes is canonical: re-encoding gives the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { concat, Encoder, fromBase64Url, toBase64Url, type Parsed } from '../../src/core/encoding.ts';
import { decodeBlock, encodeBlock, maxItemLength, packBlocks } from '../../src/core/block.ts';
import {
  decodeClientHello,
  decodeServerHello,
  encodeClientHello,
  encodeServerHello,
  type ClientHello,
  type ServerHello,
} from '../../src/core/handshake.ts';
import {
  authenticator,
  decodeTransmission,
  encodeTransmission,
  signedPart,
  verifyAuthenticator,
} from '../../src/core/transmission.ts';
import { formatAddress, parseAddress, type ServerAddress } from '../../src/core/address.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import {
  decodeCommand,
  decodeMessagePlain,
  decodeMeta,
  decodeResponse,
  encodeCommand,
  encodeMessagePlain,
  encodeMeta,
  encodeResponse,
  ID_LENGTH,
  META_SEALED_LENGTH,
  MSG_ID_LENGTH,
  RELAY_ERRORS,
  type RelayCommand,
  type RelayResponse,
} from '../../src/relay/protocol.ts';
import { decodeRecord, encodeRecord, recordSize, type StoreRecord } from '../../src/relay/store/records.ts';
import type { NotifierRecord, QueueRecord } from '../../src/relay/store/store.ts';

const RUNS = 2000;
const run = <Ts extends unknown[]>(p: fc.IProperty<Ts>, numRuns = RUNS) => fc.assert(p, { numRuns });

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A parse result has exactly one of the two shapes. */
function wellFormed<T>(r: Parsed<T>): r is { ok: true; value: T } {
  assert.equal(typeof r, 'object');
  if (r.ok === true) {
    assert.ok('value' in r);
    return true;
  }
  assert.equal(r.ok, false);
  assert.equal(typeof r.error, 'string');
  assert.ok(r.error.length > 0);
  return false;
}

// ---- generators of valid values ----

/** fc.record, with ordinary objects (deepStrictEqual compares prototypes). */
const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> => fc.record(model).map((o) => ({ ...o }) as T);
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const upTo = (n: number) => fc.uint8Array({ maxLength: n });
const key = bytes(32);
const u64 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const tagChar = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const tagString = fc.string({ unit: tagChar, maxLength: 40 });

const notifierKeys = rec({ ntfAuthKey: key, rcvNtfDhKey: key });

const command: fc.Arbitrary<RelayCommand> = fc.oneof(
  fc
    .tuple(key, key, fc.option(notifierKeys, { nil: undefined }))
    .map(([rcvAuthKey, rcvDhKey, ntf]): RelayCommand => (ntf ? { type: 'NEW', rcvAuthKey, rcvDhKey, ntf } : { type: 'NEW', rcvAuthKey, rcvDhKey })),
  fc.constantFrom<RelayCommand>(
    { type: 'SUB' },
    { type: 'GET' },
    { type: 'NDEL' },
    { type: 'OFF' },
    { type: 'DEL' },
    { type: 'NSUB' },
    { type: 'PING' },
  ),
  bytes(MSG_ID_LENGTH).map((msgId): RelayCommand => ({ type: 'ACK', msgId })),
  key.map((sndAuthKey): RelayCommand => ({ type: 'KEY', sndAuthKey })),
  notifierKeys.map((k): RelayCommand => ({ type: 'NKEY', ...k })),
  fc.tuple(fc.boolean(), upTo(2000)).map(([notify, body]): RelayCommand => ({ type: 'SEND', notify, body })),
  key.map((serviceKey): RelayCommand => ({ type: 'NSUBS', serviceKey })),
);

const notifierIds = rec({ notifierId: bytes(ID_LENGTH), srvNtfDhKey: key });

const response: fc.Arbitrary<RelayResponse> = fc.oneof(
  fc
    .tuple(bytes(ID_LENGTH), bytes(ID_LENGTH), key, fc.option(notifierIds, { nil: undefined }))
    .map(([rcvId, sndId, srvDhKey, ntf]): RelayResponse =>
      ntf ? { type: 'IDS', rcvId, sndId, srvDhKey, ntf } : { type: 'IDS', rcvId, sndId, srvDhKey },
    ),
  notifierIds.map((n): RelayResponse => ({ type: 'NID', ...n })),
  fc.tuple(bytes(MSG_ID_LENGTH), upTo(2000)).map(([msgId, sealed]): RelayResponse => ({ type: 'MSG', msgId, sealed })),
  fc.tuple(bytes(12), bytes(META_SEALED_LENGTH)).map(([nonce, sealedMeta]): RelayResponse => ({ type: 'NMSG', nonce, sealedMeta })),
  fc
    .tuple(fc.constantFrom('SOKS' as const, 'ENDS' as const), fc.integer({ min: 0, max: 0xffff_ffff }))
    .map(([type, count]): RelayResponse => ({ type, count })),
  fc.constantFrom<RelayResponse>({ type: 'OK' }, { type: 'END' }, { type: 'DELD' }, { type: 'PONG' }),
  fc.constantFrom(...RELAY_ERRORS).map((error): RelayResponse => ({ type: 'ERR', error })),
);

const short = upTo(255);
const optionalShort = fc.option(short, { nil: undefined });

const notifierRecord: fc.Arbitrary<NotifierRecord> = fc
  .tuple(short, short, short, optionalShort)
  .map(([notifierId, ntfAuthKey, rcvNtfDhSecret, serviceId]) =>
    serviceId ? { notifierId, ntfAuthKey, rcvNtfDhSecret, serviceId } : { notifierId, ntfAuthKey, rcvNtfDhSecret },
  );

const queueRecord: fc.Arbitrary<QueueRecord> = fc
  .tuple(short, short, short, short, fc.boolean(), optionalShort, fc.option(notifierRecord, { nil: undefined }))
  .map(([rcvId, sndId, rcvAuthKey, rcvDhSecret, suspended, sndAuthKey, notifier]) => {
    const q: QueueRecord = { rcvId, sndId, rcvAuthKey, rcvDhSecret, suspended };
    if (sndAuthKey) q.sndAuthKey = sndAuthKey;
    if (notifier) q.notifier = notifier;
    return q;
  });

const record: fc.Arbitrary<StoreRecord> = fc.oneof(
  queueRecord.map((q): StoreRecord => ({ t: 'QNEW', q })),
  fc.tuple(short, short).map(([rcvId, sndAuthKey]): StoreRecord => ({ t: 'QKEY', rcvId, sndAuthKey })),
  fc.tuple(short, notifierRecord).map(([rcvId, n]): StoreRecord => ({ t: 'NSET', rcvId, n })),
  fc
    .tuple(short, optionalShort)
    .map(([rcvId, serviceId]): StoreRecord => (serviceId ? { t: 'NSVC', rcvId, serviceId } : { t: 'NSVC', rcvId })),
  fc
    .tuple(fc.constantFrom('NDEL' as const, 'QOFF' as const, 'QDEL' as const, 'PCLR' as const), short)
    .map(([t, rcvId]): StoreRecord => ({ t, rcvId })),
  fc
    .tuple(short, short, u64, fc.boolean(), upTo(2000))
    .map(([rcvId, msgId, ts, notify, body]): StoreRecord => ({ t: 'MADD', rcvId, m: { msgId, ts, notify, body } })),
  fc.tuple(short, short).map(([rcvId, msgId]): StoreRecord => ({ t: 'MACK', rcvId, msgId })),
  fc
    .tuple(short, short, short, u64)
    .map(([rcvId, nonce, sealedMeta, ts]): StoreRecord => ({ t: 'PSET', rcvId, p: { nonce, sealedMeta, ts } })),
);

const serverHello: fc.Arbitrary<ServerHello> = fc
  .tuple(tagString, fc.integer({ min: 1, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), key, key, key, bytes(64))
  .map(([protocol, minVersion, span, identityKey, sessionKey, sessionId, signature]) => ({
    protocol,
    minVersion,
    maxVersion: Math.min(0xffff, minVersion + span),
    identityKey,
    sessionKey,
    sessionId,
    signature,
  }));

const clientHello: fc.Arbitrary<ClientHello> = fc
  .tuple(fc.integer({ min: 0, max: 0xffff }), key, key)
  .map(([version, fingerprint, clientKey]) => ({ version, fingerprint, clientKey }));

const transmissionParts = rec({
  auth: fc.oneof(bytes(0), bytes(32)),
  corrId: upTo(24),
  entityId: upTo(32),
  command: fc.uint8Array({ minLength: 1, maxLength: 300 }),
});

const encodeParts = (p: { auth: Uint8Array; corrId: Uint8Array; entityId: Uint8Array; command: Uint8Array }) =>
  encodeTransmission(p.auth, signedPart(p.corrId, p.entityId, p.command));

const blockItems = fc.array(upTo(200), { minLength: 1, maxLength: 20 });

const address: fc.Arbitrary<ServerAddress> = rec({
  fingerprint: key,
  host: fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((h) => `[${h}]`)),
  port: fc.integer({ min: 1, max: 65535 }),
  tls: fc.boolean(),
});

// ---- mutations ----

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'insert'; at: number; byte: number }
  | { kind: 'delete'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
);
const mutations = fc.array(mutation, { minLength: 1, maxLength: 3 });

function mutate(b: Uint8Array, ms: Mutation[]): Uint8Array {
  let out: Uint8Array = b.slice();
  for (const m of ms) {
    switch (m.kind) {
      case 'truncate':
        out = out.slice(0, out.length === 0 ? 0 : m.at % out.length);
        break;
      case 'flip':
        if (out.length > 0) out[m.at % out.length]! ^= m.mask;
        break;
      case 'append':
        out = concat(out, m.bytes);
        break;
      case 'insert': {
        const at = m.at % (out.length + 1);
        out = concat(out.subarray(0, at), Uint8Array.of(m.byte), out.subarray(at));
        break;
      }
      case 'delete':
        if (out.length > 0) {
          const at = m.at % out.length;
          out = concat(out.subarray(0, at), out.subarray(at + 1));
        }
        break;
    }
  }
  return out;
}

// ---- the parsers, with their canonical re-encoding where there is one ----

interface Target {
  name: string;
  decode: (b: Uint8Array) => Parsed<unknown>;
  /** Bytes the decoded value encodes back to; equal to the input for a canonical format. */
  reencode: (v: any, input: Uint8Array) => Uint8Array;
  /** Inputs shaped like this format (a plausible prefix), to get past the first checks. */
  shaped: fc.Arbitrary<Uint8Array>;
}

/** Usually n, sometimes one off. */
const mostly = (n: number) =>
  fc.oneof({ weight: 6, arbitrary: fc.constant(n) }, { weight: 1, arbitrary: fc.constantFrom(n - 1, n + 1) });

const tagged = (tags: string[]) =>
  fc
    .tuple(fc.constantFrom(...tags), fc.uint8Array({ maxLength: 120 }))
    .map(([t, rest]) => concat(new Encoder().tag(t).done(), rest));

const COMMAND_TAGS = ['NEW', 'SUB', 'GET', 'ACK', 'KEY', 'NKEY', 'NDEL', 'OFF', 'DEL', 'SEND', 'NSUB', 'NSUBS', 'PING', 'XYZ'];
const RESPONSE_TAGS = ['IDS', 'NID', 'MSG', 'NMSG', 'SOKS', 'ENDS', 'OK', 'END', 'DELD', 'PONG', 'ERR', 'ZZZ'];

const MSG_ID = new Uint8Array(MSG_ID_LENGTH).fill(7);

const TARGETS: Target[] = [
  {
    name: 'decodeBlock',
    decode: decodeBlock,
    reencode: (items: Uint8Array[], input) => encodeBlock(items, input.length),
    shaped: fc
      .tuple(fc.integer({ min: 0, max: 4 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), upTo(20)), { maxLength: 4 }), fc.nat(30))
      .map(([count, items, pad]) => {
        const e = new Encoder().u16(count);
        for (const [len, b] of items) e.u16(len).raw(b);
        return concat(e.done(), new Uint8Array(pad));
      }),
  },
  {
    name: 'decodeTransmission',
    decode: decodeTransmission,
    reencode: (t) => {
      // `signed` must be exactly the bytes after the authenticator.
      assert.equal(hex(t.signed), hex(signedPart(t.corrId, t.entityId, t.command)));
      return encodeParts(t);
    },
    // lengths near and past the limits, fields of those lengths, then random bytes:
    // most are well-formed up to entityId, so decoding reaches the command often
    shaped: fc
      .tuple(fc.constantFrom(0, 32, 33), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 }), upTo(60))
      .map(([a, n, m, rest]) => concat(Uint8Array.of(a), new Uint8Array(a), Uint8Array.of(n), new Uint8Array(n), Uint8Array.of(m), rest)),
  },
  {
    name: 'decodeServerHello',
    decode: decodeServerHello,
    reencode: encodeServerHello,
    shaped: fc
      .tuple(
        tagString,
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 3 }),
        fc.tuple(mostly(32), mostly(32), mostly(32), mostly(64)),
        fc.oneof({ weight: 4, arbitrary: upTo(0) }, { weight: 1, arbitrary: upTo(2) }),
      )
      .map(([p, a, b, lengths, rest]) => {
        const e = new Encoder().tag(p).u16(a).u16(b);
        for (const n of lengths) e.short(new Uint8Array(n).fill(n));
        return concat(e.done(), rest);
      }),
  },
  {
    name: 'decodeClientHello',
    decode: decodeClientHello,
    reencode: encodeClientHello,
    shaped: fc
      .tuple(fc.integer({ min: 0, max: 0xffff }), fc.constantFrom(31, 32, 33), fc.constantFrom(31, 32, 33), upTo(2))
      .map(([v, a, b, rest]) => concat(new Encoder().u16(v).short(new Uint8Array(a)).short(new Uint8Array(b)).done(), rest)),
  },
  { name: 'decodeCommand', decode: decodeCommand, reencode: encodeCommand, shaped: tagged(COMMAND_TAGS) },
  { name: 'decodeResponse', decode: decodeResponse, reencode: encodeResponse, shaped: tagged(RESPONSE_TAGS) },
  {
    name: 'decodeMessagePlain',
    decode: (b) => decodeMessagePlain(MSG_ID, b),
    // Only the NOTIFY flag bit is kept: other flag bits are ignored, not rejected.
    reencode: (m, input) => {
      assert.equal(hex(m.msgId), hex(MSG_ID));
      const out = encodeMessagePlain(m.ts, m.notify, m.body);
      if (input.length > 8) out[8] = input[8]!;
      return out;
    },
    shaped: fc.tuple(u64, fc.integer({ min: 0, max: 255 }), upTo(40)).map(([ts, f, body]) => new Encoder().u64(ts).u8(f).raw(body).done()),
  },
  {
    name: 'decodeMeta',
    decode: decodeMeta,
    reencode: encodeMeta,
    shaped: fc
      .tuple(fc.uint8Array({ minLength: 11, maxLength: 13 }), fc.oneof(bytes(8), u64.map((ts) => new Encoder().u64(ts).done())), upTo(1))
      .map(([id, ts, rest]) => concat(id, ts, rest)),
  },
  {
    name: 'decodeRecord',
    decode: decodeRecord,
    reencode: (r) => {
      const b = encodeRecord(r);
      assert.equal(recordSize(r), b.length, 'recordSize is the encoded length');
      return b;
    },
    // A tag, then random bytes, or random bytes framed as one short field (what the ID-only records are):
    // unframed, random bytes end exactly at the last field too rarely for 2000 runs to be sure of one.
    shaped: fc.oneof(
      fc.tuple(fc.integer({ min: 0, max: 12 }), upTo(150)).map(([t, rest]) => concat(Uint8Array.of(t), rest)),
      fc.tuple(fc.integer({ min: 0, max: 12 }), upTo(150)).map(([t, rest]) => concat(Uint8Array.of(t, rest.length), rest)),
    ),
  },
];

// ---- (a) arbitrary input never throws ----

for (const target of TARGETS) {
  test(`${target.name}: arbitrary bytes never throw; anything accepted is canonical`, () => {
    let accepted = 0;
    const check = (b: Uint8Array) => {
      const r = target.decode(b);
      if (wellFormed(r)) {
        accepted++;
        assert.equal(hex(target.reencode(r.value, b)), hex(b));
      }
    };
    run(fc.property(fc.uint8Array({ maxLength: 300 }), check));
    run(fc.property(target.shaped, check));
    // Not a vacuous test: the shaped inputs reach past the first checks.
    assert.ok(accepted > 0, `${target.name} accepted nothing`);
  });
}

test('parseAddress: arbitrary strings never throw; accepted addresses format back and reparse equal', () => {
  const b64 = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/');
  const plausible = fc
    .tuple(
      fc.constantFrom('hush://', 'hush+ws://', 'hush+wss://', 'http://', ''),
      fc.oneof(fc.string({ unit: b64, minLength: 41, maxLength: 45 }), key.map(toBase64Url)),
      fc.constantFrom('@', '@@', ':', ''),
      fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((h) => `[${h}]`), fc.ipV6(), fc.string({ maxLength: 10 })),
      fc.constantFrom(':', '', '::'),
      fc.oneof(fc.integer({ min: -10, max: 200_000 }).map(String), fc.string({ unit: 'binary-ascii', maxLength: 6 })),
    )
    .map((parts) => parts.join(''));
  // Well-formed ones, all accepted (the plausible mix is mostly refused).
  const valid = fc
    .tuple(fc.constantFrom('hush://', 'hush+ws://'), key.map(toBase64Url), fc.oneof(fc.domain(), fc.ipV4()), fc.integer({ min: 1, max: 65535 }))
    .map(([scheme, fp, host, port]) => `${scheme}${fp}@${host}:${port}`);
  let accepted = 0;
  const check = (s: string) => {
    const r = parseAddress(s);
    if (wellFormed(r)) {
      accepted++;
      assert.equal(r.value.fingerprint.length, 32);
      assert.ok(r.value.port >= 1 && r.value.port <= 65535);
      assert.deepStrictEqual(parseAddress(formatAddress(r.value)), r);
    }
  };
  run(fc.property(fc.string({ unit: 'binary', maxLength: 120 }), check));
  run(fc.property(plausible, check));
  run(
    fc.property(valid, (s) => {
      assert.ok(wellFormed(parseAddress(s)), s);
      check(s);
    }),
  );
});

test('fromBase64Url: arbitrary strings never throw; accepted strings are canonical', () => {
  const b64 = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_');
  let accepted = 0;
  const check = (s: string) => {
    const b = fromBase64Url(s);
    if (b !== undefined) {
      accepted++;
      assert.ok(b instanceof Uint8Array);
      // One spelling per value: only toBase64Url's own output is accepted.
      assert.equal(toBase64Url(b), s);
    }
  };
  run(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), check));
  run(fc.property(fc.string({ unit: b64, maxLength: 80 }), check));
  assert.ok(accepted > 0);
});

// ---- (b) round trips of valid values ----

function roundTrip<T>(name: string, arb: fc.Arbitrary<T>, encode: (v: T) => Uint8Array, decode: (b: Uint8Array) => Parsed<unknown>) {
  test(`${name}: valid values round trip`, () => {
    run(
      fc.property(arb, (v) => {
        const r = decode(encode(v));
        assert.ok(wellFormed(r), `${name} failed to decode: ${JSON.stringify(r)}`);
        assert.deepStrictEqual(r.value, v);
      }),
    );
  });
}

roundTrip('commands', command, encodeCommand, decodeCommand);
roundTrip('responses', response, encodeResponse, decodeResponse);
roundTrip('journal records', record, encodeRecord, decodeRecord);
roundTrip('server hellos', serverHello, encodeServerHello, decodeServerHello);
roundTrip('client hellos', clientHello, encodeClientHello, decodeClientHello);
roundTrip(
  'transmissions',
  transmissionParts,
  encodeParts,
  (b) => {
    const r = decodeTransmission(b);
    return r.ok ? { ok: true, value: { auth: r.value.auth, corrId: r.value.corrId, entityId: r.value.entityId, command: r.value.command } } : r;
  },
);
roundTrip(
  'message plain texts',
  rec({ ts: u64, notify: fc.boolean(), body: upTo(500) }).map((m) => ({ msgId: MSG_ID, ...m })),
  (m) => encodeMessagePlain(m.ts, m.notify, m.body),
  (b) => decodeMessagePlain(MSG_ID, b),
);
roundTrip('message meta', rec({ msgId: bytes(MSG_ID_LENGTH), ts: u64 }), encodeMeta, decodeMeta);

test('message plain texts keep their msgId', () => {
  run(
    fc.property(bytes(MSG_ID_LENGTH), u64, fc.boolean(), upTo(100), (msgId, ts, notify, body) => {
      const r = decodeMessagePlain(msgId, encodeMessagePlain(ts, notify, body));
      assert.ok(r.ok);
      assert.deepStrictEqual(r.value, { msgId, ts, notify, body });
    }),
  );
});

test('blocks: items round trip through encodeBlock, and through packBlocks in order', () => {
  run(
    fc.property(blockItems, fc.nat(100), (items, slack) => {
      const size = 2 + items.reduce((n, it) => n + 2 + it.length, 0) + slack;
      const block = encodeBlock(items, size);
      assert.equal(block.length, size);
      const r = decodeBlock(block);
      assert.ok(r.ok);
      assert.deepStrictEqual(r.value, items);
    }),
  );
  run(
    fc.property(fc.array(upTo(maxItemLength(256)), { minLength: 1, maxLength: 40 }), (items) => {
      const blocks = packBlocks(items, 256);
      const back: Uint8Array[] = [];
      for (const b of blocks) {
        assert.equal(b.length, 256);
        const r = decodeBlock(b);
        assert.ok(r.ok);
        back.push(...r.value);
      }
      assert.deepStrictEqual(back, items);
      // Greedy: no two neighbouring blocks could have been one.
      const sizes = blocks.map((b) => {
        const r = decodeBlock(b);
        return r.ok ? r.value.reduce((n, it) => n + 2 + it.length, 2) : 0;
      });
      for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i - 1]! + sizes[i]! - 2 > 256);
    }),
  );
});

test('addresses and base64url round trip', () => {
  run(
    fc.property(address, (a) => {
      const r = parseAddress(formatAddress(a));
      assert.ok(wellFormed(r), formatAddress(a));
      assert.deepStrictEqual(r.value, a);
    }),
  );
  run(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      assert.deepStrictEqual(fromBase64Url(toBase64Url(b)), b);
    }),
  );
});

test('keys of the wrong length are rejected by the relay decoders, not thrown on', () => {
  const wrong = (n: number) => fc.uint8Array({ maxLength: 64 }).filter((b) => b.length !== n);
  run(
    fc.property(wrong(32), key, (bad, good) => {
      for (const c of [
        { type: 'NEW', rcvAuthKey: bad, rcvDhKey: good },
        { type: 'NEW', rcvAuthKey: good, rcvDhKey: bad },
        { type: 'KEY', sndAuthKey: bad },
        { type: 'NKEY', ntfAuthKey: good, rcvNtfDhKey: bad },
        { type: 'NSUBS', serviceKey: bad },
      ] as RelayCommand[])
        assert.equal(decodeCommand(encodeCommand(c)).ok, false, c.type);
      assert.equal(decodeResponse(encodeResponse({ type: 'IDS', rcvId: bad.subarray(0, ID_LENGTH - 1), sndId: good.subarray(0, ID_LENGTH), srvDhKey: good })).ok, false);
      assert.equal(decodeResponse(encodeResponse({ type: 'NID', notifierId: good.subarray(0, ID_LENGTH), srvNtfDhKey: bad })).ok, false);
    }),
    500,
  );
  run(
    fc.property(wrong(MSG_ID_LENGTH), (bad) => {
      assert.equal(decodeCommand(encodeCommand({ type: 'ACK', msgId: bad })).ok, false);
    }),
    500,
  );
});

// ---- (c) mutations of valid encodings never throw ----

const VALID: Array<{ target: Target; arb: fc.Arbitrary<Uint8Array> }> = [
  { target: TARGETS[0]!, arb: fc.tuple(blockItems, fc.nat(40)).map(([items, slack]) => encodeBlock(items, 2 + items.reduce((n, it) => n + 2 + it.length, 0) + slack)) },
  { target: TARGETS[1]!, arb: transmissionParts.map(encodeParts) },
  { target: TARGETS[2]!, arb: serverHello.map(encodeServerHello) },
  { target: TARGETS[3]!, arb: clientHello.map(encodeClientHello) },
  { target: TARGETS[4]!, arb: command.map(encodeCommand) },
  { target: TARGETS[5]!, arb: response.map(encodeResponse) },
  { target: TARGETS[6]!, arb: fc.tuple(u64, fc.boolean(), upTo(100)).map(([ts, n, body]) => encodeMessagePlain(ts, n, body)) },
  { target: TARGETS[7]!, arb: rec({ msgId: bytes(MSG_ID_LENGTH), ts: u64 }).map(encodeMeta) },
  { target: TARGETS[8]!, arb: record.map(encodeRecord) },
];
assert.equal(VALID.length, TARGETS.length);

for (const { target, arb } of VALID) {
  test(`${target.name}: mutated valid encodings never throw; what still decodes is canonical`, () => {
    let accepted = 0;
    let rejected = 0;
    run(
      fc.property(arb, mutations, (valid, ms) => {
        const b = mutate(valid, ms);
        const r = target.decode(b);
        if (wellFormed(r)) {
          accepted++;
          assert.equal(hex(target.reencode(r.value, b)), hex(b));
        } else rejected++;
      }),
    );
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert.ok(rejected > 0, `${target.name}: no mutation was rejected`);
    assert.ok(accepted > 0, `${target.name}: no mutation was accepted`);
  });
}

test('every strict prefix of a valid command, response, record or hello is rejected', () => {
  const cases: Array<[fc.Arbitrary<Uint8Array>, (b: Uint8Array) => Parsed<unknown>]> = [
    [command.map(encodeCommand), decodeCommand],
    [response.map(encodeResponse), decodeResponse],
    [record.map(encodeRecord), decodeRecord],
    [serverHello.map(encodeServerHello), decodeServerHello],
    [clientHello.map(encodeClientHello), decodeClientHello],
    [rec({ msgId: bytes(MSG_ID_LENGTH), ts: u64 }).map(encodeMeta), decodeMeta],
  ];
  for (const [arb, decode] of cases) {
    run(
      fc.property(arb, fc.nat(), (b, at) => {
        const r = decode(b.subarray(0, at % b.length));
        assert.equal(wellFormed(r), false);
      }),
      500,
    );
  }
});

test('authenticators: any change to an authenticated transmission fails verification', () => {
  const k = nodeCrypto.randomBytes(32);
  const sessionId = nodeCrypto.randomBytes(32);
  run(
    fc.property(transmissionParts, mutations, (p, ms) => {
      const signed = signedPart(p.corrId, p.entityId, p.command);
      const t = encodeTransmission(authenticator(nodeCrypto, k, sessionId, signed), signed);
      const ok = decodeTransmission(t);
      assert.ok(ok.ok && verifyAuthenticator(nodeCrypto, k, sessionId, ok.value));
      // Not valid under another session or key.
      assert.equal(verifyAuthenticator(nodeCrypto, k, nodeCrypto.randomBytes(32), ok.value), false);
      const m = mutate(t, ms);
      if (hex(m) === hex(t)) return;
      const r = decodeTransmission(m);
      if (r.ok) assert.equal(verifyAuthenticator(nodeCrypto, k, sessionId, r.value), false);
    }),
    1000,
  );
});
