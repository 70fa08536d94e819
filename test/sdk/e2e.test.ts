// The end-to-end hash ratchet (src/sdk/e2e.ts): agreement, fixed-size
// envelopes, redelivery and reordering, tampering (decrypt is pure), forward
// secrecy, the bounded skipped-key store, and noble/node interoperability.
import { test } from 'node:test';
import { SMALL_ORDER_KEYS } from '../../src/core/keys.ts';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nobleCrypto } from '../../src/core/crypto/noble.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import type { CryptoSuite } from '../../src/core/crypto/suite.ts';
import {
  decrypt,
  E2E_BODY_SIZE,
  encrypt,
  initRatchet,
  MAX_CONTENT_BYTES,
  MAX_SKIP,
  readEnvelope,
  type Decrypted,
  type Ratchet,
} from '../../src/sdk/e2e.ts';

const crypto = nobleCrypto;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Both sides of one contact: the inviter learns the acceptor's key from its first message. */
function contact(c: CryptoSuite = crypto) {
  const inviterKeys = c.x25519KeyPair();
  const acceptorKeys = c.x25519KeyPair();
  const acceptor = initRatchet(c, 'acceptor', acceptorKeys, inviterKeys.publicKey)!;
  const inviter = initRatchet(c, 'inviter', inviterKeys, acceptorKeys.publicKey)!;
  assert.ok(acceptor && inviter);
  return { inviterKeys, acceptorKeys, inviter, acceptor };
}

function open(c: CryptoSuite, r: Ratchet, envelope: Uint8Array): Decrypted {
  const env = readEnvelope(envelope);
  assert.ok(env.ok, env.ok ? '' : env.error);
  return decrypt(c, r, env.value);
}

/** Opens and returns the new ratchet, asserting the content. */
function openOk(c: CryptoSuite, r: Ratchet, envelope: Uint8Array, content: Uint8Array): Ratchet {
  const d = open(c, r, envelope);
  assert.ok(d.ok, d.ok ? '' : d.error);
  assert.equal(hex(d.content), hex(content));
  return d.ratchet;
}

/** `count` envelopes from one sender, numbered from the ratchet's sendN. */
function sendMany(c: CryptoSuite, r: Ratchet, count: number, firstKey?: Uint8Array) {
  const envelopes: Uint8Array[] = [];
  const contents: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const content = new TextEncoder().encode(`message ${r.sendN}`);
    const e = encrypt(c, r, content, i === 0 ? firstKey : undefined);
    envelopes.push(e.envelope);
    contents.push(content);
    r = e.ratchet;
  }
  return { envelopes, contents, ratchet: r };
}

test('inviter and acceptor agree: first message with its key, then both directions', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 80 }), (script) => {
      const inviterKeys = crypto.x25519KeyPair();
      const acceptorKeys = crypto.x25519KeyPair();
      let acceptor = initRatchet(crypto, 'acceptor', acceptorKeys, inviterKeys.publicKey)!;
      const hello = new TextEncoder().encode('hello');
      const first = encrypt(crypto, acceptor, hello, acceptorKeys.publicKey);
      acceptor = first.ratchet;
      const env = readEnvelope(first.envelope);
      assert.ok(env.ok);
      assert.equal(env.value.n, 0);
      assert.equal(hex(env.value.firstKey!), hex(acceptorKeys.publicKey));
      // The inviter's ratchet comes from the key in the envelope.
      let inviter = initRatchet(crypto, 'inviter', inviterKeys, env.value.firstKey!)!;
      const d = decrypt(crypto, inviter, env.value);
      assert.ok(d.ok);
      assert.equal(hex(d.content), hex(hello));
      inviter = d.ratchet;
      for (const [toInviter, content] of script) {
        const [from, to] = toInviter ? [acceptor, inviter] : [inviter, acceptor];
        const e = encrypt(crypto, from, content);
        const h = readEnvelope(e.envelope);
        assert.ok(h.ok && h.value.firstKey === undefined && h.value.n === from.sendN);
        const next = openOk(crypto, to, e.envelope, content);
        if (toInviter) [acceptor, inviter] = [e.ratchet, next];
        else [inviter, acceptor] = [e.ratchet, next];
      }
      assert.equal(acceptor.sendN, inviter.recvN);
      assert.equal(inviter.sendN, acceptor.recvN);
      assert.deepEqual(inviter.skipped, {});
      assert.deepEqual(acceptor.skipped, {});
    }),
    { numRuns: 30 },
  );
});

test('every envelope is E2E_BODY_SIZE bytes; content over MAX_CONTENT_BYTES throws', () => {
  const { acceptorKeys, acceptor, inviter } = contact();
  let a = acceptor;
  let i = inviter;
  let firstKey: Uint8Array | undefined = acceptorKeys.publicKey;
  const envelopes: string[] = [];
  for (const size of [0, 1, 2, 1000, MAX_CONTENT_BYTES, 0, MAX_CONTENT_BYTES]) {
    const content = crypto.randomBytes(size);
    const e = encrypt(crypto, a, content, firstKey);
    firstKey = undefined;
    assert.equal(e.envelope.length, E2E_BODY_SIZE, `content of ${size} bytes`);
    envelopes.push(hex(e.envelope));
    i = openOk(crypto, i, e.envelope, content);
    a = e.ratchet;
  }
  assert.equal(new Set(envelopes).size, envelopes.length);
  // The first message (the larger header) sets the limit.
  const { acceptor: fresh } = contact();
  assert.throws(() => encrypt(crypto, fresh, new Uint8Array(MAX_CONTENT_BYTES + 1), acceptorKeys.publicKey), RangeError);
  assert.equal(fresh.sendN, 0);
  // Envelopes of another size are refused before any crypto.
  for (const n of [0, 1, E2E_BODY_SIZE - 1, E2E_BODY_SIZE + 1]) assert.equal(readEnvelope(new Uint8Array(n)).ok, false);
});

test('a redelivered envelope is a duplicate and leaves the ratchet usable', () => {
  const { acceptorKeys, acceptor, inviter } = contact();
  const { envelopes, contents } = sendMany(crypto, acceptor, 3, acceptorKeys.publicKey);
  let r = openOk(crypto, inviter, envelopes[0]!, contents[0]!);
  const before = structuredClone(r);
  assert.deepEqual(open(crypto, r, envelopes[0]!), { ok: false, error: 'duplicate' });
  assert.deepStrictEqual(r, before);
  r = openOk(crypto, r, envelopes[1]!, contents[1]!);
  assert.deepEqual(open(crypto, r, envelopes[1]!), { ok: false, error: 'duplicate' });
  assert.deepEqual(open(crypto, r, envelopes[0]!), { ok: false, error: 'duplicate' });
  openOk(crypto, r, envelopes[2]!, contents[2]!);
});

test('out-of-order delivery within MAX_SKIP: each message opens exactly once', () => {
  const { acceptorKeys, acceptor, inviter } = contact(nodeCrypto);
  const { envelopes, contents } = sendMany(nodeCrypto, acceptor, 40, acceptorKeys.publicKey);
  fc.assert(
    fc.property(fc.shuffledSubarray([...envelopes.keys()], { minLength: envelopes.length }), (order) => {
      let r = inviter;
      for (const n of order) {
        r = openOk(nodeCrypto, r, envelopes[n]!, contents[n]!);
        assert.deepEqual(open(nodeCrypto, r, envelopes[n]!), { ok: false, error: 'duplicate' });
      }
      assert.deepEqual(r.skipped, {});
      for (const e of envelopes) assert.deepEqual(open(nodeCrypto, r, e), { ok: false, error: 'duplicate' });
    }),
    { numRuns: 50 },
  );
  // The widest gap allowed: message MAX_SKIP first, then all before it, newest first.
  const wide = sendMany(nodeCrypto, acceptor, MAX_SKIP + 1, acceptorKeys.publicKey);
  let r = openOk(nodeCrypto, inviter, wide.envelopes[MAX_SKIP]!, wide.contents[MAX_SKIP]!);
  assert.equal(Object.keys(r.skipped).length, MAX_SKIP);
  for (let n = MAX_SKIP - 1; n >= 0; n--) r = openOk(nodeCrypto, r, wide.envelopes[n]!, wide.contents[n]!);
  assert.deepEqual(r.skipped, {});
  for (const e of wide.envelopes) assert.deepEqual(open(nodeCrypto, r, e), { ok: false, error: 'duplicate' });
});

test('a gap over MAX_SKIP is too far ahead, and the ratchet stays usable', () => {
  const { acceptorKeys, acceptor, inviter } = contact(nodeCrypto);
  const { envelopes, contents } = sendMany(nodeCrypto, acceptor, MAX_SKIP + 8, acceptorKeys.publicKey);
  assert.deepEqual(open(nodeCrypto, inviter, envelopes[MAX_SKIP + 1]!), { ok: false, error: 'too far ahead' });
  let r = openOk(nodeCrypto, inviter, envelopes[0]!, contents[0]!);
  r = openOk(nodeCrypto, r, envelopes[5]!, contents[5]!);
  // recvN is 6 now: 6 + MAX_SKIP is the farthest allowed.
  assert.deepEqual(open(nodeCrypto, r, envelopes[6 + MAX_SKIP + 1]!), { ok: false, error: 'too far ahead' });
  r = openOk(nodeCrypto, r, envelopes[6 + MAX_SKIP]!, contents[6 + MAX_SKIP]!);
  // A far-off number read from a (tampered) header is refused before any key is derived.
  const env = readEnvelope(envelopes[1]!);
  assert.ok(env.ok);
  assert.deepEqual(decrypt(nodeCrypto, r, { ...env.value, n: 0xffff_ffff }), { ok: false, error: 'too far ahead' });
});

test('any flipped bit is rejected and leaves the ratchet passed in unchanged', () => {
  const { acceptorKeys, acceptor, inviter } = contact();
  const { envelopes, contents } = sendMany(crypto, acceptor, 4, acceptorKeys.publicKey);
  // The receiver has message 2: 0 and 1 are skipped keys, 3 is ahead.
  const r = openOk(crypto, inviter, envelopes[2]!, contents[2]!);
  const snapshot = structuredClone(r);
  // envelope 0 is a first message (header 39 bytes, counter at 35..38), envelope 3 a next one (header 6, counter at 2..5).
  const targets = [
    { n: 0, counter: [35, 39] },
    { n: 3, counter: [2, 6] },
  ];
  const check = (target: number, pos: number, bit: number) => {
    const { n, counter } = targets[target]!;
    const tampered = envelopes[n]!.slice();
    tampered[pos]! ^= 1 << bit;
    const env = readEnvelope(tampered);
    if (env.ok) {
      const d = decrypt(crypto, r, env.value);
      assert.equal(d.ok, false, `bit ${bit} of byte ${pos} of message ${n}`);
      // A changed counter may name a used or far number; elsewhere it is an authentication failure.
      const inCounter = pos >= counter[0]! && pos < counter[1]!;
      assert.ok(inCounter ? ['bad message', 'duplicate', 'too far ahead'].includes(d.error) : d.error === 'bad message', d.error);
    }
    assert.deepStrictEqual(r, snapshot);
  };
  // Every bit of both headers and of the tags, then random positions anywhere.
  for (const [t, hlen] of [[0, 39], [1, 6]] as const)
    for (const pos of [...Array(hlen).keys(), ...Array.from({ length: 16 }, (_, k) => E2E_BODY_SIZE - 16 + k)])
      for (let bit = 0; bit < 8; bit++) check(t, pos, bit);
  fc.assert(
    fc.property(fc.nat(1), fc.nat(E2E_BODY_SIZE - 1), fc.nat(7), check),
    { numRuns: 500 },
  );
  // The genuine messages still open with the ratchet the attempts were made on.
  const r0 = openOk(crypto, r, envelopes[0]!, contents[0]!);
  openOk(crypto, r0, envelopes[3]!, contents[3]!);
  openOk(crypto, r, envelopes[3]!, contents[3]!);
});

test("another contact's message, or one's own reflected back, is a bad message", () => {
  const a = contact();
  const b = contact();
  const fromA = encrypt(crypto, a.acceptor, new Uint8Array([1, 2, 3]), a.acceptorKeys.publicKey).envelope;
  assert.deepEqual(open(crypto, b.inviter, fromA), { ok: false, error: 'bad message' });
  // Same inviter key, another acceptor: still other keys.
  const c = initRatchet(crypto, 'inviter', a.inviterKeys, b.acceptorKeys.publicKey)!;
  assert.deepEqual(open(crypto, c, fromA), { ok: false, error: 'bad message' });
  assert.deepEqual(open(crypto, a.acceptor, fromA), { ok: false, error: 'bad message' });
  openOk(crypto, a.inviter, fromA, new Uint8Array([1, 2, 3]));
});

test('forward secrecy: the ratchet after message n cannot open it again', () => {
  const { acceptorKeys, acceptor, inviter } = contact();
  const { envelopes, contents } = sendMany(crypto, acceptor, 6, acceptorKeys.publicKey);
  let r = inviter;
  // In order (chain path), then a skipped one (skipped-key path).
  for (const n of [0, 1, 4, 2]) {
    const before = r;
    const after = openOk(crypto, before, envelopes[n]!, contents[n]!);
    assert.deepEqual(open(crypto, after, envelopes[n]!), { ok: false, error: 'duplicate' });
    assert.ok(!(String(n) in after.skipped));
    if (n >= before.recvN) {
      assert.notEqual(hex(after.recvChain), hex(before.recvChain));
      // Even told to expect n again, the stored chain has moved past its key.
      const env = readEnvelope(envelopes[n]!);
      assert.ok(env.ok);
      assert.deepEqual(decrypt(crypto, { ...after, recvN: n, skipped: {} }, env.value), { ok: false, error: 'bad message' });
    }
    // The old chain key is kept nowhere.
    const stored = [after.sendChain, after.recvChain, ...Object.values(after.skipped)].map(hex);
    if (n >= before.recvN) assert.ok(!stored.includes(hex(before.recvChain)));
    r = after;
  }
  assert.deepEqual(Object.keys(r.skipped), ['3']);
  // The sender side moves on too.
  const e = encrypt(crypto, acceptor, new Uint8Array(0));
  assert.notEqual(hex(e.ratchet.sendChain), hex(acceptor.sendChain));
  assert.equal(e.ratchet.sendN, acceptor.sendN + 1);
});

test('the skipped-key store never exceeds MAX_SKIP; recent gaps stay openable', () => {
  const op = fc.oneof(
    fc.record({ ahead: fc.nat(MAX_SKIP) }),
    fc.record({ late: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 10 }), (ops) => {
      const { acceptor, inviter } = contact(nodeCrypto);
      let sender = acceptor;
      const envelopes: Uint8Array[] = [];
      const envelope = (n: number) => {
        while (envelopes.length <= n) {
          const e = encrypt(nodeCrypto, sender, new Uint8Array([envelopes.length & 0xff]));
          envelopes.push(e.envelope);
          sender = e.ratchet;
        }
        return envelopes[n]!;
      };
      let r = inviter;
      const delivered = new Set<number>();
      for (const o of ops) {
        const missing = [...Array(r.recvN).keys()].filter((m) => !delivered.has(m));
        const n = 'ahead' in o ? r.recvN + o.ahead : missing[o.late % Math.max(1, missing.length)];
        if (n === undefined) continue;
        const d = open(nodeCrypto, r, envelope(n));
        if (n < r.recvN && !(String(n) in r.skipped)) {
          assert.deepEqual(d, { ok: false, error: 'duplicate' });
          continue;
        }
        assert.ok(d.ok, d.ok ? '' : d.error);
        delivered.add(n);
        r = d.ratchet;
        const keys = Object.keys(r.skipped).map(Number);
        assert.ok(keys.length <= MAX_SKIP, `${keys.length} skipped keys`);
        for (const k of keys) assert.ok(k < r.recvN && !delivered.has(k));
        // Every missing message of the last MAX_SKIP numbers is still openable.
        for (let m = Math.max(0, r.recvN - MAX_SKIP); m < r.recvN; m++) assert.ok(delivered.has(m) || String(m) in r.skipped, `key ${m} lost`);
      }
    }),
    { numRuns: 25 },
  );
});

test('noble and node suites interoperate', () => {
  for (const [a, b] of [
    [nobleCrypto, nodeCrypto],
    [nodeCrypto, nobleCrypto],
  ] as const) {
    const inviterKeys = a.x25519KeyPair();
    const acceptorKeys = b.x25519KeyPair();
    let acceptor = initRatchet(b, 'acceptor', acceptorKeys, inviterKeys.publicKey)!;
    let inviter = initRatchet(a, 'inviter', inviterKeys, acceptorKeys.publicKey)!;
    // Both suites derive the same ratchets.
    assert.deepStrictEqual(initRatchet(a, 'acceptor', acceptorKeys, inviterKeys.publicKey), acceptor);
    assert.deepStrictEqual(initRatchet(b, 'inviter', inviterKeys, acceptorKeys.publicKey), inviter);
    for (let k = 0; k < 10; k++) {
      const content = a.randomBytes(k * 97);
      const up = encrypt(b, acceptor, content, k === 0 ? acceptorKeys.publicKey : undefined);
      assert.equal(hex(up.envelope), hex(encrypt(a, acceptor, content, k === 0 ? acceptorKeys.publicKey : undefined).envelope));
      acceptor = up.ratchet;
      inviter = openOk(a, inviter, up.envelope, content);
      const down = encrypt(a, inviter, content);
      inviter = down.ratchet;
      acceptor = openOk(b, acceptor, down.envelope, content);
    }
  }
});

test('initRatchet refuses an all-zero or low-order peer key', () => {
  // also with the (ignored) top bit set
  const lowOrder = SMALL_ORDER_KEYS.flatMap((k) => [k, Uint8Array.from(k, (b, i) => (i === 31 ? b | 0x80 : b))]);
  for (const c of [nobleCrypto, nodeCrypto]) {
    const mine = c.x25519KeyPair();
    for (const role of ['inviter', 'acceptor'] as const) {
      for (const k of lowOrder) assert.equal(initRatchet(c, role, mine, k), undefined, hex(k));
      for (const n of [0, 31, 33]) assert.equal(initRatchet(c, role, mine, new Uint8Array(n).fill(9)), undefined);
      assert.ok(initRatchet(c, role, mine, c.x25519KeyPair().publicKey));
    }
  }
});
