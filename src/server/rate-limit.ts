// Token buckets keyed by a string (a client address, a device token's hash):
// each key may spend `burst` at once and regains `perMinute` a minute. The map
// of keys is bounded, so a stranger churning keys cannot grow it without end;
// past the bound, full buckets (they equal no entry at all) are dropped first,
// then the oldest.

export interface RateLimit {
  /** Tokens regained per minute. */
  perMinute: number;
  /** Tokens a fresh key holds. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
    private readonly maxKeys = 100_000,
  ) {}

  /** Spends one token of `key`; false (and nothing spent) when it has none left. */
  take(key: string): boolean {
    const b = this.refill(key);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private refill(key: string): Bucket {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(t);
      b = { tokens: this.limit.burst, at: t };
      this.buckets.set(key, b);
      return b;
    }
    const gained = ((t - b.at) * this.limit.perMinute) / 60_000;
    if (gained > 0) {
      b.tokens = Math.min(this.limit.burst, b.tokens + gained);
      b.at = t;
    }
    return b;
  }

  private prune(t: number): void {
    const full = (b: Bucket) => b.tokens + ((t - b.at) * this.limit.perMinute) / 60_000 >= this.limit.burst;
    for (const [k, b] of this.buckets) if (full(b)) this.buckets.delete(k);
    // Still full of spent buckets: drop the oldest (insertion order), so new keys are served.
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxKeys) break;
      this.buckets.delete(k);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
