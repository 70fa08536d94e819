// CaptureProvider: an in-process PushProvider for tests. It records every
// PushRequest, answers 'delivered' unless told otherwise (scripted results,
// in order), and can hold deliveries back until release().
import type { Provider } from '../../ntf/protocol.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';

export class CaptureProvider implements PushProvider {
  readonly serves: readonly Provider[];
  /** Every request sent, in order (held ones included). */
  readonly requests: PushRequest[] = [];
  private results: PushResult[] = [];
  private held: Array<() => void> | undefined;
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  private closed = false;

  constructor(opts: { serves?: readonly Provider[] } = {}) {
    this.serves = opts.serves ?? ['test'];
  }

  /** The next sends get these results, in order; then 'delivered' again. */
  nextResults(...results: PushResult[]): this {
    this.results.push(...results);
    return this;
  }

  /** Deliveries wait (unresolved) until release(). */
  hold(): this {
    this.held ??= [];
    return this;
  }

  /** Lets every held delivery (and later ones) through. */
  release(): this {
    const h = this.held ?? [];
    this.held = undefined;
    for (const go of h) go();
    return this;
  }

  /** Sends waiting for release(). */
  get waiting(): number {
    return this.held?.length ?? 0;
  }

  /** Resolves once `n` requests in all were sent. */
  waitFor(n: number): Promise<void> {
    if (this.requests.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  async send(req: PushRequest): Promise<PushResult> {
    if (this.closed) return { outcome: 'retry', reason: 'provider closed' };
    this.requests.push(req);
    this.waiters = this.waiters.filter((w) => (w.n <= this.requests.length ? (w.resolve(), false) : true));
    const result = this.results.shift() ?? { outcome: 'delivered' };
    if (this.held) await new Promise<void>((go) => this.held!.push(go));
    return result;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.release();
  }
}
