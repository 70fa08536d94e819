// Scripted answers of a provider test server: for one key (a device token, an
// endpoint) some number of times, or for the next requests in order. A key's
// script comes first; a request no script claims gets the normal answer.
interface Script<R> {
  reply: R;
  times: number;
}

export class Replies<R> {
  private readonly byKey = new Map<string, Script<R>>();
  private next: Array<Script<R>> = [];

  /** Answers requests for `key` with `reply`, `times` times (default: until cleared). */
  to(key: string, reply: R, times = Infinity): void {
    this.byKey.set(key, { reply, times });
  }

  /** Answers the next `n` requests no key script claims with `reply`. */
  queue(reply: R, n = 1): void {
    if (n > 0) this.next.push({ reply, times: n });
  }

  clear(): void {
    this.byKey.clear();
    this.next = [];
  }

  get empty(): boolean {
    return this.byKey.size === 0 && this.next.length === 0;
  }

  /** The scripted answer for a request (for `key`, if it has one), used up once. */
  take(key?: string): R | undefined {
    const own = key === undefined ? undefined : this.byKey.get(key);
    if (own) {
      if (--own.times <= 0) this.byKey.delete(key!);
      return own.reply;
    }
    const next = this.next[0];
    if (!next) return undefined;
    if (--next.times <= 0) this.next.shift();
    return next.reply;
  }
}
