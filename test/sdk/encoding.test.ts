// The SDK's text and binary forms: invitation and contact address links (src/sdk/invitation.ts),
// contact content (src/sdk/content.ts) and stored records (src/sdk/records.ts). Round trips, strictness with clear
// errors, and fuzzing: arbitrary or mutated input never throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { concat, Encoder, fromBase64Url, toBase64Url, type Parsed } from '../../src/core/encoding.ts';
import { ID_LENGTH } from '../../src/relay/protocol.ts';
import {
  CONTACT_ADDRESS_SCHEME,
  formatContactAddress,
  formatInvitation,
  INVITATION_SCHEME,
  INVITATION_VERSION,
  parseContactAddress,
  parseInvitation,
  type Invitation,
} from '../../src/sdk/invitation.ts';
import { CALL_ID_LENGTH, decodeContent, encodeContent, MAX_NAME_BYTES, type Content } from '../../src/sdk/content.ts';
import { deserialize, serialize } from '../../src/sdk/records.ts';

/** Up to three byte edits at random places: set, insert, delete, or truncate there. */
const byteEdits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete', 'truncate')), {
  minLength: 1,
  maxLength: 3,
});
type ByteEdit = [number, number, 'set' | 'insert' | 'delete' | 'truncate'];

function edited(b: Uint8Array, edits: ByteEdit[]): Uint8Array {
  for (const [at, v, kind] of edits) {
    const p = at % (b.length + 1);
    if (kind === 'set') b = concat(b.subarray(0, p), new Uint8Array([v]), b.subarray(p + 1));
    else if (kind === 'insert') b = concat(b.subarray(0, p), new Uint8Array([v]), b.subarray(p));
    else if (kind === 'delete') b = concat(b.subarray(0, p), b.subarray(p + 1));
    else b = b.subarray(0, p);
  }
  return b;
}

const RUNS = 1000;
const run = <Ts extends unknown[]>(p: fc.IProperty<Ts>, numRuns = RUNS) => fc.assert(p, { numRuns });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const utf8 = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Exactly one of the two shapes, with a non-empty error. */
function wellFormed<T>(r: Parsed<T>): r is { ok: true; value: T } {
  if (r.ok === true) return true;
  assert.equal(r.ok, false);
  assert.equal(typeof r.error, 'string');
  assert.ok(r.error.length > 0);
  return false;
}

function rejects<T>(r: Parsed<T>, error: RegExp, what = ''): void {
  assert.equal(r.ok, false, `accepted: ${what}`);
  if (!r.ok) assert.match(r.error, error, what);
}

// ---- invitations ----

const relay = fc
  .tuple(
    fc.constantFrom('hush://', 'hush+ws://'),
    bytes(32).map(toBase64Url),
    fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((h) => `[${h}]`)),
    fc.integer({ min: 1, max: 65535 }),
  )
  .map(([scheme, fp, host, port]) => `${scheme}${fp}@${host}:${port}`)
  .filter((r) => r.length <= 255);

const invitation: fc.Arbitrary<Invitation> = fc
  .tuple(relay, bytes(ID_LENGTH), bytes(32))
  .map(([relay, sndId, e2eKey]) => ({ relay, sndId, e2eKey }));

const RELAY = `hush://${toBase64Url(new Uint8Array(32).fill(7))}@relay.example.org:443`;
const VALID: Invitation = { relay: RELAY, sndId: new Uint8Array(ID_LENGTH).fill(1), e2eKey: new Uint8Array(32).fill(2) };

/** An invitation's bytes, field by field, to build malformed ones. */
function raw(o: { version?: number; relay?: Uint8Array; sndId?: Uint8Array; key?: Uint8Array; tail?: Uint8Array } = {}) {
  const e = new Encoder()
    .u8(o.version ?? INVITATION_VERSION)
    .short(o.relay ?? utf8(VALID.relay))
    .short(o.sndId ?? VALID.sndId)
    .short(o.key ?? VALID.e2eKey);
  return concat(e.done(), o.tail ?? new Uint8Array(0));
}
const link = (b: Uint8Array, scheme = INVITATION_SCHEME) => scheme + toBase64Url(b);

/** The two link kinds: same bytes, their own scheme and words in errors. */
const KINDS = [
  { scheme: INVITATION_SCHEME, format: formatInvitation, parse: parseInvitation, a: 'an invitation', noun: 'invitation', other: CONTACT_ADDRESS_SCHEME },
  { scheme: CONTACT_ADDRESS_SCHEME, format: formatContactAddress, parse: parseContactAddress, a: 'a contact address', noun: 'contact address', other: INVITATION_SCHEME },
];

for (const { scheme, format, parse, noun } of KINDS)
test(`${noun} links round trip, alone and as the fragment of a web link`, () => {
  run(
    fc.property(invitation, (i) => {
      const text = format(i);
      assert.match(text, new RegExp(`^${scheme}[A-Za-z0-9_-]+$`));
      const forms = [
        text,
        `  ${text}\n`,
        `https://example.org/chat#${text}`,
        `HTTP://example.org/#${text}`,
        `https://example.org/chat?x=1#${encodeURIComponent(text)}`,
        `https://example.org/#${[...text].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('')}`,
      ];
      for (const f of forms) assert.deepStrictEqual(parse(f), { ok: true, value: i }, f);
    }),
  );
  assert.deepStrictEqual(parse(link(raw(), scheme)), { ok: true, value: VALID });
});

for (const { scheme, format, parse, a, noun, other } of KINDS)
test(`malformed ${noun} links are errors saying what is wrong`, () => {
  const link = (b: Uint8Array) => scheme + toBase64Url(b);
  const valid = format(VALID);
  const payload = valid.slice(scheme.length);
  const starts = new RegExp(`^${a} starts with ${scheme}$`);
  const cases: Array<[string, RegExp]> = [
    ['', starts],
    [payload, starts],
    [`${scheme.toUpperCase()}${payload}`, starts],
    [`${scheme.slice(0, -1)}ation:${payload}`, starts],
    [scheme, starts],
    [`${valid}=`, starts],
    [`${scheme}${payload.replace(/[-_A]/, '+')}`, starts],
    [`${valid} x`, starts],
    [`${other}${payload}`, new RegExp(`^this is an? [a-z ]+, not ${a}$`)],
    [`https://example.org/#${other}${payload}`, /^this is/],
    ['https://example.org/chat', new RegExp(`no ${noun} after #`)],
    ['https://example.org/chat#', starts],
    [`https://example.org/#%zz${valid}`, /percent-encoding/],
    [`https://example.org/#${valid}%E0%A4`, /percent-encoding/],
    [`ftp://example.org/#${valid}`, starts],
    // base64url of a length no bytes have, or with non-zero trailing bits
    [`${scheme}${payload.slice(0, 41)}`, /not valid base64url/],
    [`${scheme}AB`, /not valid base64url/],
    // the bytes
    [link(raw().subarray(0, 50)), /truncated/],
    [link(raw().subarray(0, raw().length - 1)), /truncated/],
    [link(new Uint8Array([INVITATION_VERSION])), /truncated/],
    [link(raw({ tail: new Uint8Array([0]) })), /trailing bytes/],
    [link(raw({ version: 0 })), new RegExp(`unknown ${noun} version`)],
    [link(raw({ version: 2 })), new RegExp(`unknown ${noun} version`)],
    [link(raw({ relay: utf8('hush://relay.example.org:443') })), /no valid relay address/],
    [link(raw({ relay: utf8(RELAY.replace('hush://', 'https://')) })), /no valid relay address/],
    [link(raw({ relay: utf8(RELAY.replace(':443', ':70000')) })), /no valid relay address/],
    [link(raw({ relay: utf8(RELAY.replace(':443', '')) })), /no valid relay address/],
    [link(raw({ relay: utf8(RELAY + ' ') })), /no valid relay address/],
    [link(raw({ relay: new Uint8Array(0) })), /no valid relay address/],
    [link(raw({ sndId: new Uint8Array(ID_LENGTH - 1) })), /sender ID must be 24 bytes/],
    [link(raw({ sndId: new Uint8Array(ID_LENGTH + 1) })), /sender ID must be 24 bytes/],
    [link(raw({ sndId: new Uint8Array(0) })), /sender ID must be 24 bytes/],
    [link(raw({ key: new Uint8Array(31) })), /key must be 32 bytes/],
    [link(raw({ key: new Uint8Array(33) })), /key must be 32 bytes/],
  ];
  for (const [text, error] of cases) rejects(parse(text), error, text);
  assert.equal(ID_LENGTH, 24);
});

test('the link parsers never throw: arbitrary strings and mutated valid links', () => {
  const check = (s: string) => {
    for (const { parse, format } of KINDS) {
      const r = parse(s);
      // What is accepted is canonical: it formats back to the same link.
      if (wellFormed(r)) {
        const t = s.trim();
        assert.equal(format(r.value), /^https?:\/\//i.test(t) ? decodeURIComponent(t.slice(t.indexOf('#') + 1)) : t);
      }
    }
  };
  run(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), check));
  run(
    fc.property(
      fc.constantFrom('', INVITATION_SCHEME, `https://x.org/#${INVITATION_SCHEME}`, 'http://x/#', 'https://x/#%'),
      fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_%#:=+/'), maxLength: 200 }),
      (prefix, rest) => check(prefix + rest),
    ),
  );
  // Text mutations of valid links.
  const textEdit = fc.record({ at: fc.nat(), ch: fc.string({ unit: 'binary', minLength: 0, maxLength: 2 }), del: fc.nat(3) });
  run(
    fc.property(invitation, fc.array(textEdit, { minLength: 1, maxLength: 4 }), (i, edits) => {
      let s = formatInvitation(i);
      for (const { at, ch, del } of edits) {
        const p = at % (s.length + 1);
        s = s.slice(0, p) + ch + s.slice(p + del);
      }
      check(s);
      check(`https://example.org/#${s}`);
    }),
  );
  // Byte mutations under valid base64url: what still parses is canonical.
  let accepted = 0;
  let rejected = 0;
  run(
    fc.property(
      invitation,
      byteEdits,
      (i, edits) => {
        const b = edited(fromBase64Url(formatInvitation(i).slice(INVITATION_SCHEME.length))!, edits);
        const text = link(b);
        const r = parseInvitation(text);
        if (wellFormed(r)) {
          accepted++;
          assert.equal(formatInvitation(r.value), text);
        } else rejected++;
      },
    ),
  );
  assert.ok(accepted > 0 && rejected > 0, `${accepted} accepted, ${rejected} rejected`);
});

// ---- content ----

const anyText = (maxLength: number) => fc.string({ unit: 'binary', maxLength });
const displayName = fc.oneof(
  anyText(25), // at most 4 bytes a code point: always within the limit
  fc.string({ unit: 'grapheme-ascii', maxLength: MAX_NAME_BYTES }),
  fc.constantFrom('a'.repeat(MAX_NAME_BYTES), 'é'.repeat(MAX_NAME_BYTES / 2), '😀'.repeat(MAX_NAME_BYTES / 4), '日本'.repeat(16) + 'ab', ''),
);
const sentAt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const content: fc.Arbitrary<Content> = fc.oneof(
  fc
    .tuple(displayName, anyText(60), bytes(ID_LENGTH), bytes(32), bytes(32))
    .map(([name, replyRelay, replySndId, replySndKey, sndAuthKey]): Content => ({ type: 'hello', name, replyRelay, replySndId, replySndKey, sndAuthKey })),
  displayName.map((name): Content => ({ type: 'ready', name })),
  fc.tuple(sentAt, fc.oneof(anyText(500), fc.string({ maxLength: 50 }))).map(([sentAt, text]): Content => ({ type: 'text', sentAt, text })),
  fc
    .tuple(sentAt, fc.constantFrom('audio' as const, 'video' as const), fc.integer({ min: 0, max: 2 ** 32 - 1 }), bytes(CALL_ID_LENGTH))
    .map(([sentAt, media, ringMs, callId]): Content => ({ type: 'call', sentAt, media, ringMs, callId })),
  fc.tuple(bytes(CALL_ID_LENGTH), fc.constantFrom('answer' as const, 'decline' as const)).map(([callId, reply]): Content => ({ type: 'call-reply', callId, reply })),
  fc
    .tuple(displayName, anyText(60), bytes(ID_LENGTH), bytes(32))
    .map(([name, replyRelay, replySndId, replySndKey]): Content => ({ type: 'request', name, replyRelay, replySndId, replySndKey })),
  fc
    .tuple(displayName, anyText(60), bytes(ID_LENGTH), bytes(32), bytes(32))
    .map(([name, relay, sndId, sndKey, e2eKey]): Content => ({ type: 'answer', name, relay, sndId, sndKey, e2eKey })),
);

test('content of every type round trips', () => {
  for (const n of ['a'.repeat(MAX_NAME_BYTES), 'é'.repeat(MAX_NAME_BYTES / 2)]) assert.equal(utf8(n).length, MAX_NAME_BYTES);
  const seen = new Set<string>();
  run(
    fc.property(content, (c) => {
      seen.add(c.type);
      assert.deepStrictEqual(decodeContent(encodeContent(c)), { ok: true, value: c });
    }),
    2000,
  );
  assert.deepEqual([...seen].sort(), ['answer', 'call', 'call-reply', 'hello', 'ready', 'request', 'text']);
});

test('a name over MAX_NAME_BYTES does not encode', () => {
  const k = new Uint8Array(32);
  for (const name of ['a'.repeat(MAX_NAME_BYTES + 1), 'é'.repeat(MAX_NAME_BYTES / 2) + 'a', '😀'.repeat(MAX_NAME_BYTES / 4 + 1)]) {
    assert.throws(() => encodeContent({ type: 'ready', name }), RangeError);
    assert.throws(() => encodeContent({ type: 'hello', name, replyRelay: RELAY, replySndId: new Uint8Array(ID_LENGTH), replySndKey: k, sndAuthKey: k }), RangeError);
  }
});

test('decodeContent is strict', () => {
  const u64 = (v: number) => new Encoder(8).u64(v).done();
  const k = new Uint8Array(32);
  const hello = encodeContent({ type: 'hello', name: 'Ann', replyRelay: RELAY, replySndId: new Uint8Array(ID_LENGTH), replySndKey: k, sndAuthKey: k });
  const ready = encodeContent({ type: 'ready', name: 'Ann' });
  const callId = new Uint8Array(CALL_ID_LENGTH).fill(9);
  const call = encodeContent({ type: 'call', sentAt: 5, media: 'video', ringMs: 30_000, callId });
  const reply = encodeContent({ type: 'call-reply', callId, reply: 'decline' });
  const u32 = (v: number) => new Encoder(4).u32(v).done();
  const request = encodeContent({ type: 'request', name: 'Ann', replyRelay: RELAY, replySndId: new Uint8Array(ID_LENGTH), replySndKey: k });
  const answer = encodeContent({ type: 'answer', name: 'Ann', relay: RELAY, sndId: new Uint8Array(ID_LENGTH), sndKey: k, e2eKey: k });
  const cases: Array<[Uint8Array, RegExp]> = [
    [new Uint8Array(0), /truncated/],
    [concat(hello, new Uint8Array([0])), /trailing bytes/],
    [concat(ready, new Uint8Array([0])), /trailing bytes/],
    [concat(call, new Uint8Array([0])), /trailing bytes/],
    [concat(reply, new Uint8Array([0])), /trailing bytes/],
    [new Uint8Array([0]), /unknown content type/],
    [concat(request, new Uint8Array([0])), /trailing bytes/],
    [concat(answer, new Uint8Array([0])), /trailing bytes/],
    [new Uint8Array([8]), /unknown content type/],
    [new Uint8Array([255, 0, 0]), /unknown content type/],
    [concat(new Uint8Array([4]), u64(1), new Uint8Array([0])), /unknown call media/],
    [concat(new Uint8Array([4]), u64(1), new Uint8Array([3])), /unknown call media/],
    [concat(new Uint8Array([4]), u64(1)), /truncated/],
    // the call format before ring time and call ID (no longer read)
    [concat(new Uint8Array([4]), u64(1), new Uint8Array([1])), /truncated/],
    [concat(new Uint8Array([4]), u64(1), new Uint8Array([1]), u32(1000), new Uint8Array([CALL_ID_LENGTH - 1]), callId.subarray(1)), /call ID must be 12 bytes/],
    [concat(new Uint8Array([5]), new Uint8Array([CALL_ID_LENGTH]), callId, new Uint8Array([0])), /unknown call reply/],
    [concat(new Uint8Array([5]), new Uint8Array([CALL_ID_LENGTH]), callId, new Uint8Array([3])), /unknown call reply/],
    [concat(new Uint8Array([5]), new Uint8Array([CALL_ID_LENGTH + 1]), callId, new Uint8Array([0, 1])), /call ID must be 12 bytes/],
    [concat(new Uint8Array([3]), new Uint8Array([0, 0x20, 0, 0, 0, 0, 0, 0])), /u64/],
    // invalid UTF-8: a stray byte, a cut sequence, an overlong form, an encoded surrogate
    [concat(new Uint8Array([3]), u64(1), new Uint8Array([0xff])), /UTF-8/],
    [concat(new Uint8Array([3]), u64(1), utf8('ok'), new Uint8Array([0xc3])), /UTF-8/],
    [new Uint8Array([2, 2, 0xc0, 0x80]), /UTF-8/],
    [new Uint8Array([2, 3, 0xed, 0xa0, 0x80]), /UTF-8/],
    [concat(new Uint8Array([1, 1, 0x41, 1, 0xfe]), hello.subarray(2 + 3 + 1 + utf8(RELAY).length)), /UTF-8/],
    [concat(new Uint8Array([2, MAX_NAME_BYTES + 1]), utf8('a'.repeat(MAX_NAME_BYTES + 1))), /name too long/],
    [concat(new Uint8Array([1, MAX_NAME_BYTES + 1]), utf8('a'.repeat(MAX_NAME_BYTES + 1)), hello.subarray(5)), /name too long/],
    [concat(new Uint8Array([6, MAX_NAME_BYTES + 1]), utf8('a'.repeat(MAX_NAME_BYTES + 1)), request.subarray(5)), /name too long/],
    [concat(new Uint8Array([7, MAX_NAME_BYTES + 1]), utf8('a'.repeat(MAX_NAME_BYTES + 1)), answer.subarray(5)), /name too long/],
  ];
  for (const [b, error] of cases) rejects(decodeContent(b), error, hex(b));
  // Every strict prefix of a hello, ready, call, call reply, request or answer is rejected.
  for (const b of [hello, ready, call, reply, request, answer]) for (let n = 0; n < b.length; n++) assert.equal(decodeContent(b.subarray(0, n)).ok, false, `${hex(b)} cut at ${n}`);
  // Wrong key lengths in a hello.
  for (const [field, len] of [['replySndId', ID_LENGTH + 1], ['replySndKey', 31], ['sndAuthKey', 33]] as const) {
    const bad = { type: 'hello', name: 'A', replyRelay: RELAY, replySndId: new Uint8Array(ID_LENGTH), replySndKey: k, sndAuthKey: k, [field]: new Uint8Array(len) } as Content;
    rejects(decodeContent(encodeContent(bad)), /must be \d+ bytes/, field);
  }
  for (const [field, len] of [['replySndId', ID_LENGTH - 1], ['replySndKey', 33]] as const) {
    const bad = { type: 'request', name: 'A', replyRelay: RELAY, replySndId: new Uint8Array(ID_LENGTH), replySndKey: k, [field]: new Uint8Array(len) } as Content;
    rejects(decodeContent(encodeContent(bad)), /must be \d+ bytes/, field);
  }
  for (const [field, len] of [['sndId', ID_LENGTH + 1], ['sndKey', 31], ['e2eKey', 0]] as const) {
    const bad = { type: 'answer', name: 'A', relay: RELAY, sndId: new Uint8Array(ID_LENGTH), sndKey: k, e2eKey: k, [field]: new Uint8Array(len) } as Content;
    rejects(decodeContent(encodeContent(bad)), /must be \d+ bytes/, field);
  }
});

test('decodeContent never throws on arbitrary or mutated bytes; what decodes is canonical', () => {
  let accepted = 0;
  const check = (b: Uint8Array) => {
    const r = decodeContent(b);
    if (wellFormed(r)) {
      accepted++;
      assert.equal(hex(encodeContent(r.value)), hex(b));
    }
  };
  run(fc.property(fc.uint8Array({ maxLength: 200 }), check), 3000);
  run(fc.property(fc.integer({ min: 0, max: 8 }), fc.uint8Array({ maxLength: 120 }), (t, rest) => check(concat(new Uint8Array([t]), rest))), 3000);
  run(
    fc.property(content, byteEdits, (c, edits) => {
      check(edited(encodeContent(c), edits));
    }),
    3000,
  );
  assert.ok(accepted > 0);
});

test('text and names starting with U+FEFF round trip', () => {
  const k = new Uint8Array(32);
  for (const c of [
    { type: 'text', sentAt: 1, text: '\uFEFFhi' },
    { type: 'ready', name: '\uFEFFAnn' },
    { type: 'hello', name: 'Ann', replyRelay: '\uFEFFx', replySndId: new Uint8Array(ID_LENGTH), replySndKey: k, sndAuthKey: k },
  ] as Content[])
    assert.deepStrictEqual(decodeContent(encodeContent(c)), { ok: true, value: c });
});

test('stored records keep bytes as bytes, a Node Buffer (a device token an app passes) included', () => {
  const record = { device: { provider: 'apns', token: Buffer.from('0a1b2c', 'hex') }, key: Uint8Array.of(1, 2, 3), n: 7 };
  const back = deserialize<typeof record>(serialize(record));
  assert.ok(back.device.token instanceof Uint8Array && !Buffer.isBuffer(back.device.token));
  assert.deepEqual([...back.device.token], [0x0a, 0x1b, 0x2c]);
  assert.deepEqual([...back.key], [1, 2, 3]);
  assert.equal(back.n, 7);
  run(fc.property(fc.uint8Array(), (b) => assert.deepEqual([...deserialize<{ b: Uint8Array }>(serialize({ b: Buffer.from(b) })).b], [...b])), 200);
});

test('stored records: any JSON value with bytes anywhere is written as by a replacer, and left as it was', () => {
  // the replacer form serialize() had: slower, the same text
  const reference = (v: unknown) =>
    JSON.stringify(v, function (this: Record<string, unknown>, k, x) {
      return this[k] instanceof Uint8Array ? { $b: toBase64Url(this[k] as Uint8Array) } : x;
    });
  const bytes = fc.uint8Array({ maxLength: 40 });
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, fc.jsonValue({ maxDepth: 1 }), bytes, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string(), tie('v'), { maxKeys: 4 })),
  })).v;
  run(
    fc.property(value, (v) => {
      const expected = reference(v);
      const text = serialize(v);
      assert.equal(text, expected);
      assert.equal(reference(v), expected, 'the record is unchanged');
      assert.equal(serialize(deserialize(text)), text);
    }),
    300,
  );
});
