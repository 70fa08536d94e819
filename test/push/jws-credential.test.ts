// The shared JWS signer/verifier and the cached credential behind the APNs
// provider token, VAPID JWTs and the FCM access token.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { Credential, type Issued } from '../../src/push/credential.ts';
import { decodeJws, signJws, verifyJws, type DecodedJws } from '../../src/push/jws.ts';
import { testClock } from './helpers.ts';

const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const ec2 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

const decoded = (t: string): DecodedJws => {
  const d = decodeJws(t);
  assert.ok(!('error' in d), JSON.stringify(d));
  return d;
};

describe('JWS', () => {
  it('ES256 and RS256 round-trip; ES256 signatures are raw r ‖ s', () => {
    const es = decoded(signJws({ alg: 'ES256', kid: 'K' }, { iss: 'T', iat: 1 }, ec.privateKey));
    assert.deepEqual(es.header, { alg: 'ES256', kid: 'K' });
    assert.deepEqual(es.claims, { iss: 'T', iat: 1 });
    assert.equal(es.signature.length, 64);
    assert.ok(verifyJws(es, 'ES256', ec.publicKey));
    assert.ok(!verifyJws(es, 'ES256', ec2.publicKey), 'another key');
    const rs = decoded(signJws({ alg: 'RS256', typ: 'JWT' }, { aud: 'x' }, rsa.privateKey));
    assert.equal(rs.signature.length, 256);
    assert.ok(verifyJws(rs, 'RS256', rsa.publicKey));
  });

  it('refuses a tampered token, another alg than asked, and a key of the wrong type', () => {
    const t = signJws({ alg: 'ES256' }, { sub: 'a' }, ec.privateKey);
    const [h, , s] = t.split('.');
    const forged = decoded(`${h}.${Buffer.from(JSON.stringify({ sub: 'b' })).toString('base64url')}.${s}`);
    assert.ok(!verifyJws(forged, 'ES256', ec.publicKey));
    const es = decoded(t);
    assert.ok(!verifyJws(es, 'RS256', rsa.publicKey), 'header says ES256');
    assert.ok(!verifyJws({ ...es, header: { alg: 'RS256' } }, 'RS256', ec.publicKey), 'an EC key never verifies RS256');
    assert.ok(!verifyJws({ ...es, signature: es.signature.subarray(1) }, 'ES256', ec.publicKey), 'not 64 bytes');
    assert.throws(() => signJws({ alg: 'RS256' }, {}, ec.privateKey), TypeError);
    assert.throws(() => signJws({ alg: 'ES256' }, {}, rsa.privateKey), TypeError);
  });

  it('says why a string is not a compact JWS', () => {
    const b = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    assert.deepEqual(decodeJws('a.b'), { error: 'not a JWS compact serialization' });
    assert.deepEqual(decodeJws(`${b({ alg: 'ES256' })}.${b([1])}.AA`), { error: 'header or claims are not JSON objects' });
    assert.deepEqual(decodeJws(`${b({ alg: 'ES256' })}.bm90IGpzb24.AA`), { error: 'header or claims are not JSON objects' });
    assert.deepEqual(decodeJws(`${b({})}.${b({})}.A+/=`), { error: 'signature is not base64url' });
  });
});

describe('Credential', () => {
  const make = (clock: { now(): number }, life = 1000) => {
    let n = 0;
    return (): Issued<string> => {
      const now = clock.now();
      return { value: `v${++n}`, issuedAt: now, renewAt: now + life / 2, expiresAt: now + life };
    };
  };

  it('is reused until due, renewed then or after a clock went back, and invalidated only by its own value', () => {
    const clock = testClock();
    const c = new Credential<string>(clock.now);
    const m = make(clock);
    assert.equal(c.value(m), 'v1');
    clock.offset += 499;
    assert.equal(c.value(m), 'v1');
    clock.offset += 1;
    assert.equal(c.value(m), 'v2', 'due at renewAt');
    assert.equal(c.unexpired()?.value, 'v2');
    clock.offset -= 10;
    assert.equal(c.value(m), 'v3', 'a clock that went back renews');
    c.invalidate('v2');
    assert.equal(c.value(m), 'v3', 'a stale refusal keeps the newer one');
    c.invalidate('v3');
    assert.equal(c.unexpired(), undefined);
    assert.equal(c.value(m), 'v4');
    assert.equal(c.made, 4);
  });

  it('obtain(): one make for concurrent callers; a failure is passed on and not kept', async () => {
    const clock = testClock();
    const c = new Credential<string>(clock.now);
    const m = make(clock);
    let calls = 0;
    let fail = true;
    const asyncMake = async () => {
      calls++;
      await Promise.resolve();
      return fail ? { ok: false as const, why: 'down' } : { ok: true as const, ...m() };
    };
    const failed = await Promise.all([c.obtain(asyncMake), c.obtain(asyncMake)]);
    assert.deepEqual(failed, [{ ok: false, why: 'down' }, { ok: false, why: 'down' }]);
    assert.equal(calls, 1);
    fail = false;
    const got = await Promise.all([c.obtain(asyncMake), c.obtain(asyncMake), c.obtain(asyncMake)]);
    assert.equal(calls, 2);
    assert.ok(got.every((r) => r.ok && r.value === 'v1'));
    assert.equal(c.fresh()?.value, 'v1');
    assert.equal(((await c.obtain(asyncMake)) as Issued<string>).value, 'v1');
    assert.equal(calls, 2, 'fresh: no make');
  });

  it('send(): a refused request is sent once more with a new credential', async () => {
    const clock = testClock();
    const c = new Credential<string>(clock.now);
    const m = make(clock);
    const carried: Array<[string, boolean]> = [];
    const refusing = (times: number) => async (again: boolean) => {
      const used = c.value(m);
      carried.push([used, again]);
      return { answer: carried.length <= times ? 'refused' : 'ok', used };
    };
    const refused = (a: string) => a === 'refused';
    let warned = 0;
    assert.equal(await c.send(refusing(0), refused), 'ok');
    assert.deepEqual(carried, [['v1', false]]);

    carried.length = 0;
    assert.equal(await c.send(refusing(1), refused, () => warned++), 'ok');
    assert.deepEqual(carried, [['v1', false], ['v2', true]]);
    assert.equal(warned, 1);
    assert.equal(c.fresh()?.value, 'v2');

    carried.length = 0;
    assert.equal(await c.send(refusing(5), refused), 'refused', 'refused twice: no third try');
    assert.deepEqual(carried, [['v2', false], ['v3', true]]);
    assert.equal(c.unexpired(), undefined, 'the new one was refused too: dropped');

    // refused before it carried a credential of ours: nothing dropped
    c.value(m);
    assert.equal(await c.send(async () => ({ answer: 'refused' }), refused), 'refused');
    assert.equal(c.fresh()?.value, 'v4');
  });
});
