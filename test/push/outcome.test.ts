// The provider outcome template (src/push/outcome.ts): the rules every
// provider shares around its own status table.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { DeviceToken } from '../../src/push/device.ts';
import { answerResult, DELIVERED, http2Result, notSent, PROVIDER_CLOSED, type Answer, type Http2Answer, type StatusTable } from '../../src/push/outcome.ts';
import type { PushResult } from '../../src/push/provider.ts';
import { webPushAnswer } from '../../src/push/webpush/provider.ts';

const NOW = Date.UTC(2026, 0, 1);
const now = () => NOW;
const answer = (status: number, retryAfter?: string, body = ''): Answer => ({ status, headers: retryAfter === undefined ? {} : { 'retry-after': retryAfter }, body });
/** A table that knows nothing: every answer goes by the shared rules, with its status as reason. */
const bare: StatusTable = (a) => `HTTP ${a.status}`;

describe('provider outcome template', () => {
  it("a table's result stands, whatever the status", () => {
    const known: PushResult = { outcome: 'invalid', reason: 'EXPIRED' };
    const table: StatusTable = () => known;
    for (const status of [200, 410, 429, 503]) assert.equal(answerResult(answer(status), table, now), known);
  });

  it('429 and 5xx retry with the reason, after retry-after (seconds or a date) when given', () => {
    assert.deepEqual(answerResult(answer(429, '120'), bare, now), { outcome: 'retry', reason: 'HTTP 429', afterMs: 120_000 });
    assert.deepEqual(answerResult(answer(503, new Date(NOW + 5000).toUTCString()), bare, now), { outcome: 'retry', reason: 'HTTP 503', afterMs: 5000 });
    // none, or none readable: no afterMs at all
    assert.deepEqual(answerResult(answer(500), bare, now), { outcome: 'retry', reason: 'HTTP 500' });
    assert.deepEqual(answerResult(answer(502, 'soon'), bare, now), { outcome: 'retry', reason: 'HTTP 502' });
  });

  it('any other status a table does not know fails with its reason', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999 }), fc.string(), (status, reason) => {
        const r = answerResult(answer(status, '9'), () => reason, now);
        if (status === 429 || status >= 500) assert.deepEqual(r, { outcome: 'retry', reason, afterMs: 9000 });
        else assert.deepEqual(r, { outcome: 'failed', reason });
      }),
    );
  });

  it('an HTTP/2 request lost is retry, one never sent is failed, both named as the provider says', () => {
    assert.deepEqual(http2Result({ lost: 'timeout' }, bare, now), { outcome: 'retry', reason: 'timeout' });
    assert.deepEqual(http2Result({ lost: 'closed' }, bare, now), PROVIDER_CLOSED);
    assert.deepEqual(http2Result({ failed: 'connect: bad CA' }, bare, now), { outcome: 'failed', reason: 'connect: bad CA' });
    const named = (why: string) => `gateway: ${why}`;
    assert.deepEqual(http2Result({ lost: 'closed' }, bare, now, named), { outcome: 'retry', reason: 'gateway: closed' });
    assert.deepEqual(http2Result({ failed: 'connect: x' }, bare, now, named), { outcome: 'failed', reason: 'gateway: connect: x' });
  });

  it('an HTTP/2 answer goes to the table with its connection', () => {
    const seen: number[] = [];
    const table: StatusTable<Http2Answer> = (a) => (seen.push(a.connection), a.status === 200 ? DELIVERED : 'no');
    assert.equal(http2Result({ status: 200, headers: {}, body: '', connection: 3 }, table, now), DELIVERED);
    assert.deepEqual(http2Result({ status: 503, headers: { 'retry-after': '1' }, body: '', connection: 4 }, table, now), { outcome: 'retry', reason: 'no', afterMs: 1000 });
    assert.deepEqual(seen, [3, 4]);
  });

  it('a push is not sent by a closed provider, nor for a token of a provider it does not serve', () => {
    const device: DeviceToken = { provider: 'fcm', token: new Uint8Array(8) };
    assert.equal(notSent(true, ['fcm'], device), PROVIDER_CLOSED);
    assert.deepEqual(notSent(false, ['apns'], device), { outcome: 'failed', reason: 'provider fcm not served' });
    assert.equal(notSent(false, ['apns', 'fcm'], device), undefined);
  });

  it('shared results cannot be changed by whoever gets them', () => {
    assert.throws(() => Object.assign(DELIVERED, { outcome: 'failed' }), TypeError);
    assert.throws(() => Object.assign(PROVIDER_CLOSED, { afterMs: 1 }), TypeError);
  });

  it("a Web Push service's answers: its own, then the shared rules with the status and the start of its text", () => {
    assert.equal(answerResult(answer(201), webPushAnswer, now), DELIVERED);
    assert.deepEqual(answerResult(answer(404), webPushAnswer, now), { outcome: 'invalid', reason: 'UNREGISTERED' });
    assert.deepEqual(answerResult(answer(301), webPushAnswer, now), { outcome: 'failed', reason: 'HTTP 301 redirect not followed' });
    assert.deepEqual(answerResult(answer(429, '2', ' slow down \n'), webPushAnswer, now), { outcome: 'retry', reason: 'HTTP 429: slow down', afterMs: 2000 });
    assert.deepEqual(answerResult(answer(400, undefined, 'x'.repeat(300)), webPushAnswer, now), { outcome: 'failed', reason: `HTTP 400: ${'x'.repeat(200)}` });
    assert.deepEqual(answerResult(answer(403, undefined, '  '), webPushAnswer, now), { outcome: 'failed', reason: 'HTTP 403' });
  });
});
