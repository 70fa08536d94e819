// How a push service's answer becomes a PushResult: the rules every provider
// shares, around each provider's own table of the answers it knows.
//   the table's result       that result
//   else 429, 5xx            retry with the table's reason, after the answer's retry-after
//   else                     failed with the table's reason
//   no answer (lost)         retry: it may have got through
//   never sent               failed
import type { IncomingHttpHeaders } from 'node:http';
import type { DeviceToken, Provider } from './device.ts';
import type { Http2Outcome } from './http2/pool.ts';
import type { PushResult } from './provider.ts';

/** A push service's answer. */
export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An answer through an Http2Pool (which knows its connection). */
export type Http2Answer = Extract<Http2Outcome, { status: number }>;

/** A provider's own reading of an answer: the result of one it knows, else the reason the shared rules retry or fail with. */
export type StatusTable<A extends Answer = Answer> = (answer: A) => PushResult | string;

// Shared, not made per push: nothing changes a result once given.
export const DELIVERED: PushResult = Object.freeze({ outcome: 'delivered' });
export const PROVIDER_CLOSED: PushResult = Object.freeze({ outcome: 'retry', reason: 'provider closed' });

/** A retry result, with the provider's retry-after when it gave one. */
export const retryResult = (reason: string, afterMs?: number): PushResult =>
  afterMs !== undefined ? { outcome: 'retry', reason, afterMs } : { outcome: 'retry', reason };

/** An HTTP retry-after header (delay-seconds or an HTTP date), in ms from now. */
export function retryAfterMs(v: string | string[] | undefined, now: number): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** A retry after the answer's retry-after, if it has one. */
export const retryAfter = (a: Answer, reason: string, now: () => number): PushResult =>
  retryResult(reason, retryAfterMs(a.headers['retry-after'], now()));

/** Why a push is not sent at all, if it is not: the provider is closed, or the token is another provider's. */
export function notSent(closed: boolean, serves: readonly Provider[], device: DeviceToken): PushResult | undefined {
  if (closed) return PROVIDER_CLOSED;
  if (!serves.includes(device.provider)) return { outcome: 'failed', reason: `provider ${device.provider} not served` };
  return undefined;
}

/** The result of an answer: the table's, else by the shared rules. */
export function answerResult<A extends Answer>(a: A, table: StatusTable<A>, now: () => number): PushResult {
  const r = table(a);
  if (typeof r !== 'string') return r;
  return a.status === 429 || a.status >= 500 ? retryAfter(a, r, now) : { outcome: 'failed', reason: r };
}

/** The pool closing is its provider closing. */
const asPool = (why: string): string => (why === 'closed' ? 'provider closed' : why);

/**
 * The result of an Http2Pool's outcome: lost is retry, never sent is failed
 * (both with the pool's reason, as `name` puts it), an answer as answerResult.
 */
export function http2Result(r: Http2Outcome, table: StatusTable<Http2Answer>, now: () => number, name = asPool): PushResult {
  if ('lost' in r) return retryResult(name(r.lost));
  if ('failed' in r) return { outcome: 'failed', reason: name(r.failed) };
  return answerResult(r, table, now);
}
