// Scripted answers of a provider test server: for one key (a device token, an
// endpoint) some number of times, or for the next requests in order, or for a
// random share of requests (faults at a rate, for load runs). A key's script
// comes first, then the queued ones, then the random one; a request no script
// claims gets the normal answer.
interface Script<R> {
  reply: R;
  times: number;
}

export class Replies<R> {
  private readonly byKey = new Map<string, Script<R>>();
  private next: Array<Script<R>> = [];
  private random: { share: number; pick: () => R; rng: () => number } | undefined;

  /** Answers requests for `key` with `reply`, `times` times (default: until cleared). */
  to(key: string, reply: R, times = Infinity): void {
    this.byKey.set(key, { reply, times });
  }

  /** Answers the next `n` requests no key script claims with `reply`. */
  queue(reply: R, n = 1): void {
    if (n > 0) this.next.push({ reply, times: n });
  }

  /** Answers a random `share` (0..1) of the requests no other script claims with `pick()`; 0 stops it. */
  randomly(share: number, pick: () => R, rng: () => number = Math.random): void {
    this.random = share > 0 ? { share, pick, rng } : undefined;
  }

  clear(): void {
    this.byKey.clear();
    this.next = [];
    this.random = undefined;
  }

  get empty(): boolean {
    return this.byKey.size === 0 && this.next.length === 0 && this.random === undefined;
  }

  /** The scripted answer for a request (for `key`, if it has one), used up once. */
  take(key?: string): R | undefined {
    const own = key === undefined ? undefined : this.byKey.get(key);
    if (own) {
      if (--own.times <= 0) this.byKey.delete(key!);
      return own.reply;
    }
    const next = this.next[0];
    if (next) {
      if (--next.times <= 0) this.next.shift();
      return next.reply;
    }
    const r = this.random;
    return r && r.rng() < r.share ? r.pick() : undefined;
  }
}
