// An in-process push provider for tests: it records every send, can hold
// sends back (a slow provider: the pushes stay in flight) or hang them, and
// answers as scripted (default: delivered).
import { equalBytes } from '../../core/encoding.ts';
import type { DeviceToken, Provider } from '../device.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';


/** What the provider answers one send; may be async (a slow or hung provider). */
export type Responder = (req: PushRequest, attempt: CaptureAttempt) => PushResult | Promise<PushResult>;

export interface CaptureAttempt {
  req: PushRequest;
  /** Set once the provider answered. */
  result?: PushResult;
  /** Time (Date.now) the send was called. */
  at: number;
}

/**
 * An in-process push provider that records every send. `hold()` parks sends
 * until `release()` (like a slow provider: the push is in flight meanwhile);
 * `respond` scripts the answers (default: delivered). Pushes that got
 * `delivered` are queued for `next()`.
 */
export class CaptureProvider implements PushProvider {
  /** Every send, in call order, answered or not. */
  readonly attempts: CaptureAttempt[] = [];
  /** Delivered pushes not yet taken by next(). */
  private readonly inbox: PushRequest[] = [];
  /** Every delivered push, in order (never consumed). */
  readonly delivered: PushRequest[] = [];
  private waiters: Array<() => void> = [];
  private gate: { promise: Promise<void>; open: () => void } | undefined;
  private hung = new Set<() => void>();
  respond: Responder = () => ({ outcome: 'delivered' });
  closed = false;

  constructor(readonly serves: readonly Provider[] = ['test']) {}

  async send(req: PushRequest): Promise<PushResult> {
    const attempt: CaptureAttempt = { req: { ...req, data: req.data.slice() }, at: Date.now() };
    this.attempts.push(attempt);
    this.wake();
    if (this.gate) await this.gate.promise;
    let result: PushResult;
    try {
      result = await this.respond(attempt.req, attempt);
    } catch (e) {
      // a throwing provider: answered (the dispatcher sees the exception)
      attempt.result = { outcome: 'retry', reason: 'provider threw' };
      this.wake();
      throw e;
    }
    attempt.result = result;
    if (result.outcome === 'delivered') {
      this.delivered.push(attempt.req);
      this.inbox.push(attempt.req);
    }
    this.wake();
    return result;
  }

  /** Parks every send (new and not yet answered) until release(). */
  hold(): void {
    if (this.gate) return;
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.gate = { promise, open };
  }

  release(): void {
    const g = this.gate;
    this.gate = undefined;
    g?.open();
  }

  /** A responder that never answers (until close()). */
  hang(): Promise<PushResult> {
    return new Promise((resolve) => {
      const r = () => resolve({ outcome: 'retry', reason: 'provider closed' });
      this.hung.add(r);
    });
  }

  /** Sends still waiting for an answer. */
  get pending(): number {
    return this.attempts.filter((a) => !a.result).length;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when `cond` holds, re-checked on every send and answer. */
  async waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Takes the next delivered push matching `filter`, waiting up to `timeoutMs`. */
  async next(filter: (r: PushRequest) => boolean = () => true, timeoutMs = 5000): Promise<PushRequest> {
    let found: PushRequest | undefined;
    await this.waitFor(
      'a push',
      () => {
        const i = this.inbox.findIndex(filter);
        if (i >= 0) found = this.inbox.splice(i, 1)[0];
        return found !== undefined;
      },
      timeoutMs,
    );
    return found!;
  }

  /** Delivered pushes still in the inbox that match `filter` (not consumed). */
  peek(filter: (r: PushRequest) => boolean = () => true): PushRequest[] {
    return this.inbox.filter(filter);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.release();
    for (const r of this.hung) r();
    this.hung.clear();
  }
}

/** Matches pushes to one device token. */
export const forDevice = (d: DeviceToken) => (r: PushRequest) =>
  r.device.provider === d.provider && equalBytes(r.device.token, d.token);

