// Push dispatch: one queue per push provider, so a failing provider cannot
// starve the others. A token has at most one queued job per kind, and a
// message push is built when a worker takes it — from the newest last
// notifications of the token at that moment — so NMSGs that arrive while a
// push waits (back-pressure, retries, a slow provider) coalesce into it.
// A full queue parks tokens in an overflow set that refills it as it drains:
// memory stays bounded by the number of tokens and no push is lost.
//
// Pending notifications (store: kept, no accepted push has carried them yet)
// survive a restart: a message push carries its pending entries, and only once
// the provider accepts it are they marked pushed. At start every token with
// pending ones gets a push; a sweep queues one again for tokens whose oldest
// has waited longer than `pendingRetryMs` (a push that failed for good).
import type { Logger } from 'pino';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import type { PushProvider, PushResult } from '../push/provider.ts';
import type { NtfMetrics } from './metrics.ts';
import { equalBytes, latin1Bytes } from '../core/encoding.ts';
import type { DeviceToken, Provider, PushKind } from '../push/device.ts';
import { MAX_PUSH_ENTRIES, sealPush, type PushContent } from './payload.ts';
import type { NtfStore, SentNotification, TokenRecord } from './store/store.ts';
import type { Timers } from './timers.ts';

export interface DispatchOptions {
  /** Jobs queued per provider before tokens wait in the overflow set. */
  queueLimit: number;
  /** Pushes in flight per provider. */
  concurrency: number;
  /** Attempts per push before it is dropped as failed. */
  maxAttempts: number;
  /** First retry delay; doubled each attempt, with jitter, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** A token whose oldest pending notification waited this long, with no push queued or in flight, gets another. */
  pendingRetryMs: number;
}

export const DEFAULT_DISPATCH: DispatchOptions = {
  queueLimit: 10_000,
  concurrency: 256,
  maxAttempts: 6,
  backoffMs: 500,
  maxBackoffMs: 60_000,
  pendingRetryMs: 60_000,
};

interface Job {
  tokenId: string;
  kind: PushKind;
  attempt: number;
  /** performance.now() when queued: for a message push, when the first NMSG it carries arrived. */
  queuedAt: number;
}

/** The pushes waiting for one provider. */
class ProviderQueue {
  readonly jobs: Job[] = [];
  /** tokenId + kind of every job queued, overflowing, in flight or waiting to retry. */
  readonly queued = new Set<string>();
  readonly overflow: Job[] = [];
  inFlight = 0;
  /** Message pushes in flight, by token (a newer NMSG may start a second). */
  readonly sending = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly provider: PushProvider,
  ) {}

  get length(): number {
    return this.jobs.length + this.overflow.length;
  }
}

const jobKey = (j: { tokenId: string; kind: PushKind }) => `${j.kind}:${j.tokenId}`;

function count(m: Map<string, number>, key: string, by: 1 | -1): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

export class Dispatcher {
  private readonly queues = new Map<Provider, ProviderQueue>();
  /** Retries waiting for their delay. */
  private readonly retries = new Set<unknown>();
  private idleWaiters: Array<() => void> = [];
  private closed = false;
  /** When the next sweep of pending notifications is due (the server's clock). */
  private nextSweepAt = 0;
  readonly opts: DispatchOptions;

  constructor(
    private readonly deps: {
      providers: PushProvider[];
      store: NtfStore;
      crypto: CryptoSuite;
      log: Logger;
      metrics: NtfMetrics;
      now: () => number;
      /** Runs the retry delays. */
      timers: Timers;
      /** The store changed in the background (a push's outcome): to be flushed. */
      changed: () => void;
    },
    opts: Partial<DispatchOptions> = {},
  ) {
    this.opts = { ...DEFAULT_DISPATCH, ...opts };
    for (const p of deps.providers) {
      const q = new ProviderQueue(p.serves.join(','), p);
      for (const name of p.serves) this.queues.set(name, q);
    }
  }

  serves(provider: Provider): boolean {
    return this.queues.has(provider);
  }

  /** Queue lengths by provider, for metrics. */
  queueLengths(): Map<string, number> {
    const m = new Map<string, number>();
    for (const q of new Set(this.queues.values())) m.set(q.name, q.length);
    return m;
  }

  push(token: TokenRecord, kind: PushKind): void {
    const q = this.queues.get(token.device.provider);
    if (!q || this.closed) return;
    const job: Job = { tokenId: token.tokenId, kind, attempt: 0, queuedAt: performance.now() };
    const key = jobKey(job);
    if (q.queued.has(key)) return; // coalesced into the waiting job
    q.queued.add(key);
    if (q.jobs.length < this.opts.queueLimit) q.jobs.push(job);
    else q.overflow.push(job);
    this.pump(q);
  }

  private pump(q: ProviderQueue): void {
    while (q.inFlight < this.opts.concurrency && q.jobs.length > 0) {
      const job = q.jobs.shift()!;
      const refill = q.overflow.shift();
      if (refill) q.jobs.push(refill);
      void this.run(q, job);
    }
    this.checkIdle();
  }

  /**
   * Resolves once no push is queued or in flight (a retry waiting for its
   * delay is neither): what the pushes queued so far were to do is done.
   */
  idle(): Promise<void> {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0) return;
    for (const q of this.queues.values()) if (q.inFlight > 0 || q.length > 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private async run(q: ProviderQueue, job: Job): Promise<void> {
    const { store, metrics } = this.deps;
    const token = store.token(job.tokenId);
    const built = token && this.content(token, job.kind);
    // A TRPL to another provider leaves this job in the old provider's queue: the
    // new device token is not this provider's to push to (a real provider would
    // call it invalid). TRPL queued the verification push with the right provider.
    if (!token || !built || this.queues.get(token.device.provider) !== q) {
      q.queued.delete(jobKey(job));
      return;
    }
    const { content, sent } = built;
    // From here on, a new NMSG queues a new push: this one is already built.
    if (job.kind === 'message') {
      q.queued.delete(jobKey(job));
      count(q.sending, job.tokenId, 1);
    }
    q.inFlight++;
    let result: PushResult;
    const started = performance.now();
    const device = token.device;
    try {
      result = await q.provider.send({ device, kind: job.kind, data: sealPush(this.deps.crypto, token.tknDhSecret, content) });
    } catch (e) {
      // Only the error's class: its text may carry the device token (a Web Push
      // endpoint URL, an APNs request path), and the reason ends up in the logs.
      result = { outcome: 'retry', reason: `provider threw ${e instanceof Error ? e.name : typeof e}` };
    }
    q.inFlight--;
    if (job.kind === 'message') count(q.sending, job.tokenId, -1);
    metrics.pushSeconds.observe({ provider: q.name }, (performance.now() - started) / 1000);
    const outcome = result.outcome;
    if (outcome === 'retry' && job.attempt + 1 < this.opts.maxAttempts && !this.closed) {
      metrics.pushRetries.inc({ provider: q.name });
      if (job.kind === 'message') q.queued.add(jobKey(job));
      this.retryLater(q, { ...job, attempt: job.attempt + 1 }, result.afterMs);
    } else {
      if (job.kind !== 'message') q.queued.delete(jobKey(job));
      this.settle(token.tokenId, job, q.name, result, device, sent);
      this.deps.changed();
    }
    if (!this.closed) this.pump(q);
    else this.checkIdle();
  }

  private settle(tokenId: string, job: Job, provider: string, result: PushResult, device: DeviceToken, sent: SentNotification[]): void {
    const { store, metrics, log, now } = this.deps;
    // The device token may have been replaced (TRPL) while this push was in flight:
    // an answer about the old device token (typically "unregistered": the OS rotated
    // it) must neither invalidate nor confirm the new one.
    const current = store.token(tokenId);
    const token = current && current.device.provider === device.provider && equalBytes(current.device.token, device.token) ? current : undefined;
    switch (result.outcome) {
      case 'delivered':
        metrics.pushes.inc({ provider, kind: job.kind, outcome: 'delivered' });
        if (job.kind === 'message') metrics.notificationDelay.observe({ provider }, (performance.now() - job.queuedAt) / 1000);
        if (job.kind === 'verification' && token?.status.status === 'REGISTERED')
          store.setTokenStatus(tokenId, { status: 'CONFIRMED' }, now());
        if (token) store.markPushed(tokenId, sent);
        return;
      case 'invalid':
        metrics.pushes.inc({ provider, kind: job.kind, outcome: 'invalid' });
        if (token) store.setTokenStatus(tokenId, { status: 'INVALID', reason: result.reason }, now());
        log.info({ event: 'token_invalid', provider, reason: result.reason });
        return;
      default:
        metrics.pushes.inc({ provider, kind: job.kind, outcome: 'failed' });
        log.warn({ event: 'push_failed', provider, kind: job.kind, attempts: job.attempt + 1, reason: result.reason });
    }
  }

  private retryLater(q: ProviderQueue, job: Job, afterMs?: number): void {
    const backoff = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (job.attempt - 1));
    const delay = Math.max(afterMs ?? 0, backoff * (0.5 + Math.random() / 2));
    const timer = this.deps.timers.set(() => {
      this.retries.delete(timer);
      q.jobs.push(job);
      this.pump(q);
    }, delay);
    this.retries.add(timer);
  }

  /**
   * What a job sends now, with the pending notifications it carries; undefined
   * if the token may not get it any more, or (a message) nothing is pending:
   * a push accepted meanwhile carried it all.
   */
  private content(token: TokenRecord, kind: PushKind): { content: PushContent; sent: SentNotification[] } | undefined {
    if (kind === 'verification') return { content: { kind, code: token.code }, sent: [] };
    if (token.status.status !== 'ACTIVE') return undefined;
    if (kind === 'check') return { content: { kind }, sent: [] };
    const { store } = this.deps;
    const sent: SentNotification[] = [];
    const entries = store.lastNotifications(token.tokenId, MAX_PUSH_ENTRIES).flatMap((n) => {
      const sub = store.sub(n.subId);
      if (!sub) return [];
      if (!n.pushed) sent.push({ subId: n.subId, nonce: n.nonce });
      return [{ notifierId: latin1Bytes(sub.notifierId), nonce: n.nonce, sealedMeta: n.sealedMeta }];
    });
    return sent.length > 0 ? { content: { kind, entries }, sent } : undefined;
  }

  /** Message pushes for every token with pending notifications (at start). */
  pushPending(): void {
    this.requeue(Infinity);
  }

  /** Pending notifications for metrics: how many, and how long the oldest has waited. */
  pendingPushes(): { count: number; oldestSeconds: number } {
    const { count, oldestTs } = this.deps.store.pendingPushes();
    return { count, oldestSeconds: oldestTs === undefined ? 0 : Math.max(0, this.deps.now() - oldestTs) / 1000 };
  }

  /** Pushes for tokens with a notification pending since before `before`, unless one is queued or in flight. */
  private requeue(before: number): void {
    const { store } = this.deps;
    for (const tokenId of store.pendingTokens(before)) {
      const token = store.token(tokenId);
      const q = token && this.queues.get(token.device.provider);
      if (!q || q.sending.has(tokenId) || q.queued.has(jobKey({ tokenId, kind: 'message' }))) continue;
      this.push(token, 'message');
    }
  }

  /**
   * Periodic "check messages" pushes that are due (one interval after TCRN,
   * then every interval), and, every pendingRetryMs, pushes again for
   * notifications pending longer than that.
   */
  runCron(): void {
    const { store, now } = this.deps;
    const t = now();
    for (const token of store.cronTokens()) {
      if (token.cronNextAt > t) continue;
      store.setCron(token.tokenId, token.cronMinutes, t + token.cronMinutes * 60_000);
      if (token.status.status === 'ACTIVE') this.push(token, 'check');
    }
    if (t < this.nextSweepAt) return;
    this.nextSweepAt = t + this.opts.pendingRetryMs;
    this.requeue(t - this.opts.pendingRetryMs);
  }

  close(): void {
    this.closed = true;
    for (const t of this.retries) this.deps.timers.clear(t);
    this.retries.clear();
  }
}
