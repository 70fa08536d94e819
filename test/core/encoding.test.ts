// Unit tests of the binary encoding (Encoder/Decoder/parse, base64url), of
// block framing (encode/decode/pack) and of server address parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ascii,
  concat,
  Decoder,
  Encoder,
  equalBytes,
  fromBase64Url,
  latin1,
  latin1Bytes,
  padTo,
  parse,
  ParseError,
  toBase64Url,
  unpad,
} from '../../src/core/encoding.ts';
import { decodeBlock, encodeBlock, maxItemLength, packBlocks } from '../../src/core/block.ts';
import { fingerprintOf, formatAddress, parseAddress, webSocketUrl } from '../../src/core/address.ts';
import { nobleCrypto } from '../../src/core/crypto/noble.ts';
import { readDevice, writeDevice } from '../../src/push/device.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fromHex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const range = (n: number, start = 0) => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);

/** One value of every field kind, and the reader that reads it back. */
function sample(): { bytes: Uint8Array; read: (d: Decoder) => unknown; value: unknown } {
  const bytes = new Encoder(4)
    .u8(0xab)
    .u16(0xbeef)
    .u32(0xdeadbeef)
    .u64(Number.MAX_SAFE_INTEGER)
    .raw(range(3))
    .short(range(5, 10))
    .long(range(300))
    .tag('HELLO')
    .bool(true)
    .bool(false)
    .done();
  const read = (d: Decoder) => [
    d.u8(),
    d.u16(),
    d.u32(),
    d.u64(),
    hex(d.raw(3)),
    hex(d.short()),
    hex(d.long()),
    d.tag(),
    d.bool(),
    d.bool(),
  ];
  const value = [0xab, 0xbeef, 0xdeadbeef, Number.MAX_SAFE_INTEGER, hex(range(3)), hex(range(5, 10)), hex(range(300)), 'HELLO', true, false];
  return { bytes, read, value };
}

test('Encoder writes big-endian integers and length prefixes', () => {
  const b = new Encoder(1).u8(1).u16(0x0203).u32(0x04050607).u64(0x0809_0a0b0c0d).done();
  assert.equal(hex(b), '01' + '0203' + '04050607' + '000008090a0b0c0d');
  assert.equal(hex(new Encoder().short(Uint8Array.of(9, 8)).done()), '020908');
  assert.equal(hex(new Encoder().long(Uint8Array.of(7)).done()), '000107');
  assert.equal(hex(new Encoder().tag('OK').bool(true).bool(false).done()), '024f4b0100');
  assert.equal(new Encoder().done().length, 0);
});

test('Encoder grows past its initial capacity without losing bytes', () => {
  const e = new Encoder(1);
  for (let i = 0; i < 1000; i++) e.u16(i);
  const b = e.done();
  assert.equal(b.length, 2000);
  assert.equal(e.length, 2000);
  const d = new Decoder(b);
  for (let i = 0; i < 1000; i++) assert.equal(d.u16(), i);
  d.end();
  // One write larger than double the capacity.
  assert.equal(hex(new Encoder(2).raw(range(1000)).done()), hex(range(1000)));
});

test('Encoder refuses over-long length-prefixed fields', () => {
  assert.doesNotThrow(() => new Encoder().short(new Uint8Array(255)));
  assert.throws(() => new Encoder().short(new Uint8Array(256)), RangeError);
  assert.doesNotThrow(() => new Encoder().long(new Uint8Array(65535)));
  assert.throws(() => new Encoder().long(new Uint8Array(65536)), RangeError);
});

test('parse reads back every field kind', () => {
  const { bytes, read, value } = sample();
  const r = parse(bytes, read);
  assert.deepEqual(r, { ok: true, value });
});

test('parse: every truncation of a valid encoding is a ParseError result', () => {
  const { bytes, read } = sample();
  for (let n = 0; n < bytes.length; n++) {
    const r = parse(bytes.subarray(0, n), read);
    assert.equal(r.ok, false, `prefix of ${n} bytes parsed`);
    if (!r.ok) assert.match(r.error, /truncated/);
  }
});

test('parse rejects trailing bytes', () => {
  const { bytes, read } = sample();
  for (const extra of [Uint8Array.of(0), Uint8Array.of(0xff, 1), new Uint8Array(100)]) {
    assert.deepEqual(parse(concat(bytes, extra), read), { ok: false, error: 'trailing bytes' });
  }
  assert.deepEqual(parse(Uint8Array.of(1, 2), (d) => d.u8()), { ok: false, error: 'trailing bytes' });
  assert.deepEqual(parse(new Uint8Array(0), () => 1), { ok: true, value: 1 });
});

test('parse turns only ParseErrors into results; other exceptions propagate', () => {
  assert.deepEqual(
    parse(Uint8Array.of(1), () => {
      throw new ParseError('nope');
    }),
    { ok: false, error: 'nope' },
  );
  assert.throws(
    () =>
      parse(Uint8Array.of(1), () => {
        throw new TypeError('bug');
      }),
    TypeError,
  );
});

test('Decoder works on a subarray view (byteOffset respected)', () => {
  const whole = Uint8Array.of(0xff, 0xff, 0x00, 0x02, 0xaa, 0xbb, 0xff);
  const r = parse(whole.subarray(2, 6), (d) => hex(d.long()));
  assert.deepEqual(r, { ok: true, value: 'aabb' });
});

test('u64 bounds: 0 and 2^53-1 round trip, anything larger is a ParseError', () => {
  for (const v of [0, 1, 0xffff_ffff, 0x1_0000_0000, 2 ** 52, Number.MAX_SAFE_INTEGER]) {
    assert.deepEqual(parse(new Encoder().u64(v).done(), (d) => d.u64()), { ok: true, value: v });
  }
  assert.equal(hex(new Encoder().u64(Number.MAX_SAFE_INTEGER).done()), '001fffffffffffff');
  for (const h of ['0020000000000000', '8000000000000000', 'ffffffffffffffff', '0020000000000001']) {
    assert.deepEqual(parse(fromHex(h), (d) => d.u64()), { ok: false, error: 'u64 beyond safe integer' });
  }
});

test('Decoder field checks: key length, printable tag, strict bool', () => {
  assert.equal(parse(Uint8Array.of(2, 1, 2), (d) => d.key(2, 'k')).ok, true);
  assert.deepEqual(parse(Uint8Array.of(1, 1), (d) => d.key(2, 'k')), { ok: false, error: 'k must be 2 bytes' });
  assert.deepEqual(parse(Uint8Array.of(3, 1, 2, 3), (d) => d.key(2, 'k')), { ok: false, error: 'k must be 2 bytes' });
  assert.deepEqual(parse(Uint8Array.of(2, 0x41, 0x20), (d) => d.tag()), { ok: false, error: 'tag is not printable ASCII' });
  assert.deepEqual(parse(Uint8Array.of(1, 0x7f), (d) => d.tag()), { ok: false, error: 'tag is not printable ASCII' });
  assert.deepEqual(parse(Uint8Array.of(1, 0xc3), (d) => d.tag()), { ok: false, error: 'tag is not printable ASCII' });
  assert.deepEqual(parse(Uint8Array.of(2, 0x21, 0x7e), (d) => d.tag()), { ok: true, value: '!~' });
  assert.deepEqual(parse(Uint8Array.of(0), (d) => d.bool()), { ok: true, value: false });
  assert.deepEqual(parse(Uint8Array.of(1), (d) => d.bool()), { ok: true, value: true });
  assert.deepEqual(parse(Uint8Array.of(2), (d) => d.bool()), { ok: false, error: 'bool must be 0 or 1' });
  // A length prefix pointing past the end is truncation, not an out-of-bounds read.
  assert.equal(parse(Uint8Array.of(5, 1, 2), (d) => d.short()).ok, false);
  assert.equal(parse(Uint8Array.of(0xff, 0xff, 1), (d) => d.long()).ok, false);
});

test('keys and device tokens read from a block are copies: keeping one does not keep the block alive', () => {
  const block = Buffer.alloc(16_384); // a Node Buffer, whose slice() would be a view
  const e = new Encoder().short(Uint8Array.of(1, 2, 3));
  writeDevice(e, { provider: 'apns', token: Uint8Array.of(9, 9) });
  block.set(e.done());
  const r = parse(block, (d) => {
    const k = d.key(3, 'k');
    const device = readDevice(d);
    d.raw(d.remaining);
    return { k, device };
  });
  assert.ok(r.ok);
  assert.deepEqual([...r.value.k], [1, 2, 3]);
  assert.equal(r.value.k.buffer.byteLength, 3);
  assert.deepEqual([...r.value.device.token], [9, 9]);
  assert.equal(r.value.device.token.buffer.byteLength, 2);
  block.fill(0);
  assert.deepEqual([...r.value.k], [1, 2, 3]);
});

test('Decoder.remaining counts down', () => {
  const d = new Decoder(new Uint8Array(7));
  assert.equal(d.remaining, 7);
  d.u16();
  assert.equal(d.remaining, 5);
  d.raw(5);
  assert.equal(d.remaining, 0);
  assert.doesNotThrow(() => d.end());
  assert.throws(() => d.u8(), ParseError);
});

test('ascii, concat and equalBytes', () => {
  assert.equal(hex(ascii('Az~')), '417a7e');
  assert.equal(hex(concat()), '');
  assert.equal(hex(concat(Uint8Array.of(1), new Uint8Array(0), Uint8Array.of(2, 3))), '010203');
  assert.equal(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2)), true);
  assert.equal(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3)), false);
  assert.equal(equalBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 2, 0)), false);
  assert.equal(equalBytes(new Uint8Array(0), new Uint8Array(0)), true);
});

test('latin1: one char per byte for all 256 values (0x80-0x9f too), agrees with Buffer, round trips at any length', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const s = latin1(all);
  assert.deepEqual([...s].map((c) => c.charCodeAt(0)), [...all]);
  assert.equal(s, Buffer.from(all).toString('latin1'));
  assert.equal(latin1(all.subarray(250)), '\xfa\xfb\xfc\xfd\xfe\xff'); // a view: its own bytes only
  // Past one fromCharCode call's chunk, and far past what its arguments could hold at once.
  for (const n of [0, 1, 8191, 8192, 8193, 300_000]) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
    const k = latin1(b);
    assert.equal(k.length, n);
    assert.equal(k, Buffer.from(b).toString('latin1'));
    assert.equal(hex(latin1Bytes(k)), hex(b));
  }
});

test('base64url: known values, unpadded, url alphabet', () => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['66', 'Zg'],
    ['666f', 'Zm8'],
    ['666f6f', 'Zm9v'],
    ['666f6f62', 'Zm9vYg'],
    ['fbff', '-_8'],
    ['fbffbf', '-_-_'],
    ['000000', 'AAAA'],
  ];
  for (const [h, s] of cases) {
    assert.equal(toBase64Url(fromHex(h)), s);
    assert.equal(hex(fromBase64Url(s)!), h);
  }
});

test('base64url round trips every length 0..300, and 16000, and agrees with Buffer', () => {
  for (const n of [...Array(301).keys(), 16000]) {
    const b = nobleCrypto.randomBytes(n);
    const s = toBase64Url(b);
    assert.equal(s, Buffer.from(b).toString('base64url'));
    assert.doesNotMatch(s, /[=+/]/);
    assert.equal(hex(fromBase64Url(s)!), hex(b));
  }
});

test('base64url rejects non-canonical and malformed strings', () => {
  // Non-zero trailing bits: a second spelling of 0x66 ("Zg") or of 0x666f ("Zm8").
  for (const s of ['Zh', 'Zv', 'Z_', 'Zm9', 'Zm-', 'AB', 'AAB']) assert.equal(fromBase64Url(s), undefined, s);
  // Length ≡ 1 (mod 4) cannot encode whole bytes.
  for (const s of ['A', 'AAAAA', 'Zm9vY']) assert.equal(fromBase64Url(s), undefined, s);
  // Padding, standard-alphabet characters, whitespace and non-ASCII.
  for (const s of ['Zg==', 'Zg=', '+/8', 'ab/c', 'Zm 9v', 'Zm9v\n', 'é', 'Zm9\u0000']) assert.equal(fromBase64Url(s), undefined, s);
  // The canonical spellings are accepted.
  assert.equal(hex(fromBase64Url('Zg')!), '66');
  assert.equal(hex(fromBase64Url('AA')!), '00');
});

test('base64url: a character outside the alphabet anywhere, in any length, is refused', () => {
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const outside = ['=', '+', '/', ' ', '\n', '.', '\u0000', '\u007f', 'é', '\u0141', '\u{1F600}'];
  for (let n = 1; n <= 40; n++) {
    const s = toBase64Url(nobleCrypto.randomBytes(n));
    for (let i = 0; i < s.length; i++) {
      for (const c of outside) assert.equal(fromBase64Url(s.slice(0, i) + c + s.slice(i + 1)), undefined, `${n} bytes, ${JSON.stringify(c)} at ${i}`);
      // every alphabet character there decodes, or is refused only for its trailing bits
      for (const c of B64) {
        const t = s.slice(0, i) + c + s.slice(i + 1);
        const b = fromBase64Url(t);
        if (b) assert.equal(toBase64Url(b), t);
        else assert.equal(i, s.length - 1, t);
      }
    }
  }
});

test('encodeBlock/decodeBlock: framing, zero padding, size', () => {
  const items = [Uint8Array.of(1, 2, 3), new Uint8Array(0), range(200)];
  const block = encodeBlock(items, 512);
  assert.equal(block.length, 512);
  assert.equal(hex(block.subarray(0, 9)), '0003' + '0003010203' + '0000');
  const r = decodeBlock(block);
  assert.equal(r.ok, true);
  if (r.ok) assert.deepEqual(r.value.map(hex), items.map(hex));
  // Exactly full: header + item header + maxItemLength bytes.
  const full = encodeBlock([new Uint8Array(maxItemLength(64)).fill(7)], 64);
  assert.equal(full.length, 64);
  assert.equal(decodeBlock(full).ok, true);
  assert.throws(() => encodeBlock([new Uint8Array(maxItemLength(64) + 1)], 64), RangeError);
});

test('decodeBlock rejects empty, truncated, non-zero padding and over-long items', () => {
  assert.deepEqual(decodeBlock(new Uint8Array(64)), { ok: false, error: 'empty block' });
  assert.equal(decodeBlock(new Uint8Array(0)).ok, false);
  assert.equal(decodeBlock(Uint8Array.of(0)).ok, false);
  const block = encodeBlock([Uint8Array.of(1, 2, 3)], 64);
  for (let i = 7; i < 64; i++) {
    const bad = block.slice();
    bad[i] = 1;
    assert.deepEqual(decodeBlock(bad), { ok: false, error: 'non-zero padding' }, `padding byte ${i}`);
  }
  // The count promises more items than the block holds.
  const lying = block.slice();
  lying[1] = 2;
  assert.equal(decodeBlock(lying).ok, true, 'a second, empty item is read from the padding');
  lying[1] = 40;
  assert.equal(decodeBlock(lying).ok, false);
  // An item length beyond the block.
  const long = block.slice();
  long[2] = 0xff;
  assert.equal(decodeBlock(long).ok, false);
  // Every truncation of a block with a full last item fails.
  const tight = encodeBlock([range(10), range(20)], 2 + 12 + 22);
  for (let n = 0; n < tight.length; n++) assert.equal(decodeBlock(tight.subarray(0, n)).ok, false, `prefix ${n}`);
});

test('decodeBlock checks the padding of unaligned views too', () => {
  const block = encodeBlock([Uint8Array.of(9, 9, 9)], 61);
  for (let offset = 0; offset < 8; offset++) {
    const buf = new Uint8Array(offset + block.length + 5).fill(0xff);
    buf.set(block, offset);
    const view = buf.subarray(offset, offset + block.length);
    const r = decodeBlock(view);
    assert.ok(r.ok && r.value.length === 1 && hex(r.value[0]!) === '090909', `offset ${offset}`);
    for (let i = 7; i < block.length; i++) {
      view[i] = 0x80;
      assert.deepEqual(decodeBlock(view), { ok: false, error: 'non-zero padding' }, `offset ${offset}, byte ${i}`);
      view[i] = 0;
    }
  }
});

test('unpad gives back what padTo padded and refuses any non-zero padding byte, in unaligned views too', () => {
  const padded = padTo(Uint8Array.of(1, 2, 3), 45);
  for (let offset = 0; offset < 8; offset++) {
    const buf = new Uint8Array(offset + padded.length + 3).fill(0xff);
    buf.set(padded, offset);
    const view = buf.subarray(offset, offset + padded.length);
    const r = unpad(view);
    assert.ok(r.ok && hex(r.value) === '010203', `offset ${offset}`);
    for (let i = 7; i < padded.length; i++) {
      view[i] = 1;
      assert.deepEqual(unpad(view), { ok: false, error: 'non-zero padding' }, `offset ${offset}, byte ${i}`);
      view[i] = 0;
    }
  }
});

test('packBlocks batches many items into few blocks, in order', () => {
  const size = 1024;
  const items = Array.from({ length: 500 }, (_, i) => new Encoder().u32(i).raw(new Uint8Array(i % 37)).done());
  const blocks = packBlocks(items, size);
  const bytes = items.reduce((n, it) => n + 2 + it.length, 0);
  // Greedy packing wastes less than one item's worth per block.
  assert.ok(blocks.length <= Math.ceil(bytes / (size - 2 - 2 - 4 - 36)), `${blocks.length} blocks`);
  assert.ok(blocks.length < items.length / 10);
  const back: Uint8Array[] = [];
  for (const b of blocks) {
    assert.equal(b.length, size);
    const r = decodeBlock(b);
    assert.equal(r.ok, true);
    if (r.ok) back.push(...r.value);
  }
  assert.deepEqual(back.map(hex), items.map(hex));
});

test('packBlocks: a single item per block when items are large, one block for small ones', () => {
  const big = Array.from({ length: 3 }, (_, i) => new Uint8Array(maxItemLength(100)).fill(i + 1));
  const blocks = packBlocks(big, 100);
  assert.equal(blocks.length, 3);
  blocks.forEach((b, i) => {
    const r = decodeBlock(b);
    assert.ok(r.ok && r.value.length === 1 && r.value[0]![0] === i + 1);
  });
  assert.equal(packBlocks([Uint8Array.of(1), Uint8Array.of(2)], 100).length, 1);
  assert.deepEqual(packBlocks([], 100), []);
  assert.throws(() => packBlocks([new Uint8Array(maxItemLength(100) + 1)], 100), RangeError);
});

test('packBlocks caps a block at 65535 items (u16 count)', () => {
  const items = Array.from({ length: 65536 }, () => new Uint8Array(0));
  const blocks = packBlocks(items, 2 + 2 * 65536 + 100);
  assert.equal(blocks.length, 2);
  const counts = blocks.map((b) => {
    const r = decodeBlock(b);
    return r.ok ? r.value.length : -1;
  });
  assert.deepEqual(counts, [65535, 1]);
});

const FP = toBase64Url(range(32));

test('parseAddress: TLS and plain, host names, IPv4, IPv6', () => {
  const cases: Array<[string, string, number, boolean]> = [
    [`hush://${FP}@relay.example.com:443`, 'relay.example.com', 443, true],
    [`hush+ws://${FP}@127.0.0.1:5223`, '127.0.0.1', 5223, false],
    [`hush://${FP}@[::1]:1`, '[::1]', 1, true],
    [`hush+ws://${FP}@localhost:65535`, 'localhost', 65535, false],
  ];
  for (const [text, host, port, tls] of cases) {
    const r = parseAddress(text);
    assert.ok(r.ok, text);
    assert.equal(hex(r.value.fingerprint), hex(range(32)));
    assert.equal(r.value.host, host);
    assert.equal(r.value.port, port);
    assert.equal(r.value.tls, tls);
    assert.equal(formatAddress(r.value), text);
  }
  const a = parseAddress(`hush+ws://${FP}@[::1]:80`);
  assert.ok(a.ok);
  assert.equal(webSocketUrl(a.value), 'ws://[::1]:80/');
  const b = parseAddress(`hush://${FP}@example.org:443`);
  assert.ok(b.ok);
  assert.equal(webSocketUrl(b.value), 'wss://example.org:443/');
});

test('parseAddress rejects malformed addresses', () => {
  const bad = [
    '',
    `http://${FP}@host:1`,
    `hush+wss://${FP}@host:1`,
    `hush://${FP}@host`,
    `hush://${FP}@host:0`,
    `hush://${FP}@host:65536`,
    `hush://${FP}@host:123456`,
    `hush://${FP}@host:-1`,
    `hush://${FP}@:80`,
    `hush://${FP}@ho st:80`,
    `hush://${FP}@host:80/`,
    `hush://${FP}@host:80 `,
    ` hush://${FP}@host:80`,
    `hush://${FP.slice(1)}@host:80`, // 42 characters
    `hush://${FP}A@host:80`, // 44 characters
    `hush://${FP.slice(0, 42)}=@host:80`,
    `hush://${FP.slice(0, 42)}+@host:80`,
    `hush://${FP.slice(0, 42)}B@host:80`, // non-canonical trailing bits of the 32nd byte
    `hush://@host:80`,
    `hush://${FP}@host:80\n`,
  ];
  for (const text of bad) assert.equal(parseAddress(text).ok, false, JSON.stringify(text));
});

test('fingerprintOf is SHA-256 of the identity key and survives format/parse', () => {
  const id = nobleCrypto.ed25519KeyPair();
  const fp = fingerprintOf(nobleCrypto, id.publicKey);
  assert.equal(hex(fp), hex(nobleCrypto.sha256(id.publicKey)));
  const text = formatAddress({ fingerprint: fp, host: 'h', port: 9, tls: false });
  const r = parseAddress(text);
  assert.ok(r.ok);
  assert.equal(hex(r.value.fingerprint), hex(fp));
});
