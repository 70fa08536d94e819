// The two CryptoSuites must agree bit for bit: clients run @noble, servers
// node:crypto, and every key, signature and sealed block crosses between them.
// Known-answer vectors pin both to the RFCs, not merely to each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nobleCrypto } from '../../src/core/crypto/noble.ts';
import { nodeCrypto } from '../../src/node/crypto.ts';
import type { CryptoSuite } from '../../src/core/crypto/suite.ts';
import { isValidPublicKey, sharedKey, SMALL_ORDER_KEYS, type KeyOptions, type KeyUse } from '../../src/core/keys.ts';
import { hkdfSync as nodeHkdf } from 'node:crypto';

const hex = (b: Uint8Array | undefined) => (b === undefined ? 'undefined' : Buffer.from(b).toString('hex'));
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/[\s:]/g, ''), 'hex'));
const utf8 = (s: string) => new TextEncoder().encode(s);
const range = (n: number, start = 0) => Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

const SUITES: Array<[string, CryptoSuite]> = [
  ['node', nodeCrypto],
  ['noble', nobleCrypto],
];
const PAIRS: Array<[string, CryptoSuite, CryptoSuite]> = [
  ['node→noble', nodeCrypto, nobleCrypto],
  ['noble→node', nobleCrypto, nodeCrypto],
];

test('randomBytes: requested length, not constant', () => {
  for (const [name, c] of SUITES) {
    for (const n of [0, 1, 12, 32, 100]) assert.equal(c.randomBytes(n).length, n, name);
    assert.notEqual(hex(c.randomBytes(32)), hex(c.randomBytes(32)), name);
  }
});

test('sha256: known answers (FIPS 180-2) in both suites', () => {
  const cases: Array<[Uint8Array, string]> = [
    [new Uint8Array(0), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    [utf8('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
  ];
  for (const [name, c] of SUITES) for (const [m, d] of cases) assert.equal(hex(c.sha256(m)), d, name);
  const big = nodeCrypto.randomBytes(100_000);
  assert.equal(hex(nobleCrypto.sha256(big)), hex(nodeCrypto.sha256(big)));
});

// RFC 4231 section 4, HMAC-SHA-256 outputs.
const HMAC_VECTORS: Array<{ name: string; key: Uint8Array; data: Uint8Array; mac: string; truncate?: number }> = [
  {
    name: 'case 1',
    key: fill(20, 0x0b),
    data: utf8('Hi There'),
    mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  },
  {
    name: 'case 2',
    key: utf8('Jefe'),
    data: utf8('what do ya want for nothing?'),
    mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
  },
  {
    name: 'case 3',
    key: fill(20, 0xaa),
    data: fill(50, 0xdd),
    mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
  },
  {
    name: 'case 4',
    key: range(25, 1),
    data: fill(50, 0xcd),
    mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
  },
  {
    name: 'case 5 (truncated to 128 bits)',
    key: fill(20, 0x0c),
    data: utf8('Test With Truncation'),
    mac: 'a3b6167473100ee06e0c796c2955552b',
    truncate: 16,
  },
  {
    name: 'case 6',
    key: fill(131, 0xaa),
    data: utf8('Test Using Larger Than Block-Size Key - Hash Key First'),
    mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  },
  {
    name: 'case 7',
    key: fill(131, 0xaa),
    data: utf8(
      'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
    ),
    mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
  },
];

test('hmacSha256: RFC 4231 test vectors in both suites', () => {
  for (const [name, c] of SUITES) {
    for (const v of HMAC_VECTORS) {
      const mac = c.hmacSha256(v.key, v.data);
      assert.equal(mac.length, 32);
      assert.equal(hex(v.truncate ? mac.subarray(0, v.truncate) : mac), v.mac, `${name} ${v.name}`);
    }
  }
});

test('hmacSha256: the suites agree on random keys and data', () => {
  for (let i = 0; i < 50; i++) {
    const key = nodeCrypto.randomBytes(i * 3);
    const data = nodeCrypto.randomBytes(i * 37);
    assert.equal(hex(nobleCrypto.hmacSha256(key, data)), hex(nodeCrypto.hmacSha256(key, data)));
  }
});

// RFC 5869 appendix A, the SHA-256 cases.
const HKDF_VECTORS: Array<{ name: string; ikm: Uint8Array; salt: Uint8Array; info: Uint8Array; length: number; okm: string }> = [
  {
    name: 'A.1 basic',
    ikm: fill(22, 0x0b),
    salt: range(13),
    info: range(10, 0xf0),
    length: 42,
    okm: '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  },
  {
    name: 'A.2 longer inputs and outputs',
    ikm: range(80),
    salt: range(80, 0x60),
    info: range(80, 0xb0),
    length: 82,
    okm:
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c' +
      '59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71' +
      'cc30c58179ec3e87c14c01d5c1f3434f1d87',
  },
  {
    name: 'A.3 zero-length salt and info',
    ikm: fill(22, 0x0b),
    salt: new Uint8Array(0),
    info: new Uint8Array(0),
    length: 42,
    okm: '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
  },
];

test('hkdfSha256: RFC 5869 test vectors in both suites', () => {
  for (const [name, c] of SUITES) {
    for (const v of HKDF_VECTORS) assert.equal(hex(c.hkdfSha256(v.ikm, v.salt, v.info, v.length)), v.okm, `${name} ${v.name}`);
  }
});

test('hkdfSha256: the suites agree for the lengths the protocol uses and more', () => {
  for (const length of [1, 32, 64, 255, 1000]) {
    const ikm = nodeCrypto.randomBytes(32);
    const salt = nodeCrypto.randomBytes(32);
    const info = utf8('hush block keys');
    const a = nodeCrypto.hkdfSha256(ikm, salt, info, length);
    assert.equal(a.length, length);
    assert.equal(hex(nobleCrypto.hkdfSha256(ikm, salt, info, length)), hex(a));
  }
});

// RFC 7748 section 6.1.
const ALICE_PRIV = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUB = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIV = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUB = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const ALICE_BOB_SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

test('x25519: RFC 7748 key exchange in both suites', () => {
  const base = new Uint8Array(32);
  base[0] = 9;
  for (const [name, c] of SUITES) {
    assert.equal(hex(c.x25519(ALICE_PRIV, base)), ALICE_PUB, name);
    assert.equal(hex(c.x25519(BOB_PRIV, base)), BOB_PUB, name);
    const ab = c.x25519(ALICE_PRIV, fromHex(BOB_PUB));
    const ba = c.x25519(BOB_PRIV, fromHex(ALICE_PUB));
    assert.equal(hex(ab), hex(ba), name);
    assert.equal(hex(ab), ALICE_BOB_SHARED, name);
  }
});

test('x25519: key pairs from either suite agree in both directions', () => {
  for (let i = 0; i < 20; i++) {
    for (const [name, a, b] of PAIRS) {
      const ka = a.x25519KeyPair();
      const kb = b.x25519KeyPair();
      assert.equal(ka.publicKey.length, 32, name);
      assert.equal(ka.privateKey.length, 32, name);
      const s1 = a.x25519(ka.privateKey, kb.publicKey);
      const s2 = b.x25519(kb.privateKey, ka.publicKey);
      // Each suite computes with the other's keys, and both with the same keys.
      const s3 = b.x25519(ka.privateKey, kb.publicKey);
      const s4 = a.x25519(kb.privateKey, ka.publicKey);
      assert.ok(s1 && s1.length === 32, name);
      assert.equal(hex(s2), hex(s1), name);
      assert.equal(hex(s3), hex(s1), name);
      assert.equal(hex(s4), hex(s1), name);
    }
  }
});

test('x25519: the public key of a private key is the same in both suites', () => {
  // X25519(priv, basepoint 9) is the public key.
  const base = new Uint8Array(32);
  base[0] = 9;
  for (const [name, a, b] of PAIRS) {
    const k = a.x25519KeyPair();
    assert.equal(hex(b.x25519(k.privateKey, base)), hex(k.publicKey), name);
    assert.equal(hex(a.x25519(k.privateKey, base)), hex(k.publicKey), name);
  }
});

// Points of small order (and non-canonical spellings of them): the shared secret is all zero.
const LOW_ORDER = SMALL_ORDER_KEYS.map(hex);

test('x25519: low-order points give undefined in both suites', () => {
  for (const [name, c] of SUITES) {
    const k = c.x25519KeyPair();
    for (const p of LOW_ORDER) assert.equal(c.x25519(k.privateKey, fromHex(p)), undefined, `${name} ${p}`);
  }
});

test('x25519: wrong key lengths give undefined, not an exception', () => {
  for (const [name, c] of SUITES) {
    const k = c.x25519KeyPair();
    const other = c.x25519KeyPair();
    assert.equal(c.x25519(k.privateKey, other.publicKey.subarray(0, 31)), undefined, name);
    assert.equal(c.x25519(k.privateKey, new Uint8Array(33)), undefined, name);
    assert.equal(c.x25519(k.privateKey, new Uint8Array(0)), undefined, name);
    assert.equal(c.x25519(k.privateKey.subarray(0, 16), other.publicKey), undefined, name);
  }
});

test('ed25519: signatures from either suite verify in both, and are identical (deterministic)', () => {
  for (const [name, a, b] of PAIRS) {
    const k = a.ed25519KeyPair();
    assert.equal(k.publicKey.length, 32);
    assert.equal(k.privateKey.length, 32);
    for (const len of [0, 1, 64, 1000]) {
      const data = a.randomBytes(len);
      const sa = a.ed25519Sign(k.privateKey, data);
      const sb = b.ed25519Sign(k.privateKey, data);
      assert.equal(sa.length, 64, name);
      assert.equal(hex(sb), hex(sa), `${name}: RFC 8032 signatures are deterministic`);
      assert.equal(b.ed25519Verify(k.publicKey, sa, data), true, name);
      assert.equal(a.ed25519Verify(k.publicKey, sa, data), true, name);
    }
  }
});

test('ed25519: RFC 8032 test 2 in both suites', () => {
  const priv = fromHex('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb');
  const pub = '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c';
  const msg = Uint8Array.of(0x72);
  const sig =
    '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da' +
    '085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00';
  for (const [name, c] of SUITES) {
    assert.equal(hex(c.ed25519Sign(priv, msg)), sig, name);
    assert.equal(c.ed25519Verify(fromHex(pub), fromHex(sig), msg), true, name);
  }
});

test('ed25519: tampered data, signature or key fail in both suites, without throwing', () => {
  const k = nodeCrypto.ed25519KeyPair();
  const data = nodeCrypto.randomBytes(100);
  const sig = nodeCrypto.ed25519Sign(k.privateKey, data);
  const other = nodeCrypto.ed25519KeyPair().publicKey;
  for (const [name, c] of SUITES) {
    const badData = data.slice();
    badData[50]! ^= 1;
    assert.equal(c.ed25519Verify(k.publicKey, sig, badData), false, name);
    for (const i of [0, 31, 32, 63]) {
      const badSig = sig.slice();
      badSig[i]! ^= 0x10;
      assert.equal(c.ed25519Verify(k.publicKey, badSig, data), false, `${name} sig byte ${i}`);
    }
    assert.equal(c.ed25519Verify(other, sig, data), false, name);
    // Malformed inputs are a plain "no".
    assert.equal(c.ed25519Verify(k.publicKey, sig.subarray(0, 63), data), false, name);
    assert.equal(c.ed25519Verify(k.publicKey, new Uint8Array(0), data), false, name);
    assert.equal(c.ed25519Verify(k.publicKey.subarray(0, 31), sig, data), false, name);
    assert.equal(c.ed25519Verify(new Uint8Array(32).fill(0xff), sig, data), false, name);
    assert.equal(c.ed25519Verify(k.publicKey, new Uint8Array(64).fill(0xff), data), false, name);
  }
});

test('chacha20-poly1305: sealed by one suite, opened by the other, with and without AAD', () => {
  for (const [name, a, b] of PAIRS) {
    for (const len of [0, 1, 15, 16, 17, 64, 1000, 16368]) {
      const key = a.randomBytes(32);
      const nonce = a.randomBytes(12);
      const plain = a.randomBytes(len);
      const aad = a.randomBytes(len % 40);
      const sealed = a.seal(key, nonce, plain);
      assert.equal(sealed.length, len + 16, name);
      assert.equal(hex(b.seal(key, nonce, plain)), hex(sealed), `${name}: same ciphertext`);
      assert.equal(hex(b.open(key, nonce, sealed)), hex(plain), name);
      const withAad = a.seal(key, nonce, plain, aad);
      assert.equal(hex(b.seal(key, nonce, plain, aad)), hex(withAad), `${name}: same ciphertext with AAD`);
      assert.equal(hex(b.open(key, nonce, withAad, aad)), hex(plain), name);
      if (aad.length > 0) {
        // The AAD is authenticated: missing or different AAD fails.
        assert.equal(b.open(key, nonce, withAad), undefined, name);
        assert.equal(a.open(key, nonce, sealed, aad), undefined, name);
      }
    }
  }
});

test('chacha20-poly1305: any tampering gives undefined in both suites', () => {
  const key = nodeCrypto.randomBytes(32);
  const nonce = nodeCrypto.randomBytes(12);
  const plain = nodeCrypto.randomBytes(100);
  const aad = nodeCrypto.randomBytes(20);
  const sealed = nodeCrypto.seal(key, nonce, plain, aad);
  for (const [name, c] of SUITES) {
    assert.equal(hex(c.open(key, nonce, sealed, aad)), hex(plain), name);
    for (const i of [0, 50, 99, 100, 115]) {
      const bad = sealed.slice();
      bad[i]! ^= 0x01;
      assert.equal(c.open(key, nonce, bad, aad), undefined, `${name} byte ${i}`);
    }
    const badAad = aad.slice();
    badAad[0]! ^= 0x80;
    assert.equal(c.open(key, nonce, sealed, badAad), undefined, name);
    const badKey = key.slice();
    badKey[31]! ^= 1;
    assert.equal(c.open(badKey, nonce, sealed, aad), undefined, name);
    const badNonce = nonce.slice();
    badNonce[11]! ^= 1;
    assert.equal(c.open(key, badNonce, sealed, aad), undefined, name);
    assert.equal(c.open(key, nonce, sealed.subarray(0, sealed.length - 1), aad), undefined, name);
    assert.equal(c.open(key, nonce, sealed.subarray(1), aad), undefined, name);
    assert.equal(c.open(key, nonce, sealed.subarray(0, 15)), undefined, `${name}: shorter than a tag`);
    assert.equal(c.open(key, nonce, new Uint8Array(0)), undefined, `${name}: empty`);
  }
});

// RFC 8439 section 2.8.2, "Example and Test Vector for AEAD_CHACHA20_POLY1305".
const AEAD = {
  key: range(32, 0x80),
  nonce: fromHex('07000000 4041424344454647'),
  aad: fromHex('50515253c0c1c2c3c4c5c6c7'),
  plain: utf8(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ),
  cipher: fromHex(`
    d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2
    a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
    3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b
    1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
    92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58
    fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
    3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b
    61 16`),
  tag: fromHex('1a:e1:0b:59:4f:09:e2:6a:7e:90:2e:cb:d0:60:06:91'),
};

test('chacha20-poly1305: RFC 8439 2.8.2 AEAD test vector in both suites', () => {
  assert.equal(AEAD.plain.length, 114);
  assert.equal(AEAD.cipher.length, 114);
  const expected = hex(AEAD.cipher) + hex(AEAD.tag);
  for (const [name, c] of SUITES) {
    assert.equal(hex(c.seal(AEAD.key, AEAD.nonce, AEAD.plain, AEAD.aad)), expected, name);
    const sealed = new Uint8Array([...AEAD.cipher, ...AEAD.tag]);
    assert.equal(hex(c.open(AEAD.key, AEAD.nonce, sealed, AEAD.aad)), hex(AEAD.plain), name);
    // Without the AAD the tag no longer verifies.
    assert.equal(c.open(AEAD.key, AEAD.nonce, sealed), undefined, name);
  }
});

test('suites do not mutate their inputs', () => {
  for (const [name, c] of SUITES) {
    const key = c.randomBytes(32);
    const nonce = c.randomBytes(12);
    const plain = c.randomBytes(40);
    const copies = [key, nonce, plain].map((b) => hex(b));
    const sealed = c.seal(key, nonce, plain);
    const sealedCopy = hex(sealed);
    c.open(key, nonce, sealed);
    assert.deepEqual([key, nonce, plain].map((b) => hex(b)), copies, name);
    assert.equal(hex(sealed), sealedCopy, name);
  }
});

// ---- core/keys.ts: public-key checks and the key schedule, on both suites ----

test('isValidPublicKey: refuses every small-order point, with the ignored top bit either way; accepts real keys', () => {
  for (const p of LOW_ORDER) {
    const k = fromHex(p);
    assert.equal(isValidPublicKey(k), false, p);
    k[31]! ^= 0x80;
    assert.equal(isValidPublicKey(k), false, `${p} with the top bit flipped`);
  }
  assert.equal(isValidPublicKey(new Uint8Array(31)), false, 'short');
  const base = new Uint8Array(32);
  base[0] = 9;
  assert.equal(isValidPublicKey(base), true, 'the base point');
  assert.equal(isValidPublicKey(fromHex(ALICE_PUB)), true);
  for (const [name, c] of SUITES)
    for (let i = 0; i < 50; i++) {
      const k = c.x25519KeyPair();
      assert.equal(isValidPublicKey(k.publicKey), true, name);
      // A key the check lets through always gives a secret in both suites.
      for (const [, d] of SUITES) assert.ok(d.x25519(c.x25519KeyPair().privateKey, k.publicKey), name);
    }
});

test('sharedKey: HKDF-SHA256 of the X25519 secret, info "hush/<version> <use>" ‖ context (RFC 7748 keys)', () => {
  const hkdf = (ikm: string, salt: Uint8Array, info: string | Uint8Array, n: number) =>
    hex(new Uint8Array(nodeHkdf('sha256', fromHex(ikm), salt, typeof info === 'string' ? utf8(info) : info, n)));
  const salt = range(32);
  const context = range(64, 100);
  for (const [name, c] of SUITES) {
    const k = (use: KeyUse, o?: KeyOptions) => hex(sharedKey(c, ALICE_PRIV, fromHex(BOB_PUB), use, o));
    assert.equal(k('relay recipient'), hkdf(ALICE_BOB_SHARED, new Uint8Array(0), 'hush/2 relay recipient', 32), name);
    assert.equal(k('auth', { version: 7 }), hkdf(ALICE_BOB_SHARED, new Uint8Array(0), 'hush/7 auth', 32), name);
    assert.equal(k('block keys', { version: 2, salt, length: 64 }), hkdf(ALICE_BOB_SHARED, salt, 'hush/2 block keys', 64), name);
    assert.equal(k('e2e', { context, length: 64 }), hkdf(ALICE_BOB_SHARED, new Uint8Array(0), new Uint8Array([...utf8('hush/2 e2e'), ...context]), 64), name);
    // Bob's side gives the same key; another use or version another one.
    assert.equal(hex(sharedKey(c, BOB_PRIV, fromHex(ALICE_PUB), 'relay recipient')), k('relay recipient'), name);
    assert.notEqual(k('relay notifier'), k('relay recipient'), name);
    assert.notEqual(k('auth', { version: 3 }), k('auth'), name);
    for (const p of LOW_ORDER) assert.equal(sharedKey(c, ALICE_PRIV, fromHex(p), 'auth'), undefined, `${name} ${p}`);
  }
});

test('sharedKey: node and noble derive the same keys from each other\'s key pairs, for every use', () => {
  const uses: KeyUse[] = ['block keys', 'auth', 'relay recipient', 'relay notifier', 'ntf token', 'sealed token', 'e2e'];
  for (const [name, a, b] of PAIRS) {
    const ka = a.x25519KeyPair();
    const kb = b.x25519KeyPair();
    for (const use of uses) {
      const o = { salt: a.randomBytes(32), length: 64 };
      const s1 = sharedKey(a, ka.privateKey, kb.publicKey, use, o);
      assert.ok(s1 && s1.length === 64, `${name} ${use}`);
      assert.equal(hex(sharedKey(b, kb.privateKey, ka.publicKey, use, o)), hex(s1), `${name} ${use}`);
      assert.equal(hex(sharedKey(b, ka.privateKey, kb.publicKey, use, o)), hex(s1), `${name} ${use}`);
    }
  }
});

test('node seal: a short sealed value owns its bytes (not a view into a shared pool a kept one would pin)', () => {
  const sealed = nodeCrypto.seal(new Uint8Array(32), new Uint8Array(12), new Uint8Array(36));
  assert.equal(sealed.length, 52);
  assert.equal(sealed.byteOffset, 0);
  assert.equal(sealed.buffer.byteLength, 52);
  assert.deepEqual(nodeCrypto.open(new Uint8Array(32), new Uint8Array(12), sealed), new Uint8Array(36));
});
