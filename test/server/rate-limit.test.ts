import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from '../../src/server/rate-limit.ts';

test('a key spends its burst, then regains perMinute a minute; keys are independent', () => {
  let t = 0;
  const r = new RateLimiter({ perMinute: 6, burst: 3 }, () => t);
  assert.deepEqual([r.take('a'), r.take('a'), r.take('a'), r.take('a')], [true, true, true, false]);
  assert.equal(r.take('b'), true);
  t += 9_999;
  assert.equal(r.take('a'), false, 'not a whole token yet');
  t += 1;
  assert.equal(r.take('a'), true);
  assert.equal(r.take('a'), false);
  t += 3_600_000;
  assert.deepEqual([r.take('a'), r.take('a'), r.take('a'), r.take('a')], [true, true, true, false], 'refill stops at the burst');
});

test('the key map stays bounded: full buckets go first, then the oldest', () => {
  let t = 0;
  const r = new RateLimiter({ perMinute: 1, burst: 1 }, () => t, 3);
  for (const k of ['a', 'b', 'c']) assert.equal(r.take(k), true);
  assert.equal(r.take('d'), true);
  assert.equal(r.size, 3);
  assert.equal(r.take('b'), false, 'b still spent (a, the oldest, was dropped)');
  t += 60_000; // all full again
  r.take('e');
  assert.equal(r.size, 1);
});
