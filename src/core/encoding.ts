// Binary encoding shared by every Hush protocol: big-endian integers and
// length-prefixed byte strings. The decoder is strict: any read past the end,
// over-long length or trailing byte is a ParseError, caught at the boundary by
// `parse`, so callers only ever see a typed result.

export class ParseError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'ParseError';
  }
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Runs a decoder over the whole input; never throws for malformed input. With `copy` the bytes
 * it reads are copies, not views of `bytes`: for a reader that reuses its buffer.
 */
export function parse<T>(bytes: Uint8Array, read: (d: Decoder) => T, copy = false): Parsed<T> {
  try {
    const d = new Decoder(bytes, copy);
    const value = read(d);
    d.end();
    return { ok: true, value };
  } catch (e) {
    if (e instanceof ParseError) return { ok: false, error: e.reason };
    throw e;
  }
}

// Encoder and Decoder read and write big-endian integers byte by byte rather
// than through a DataView: a DataView per encoded or decoded item costs more
// than the item itself on the servers' hot paths.
export class Encoder {
  private buf: Uint8Array;
  private pos = 0;

  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  // Stores into a Uint8Array keep the low 8 bits, as DataView's setters do.
  u8(v: number): this {
    this.reserve(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    const b = this.buf;
    b[this.pos] = v >>> 8;
    b[this.pos + 1] = v;
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    const b = this.buf;
    b[this.pos] = v >>> 24;
    b[this.pos + 1] = v >>> 16;
    b[this.pos + 2] = v >>> 8;
    b[this.pos + 3] = v;
    this.pos += 4;
    return this;
  }

  /** Unsigned 64-bit from a non-negative safe integer (timestamps in ms). */
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError('u64 must be a non-negative safe integer');
    this.u32(Math.floor(v / 0x1_0000_0000));
    return this.u32(v >>> 0);
  }

  /** Raw bytes of a length both sides know. */
  raw(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Bytes with a 1-byte length prefix (≤ 255). */
  short(b: Uint8Array): this {
    if (b.length > 0xff) throw new RangeError('short bytes over 255');
    return this.u8(b.length).raw(b);
  }

  /** Bytes with a 2-byte length prefix (≤ 65535). */
  long(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError('long bytes over 65535');
    return this.u16(b.length).raw(b);
  }

  /** ASCII tag with a 1-byte length prefix (the bytes of ascii(s), written in place). */
  tag(s: string): this {
    if (s.length > 0xff) throw new RangeError('short bytes over 255');
    this.u8(s.length);
    this.reserve(s.length);
    for (let i = 0; i < s.length; i++) this.buf[this.pos + i] = s.charCodeAt(i) & 0x7f;
    this.pos += s.length;
    return this;
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  get length(): number {
    return this.pos;
  }

  /** The encoded bytes. The encoder is finished: written to after this, it could change them. */
  done(): Uint8Array {
    // An encoder sized exactly hands over its buffer instead of a copy.
    return this.pos === this.buf.length ? this.buf : this.buf.slice(0, this.pos);
  }
}

/** Counts what an Encoder would write, writing nothing: a record's encoded length without its bytes. */
export class ByteCounter extends Encoder {
  private n = 0;

  constructor() {
    super(0);
  }

  override u8(): this {
    this.n += 1;
    return this;
  }

  override u16(): this {
    this.n += 2;
    return this;
  }

  override u32(): this {
    this.n += 4;
    return this;
  }

  override raw(b: Uint8Array): this {
    this.n += b.length;
    return this;
  }

  override tag(s: string): this {
    if (s.length > 0xff) throw new RangeError('short bytes over 255');
    this.n += 1 + s.length;
    return this;
  }

  override get length(): number {
    return this.n;
  }

  override done(): never {
    throw new Error('a ByteCounter has no bytes');
  }
}

export class Decoder {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    /** raw() returns copies, not views. */
    private readonly copy = false,
  ) {}

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw new ParseError(`truncated ${what}`);
  }

  u8(): number {
    this.need(1, 'u8');
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2, 'u16');
    const b = this.buf;
    const v = (b[this.pos]! << 8) | b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4, 'u32');
    const b = this.buf;
    const p = this.pos;
    const v = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
    this.pos += 4;
    return v;
  }

  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    if (hi > 0x1fffff) throw new ParseError('u64 beyond safe integer');
    return hi * 0x1_0000_0000 + lo;
  }

  raw(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const view = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    if (!this.copy) return view;
    // Not slice(): a Node Buffer's slice() is a view too.
    const b = new Uint8Array(n);
    b.set(view);
    return b;
  }

  short(): Uint8Array {
    return this.raw(this.u8(), 'short bytes');
  }

  long(): Uint8Array {
    return this.raw(this.u16(), 'long bytes');
  }

  /** A short field as a latin1 string (see latin1()): keeps nothing of the input, so no copy even with `copy`. */
  shortLatin1(): string {
    const n = this.u8();
    this.need(n, 'short bytes');
    const s = latin1(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }

  /** Fixed-length field that must have exactly `n` bytes behind its 1-byte prefix. */
  /**
   * A copy, unlike the other readers' views: keys, IDs and nonces are what
   * servers keep (in a queue, a token, a last notification), and a view would
   * keep the whole block it came in (16 KB) alive with them.
   */
  key(n: number, what: string): Uint8Array {
    const b = this.short();
    if (b.length !== n) throw new ParseError(`${what} must be ${n} bytes`);
    return this.copy ? b : new Uint8Array(b); // not slice(): a Node Buffer's is a view
  }

  tag(): string {
    const b = this.short();
    let s = '';
    for (let i = 0; i < b.length; i++) {
      const c = b[i]!;
      if (c < 0x21 || c > 0x7e) throw new ParseError('tag is not printable ASCII');
      s += String.fromCharCode(c);
    }
    return s;
  }

  bool(): boolean {
    const v = this.u8();
    if (v > 1) throw new ParseError('bool must be 0 or 1');
    return v === 1;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  end(): void {
    if (this.pos !== this.buf.length) throw new ParseError('trailing bytes');
  }
}

export function ascii(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0x7f;
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

// Bytes as a string of one char per byte (ISO-8859-1): the cheap, reversible
// Map key of an ID or key. Not TextDecoder('latin1'): the Encoding standard
// makes that windows-1252, which changes 0x80–0x9F in browsers.
const CHARS_PER_CALL = 8192; // fromCharCode's arguments live on the stack

export function latin1(b: Uint8Array): string {
  if (b.length <= CHARS_PER_CALL) return String.fromCharCode.apply(null, b as unknown as number[]);
  let s = '';
  for (let i = 0; i < b.length; i += CHARS_PER_CALL)
    s += String.fromCharCode.apply(null, b.subarray(i, i + CHARS_PER_CALL) as unknown as number[]);
  return s;
}

/** The bytes of latin1()'s output (chars above 0xff keep their low 8 bits). */
export function latin1Bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Each ASCII code's base64url value, -1 for none. */
const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_VALUE[B64.charCodeAt(i)] = i;
const b64Value = (s: string, i: number) => {
  const c = s.charCodeAt(i);
  return c < 128 ? B64_VALUE[c]! : -1;
};

/** Unpadded base64url, the text form of keys, IDs and fingerprints. */
export function toBase64Url(b: Uint8Array): string {
  const codes = base64UrlCodes(b);
  return b.length > SHORT_B64 ? ASCII.decode(codes) : latin1(codes);
}

/**
 * The alphabet's character codes, made a string at once: for longer input by
 * one (UTF-8, for ASCII the same) decode, 2x faster than latin1()'s calls on an
 * outbox record's 16 KB envelope; keys and IDs, where the decoder's call costs
 * more than it saves, through latin1().
 */
const SHORT_B64 = 96;
const ASCII = new TextDecoder();
const B64_CODES = Uint8Array.from(B64, (c) => c.charCodeAt(0));

function base64UrlCodes(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((b.length * 4) / 3));
  let o = 0;
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out[o++] = B64_CODES[n >> 18]!;
    out[o++] = B64_CODES[(n >> 12) & 63]!;
    out[o++] = B64_CODES[(n >> 6) & 63]!;
    out[o++] = B64_CODES[n & 63]!;
  }
  if (i < b.length) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8);
    out[o++] = B64_CODES[n >> 18]!;
    out[o++] = B64_CODES[(n >> 12) & 63]!;
    if (i + 1 < b.length) out[o++] = B64_CODES[(n >> 6) & 63]!;
  }
  return out;
}

/**
 * Strict: undefined for any character outside the alphabet, a length that
 * cannot be (4k + 1) and non-zero trailing bits (two spellings of one value).
 * Four characters at a time through a table: a push payload is 2,768 of them.
 */
export function fromBase64Url(s: string): Uint8Array | undefined {
  const n = s.length;
  if (n % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((n * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a = b64Value(s, i);
    const b = b64Value(s, i + 1);
    const c = b64Value(s, i + 2);
    const d = b64Value(s, i + 3);
    if ((a | b | c | d) < 0) return undefined;
    const x = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = x >> 16;
    out[o++] = (x >> 8) & 0xff;
    out[o++] = x & 0xff;
  }
  const rest = n - i;
  if (rest > 0) {
    const a = b64Value(s, i);
    const b = b64Value(s, i + 1);
    const c = rest === 3 ? b64Value(s, i + 2) : 0;
    if ((a | b | c) < 0) return undefined;
    const x = (a << 18) | (b << 12) | (c << 6);
    out[o++] = x >> 16;
    if (rest === 3) out[o++] = (x >> 8) & 0xff;
    if ((x & (rest === 2 ? 0xffff : 0xff)) !== 0) return undefined;
  }
  return out;
}

/** long(plain) ‖ zeros, `size` bytes in all: sealed things of one kind all have one length. */
export function padTo(plain: Uint8Array, size: number): Uint8Array {
  if (plain.length + 4 > size) throw new RangeError(`${plain.length} bytes do not fit in ${size}`);
  if (plain.length > 0xffff) throw new RangeError('long bytes over 65535');
  // long(plain) written straight into the zero-filled result
  const padded = new Uint8Array(size);
  padded[0] = plain.length >>> 8;
  padded[1] = plain.length;
  padded.set(plain, 2);
  return padded;
}

/** The plain text of padTo's output; the padding must be zeros. */
export function unpad(padded: Uint8Array): Parsed<Uint8Array> {
  return parse(padded, (d) => {
    const plain = d.long();
    if (!allZero(d.raw(d.remaining))) throw new ParseError('non-zero padding');
    return plain;
  });
}

/** True if every byte is 0. An indexed loop over 32-bit words where aligned: padding is most of every block and envelope. */
export function allZero(b: Uint8Array): boolean {
  let acc = 0;
  let i = 0;
  const head = Math.min(b.length, (4 - (b.byteOffset & 3)) & 3);
  for (; i < head; i++) acc |= b[i]!;
  const words = (b.length - i) >>> 2;
  if (words > 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let j = 0; j < words; j++) acc |= w[j]!;
    i += words * 4;
  }
  for (; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

