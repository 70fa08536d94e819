// A credential a push service wants with each request (APNs provider token,
// VAPID JWT, FCM access token): made once, shared by all requests until it is
// due for renewal, made anew on demand, and dropped when the service refuses
// it, after which the refused request is sent once more with a new one.

/** A credential as made; times in ms since the epoch. */
export interface Issued<T> {
  value: T;
  issuedAt: number;
  /** Made anew from then on. */
  renewAt: number;
  /** Unusable from then on. */
  expiresAt: number;
}

export class Credential<T> {
  /** Credentials made so far (for metrics and tests). */
  made = 0;
  private current: Issued<T> | undefined;
  private making: Promise<unknown> | undefined;

  constructor(protected readonly now: () => number = Date.now) {}

  /** The cached credential if it is not yet due for renewal. */
  fresh(): Issued<T> | undefined {
    const c = this.current;
    const now = this.now();
    // a clock that went backwards renews too: services refuse credentials from the future
    return c && now >= c.issuedAt && now < c.renewAt ? c : undefined;
  }

  /** The cached credential while it has not expired, due for renewal or not. */
  unexpired(): Issued<T> | undefined {
    const c = this.current;
    return c && this.now() < c.expiresAt ? c : undefined;
  }

  /** The credential to send now: the fresh one, or one made now by make. */
  value(make: () => Issued<T>): T {
    return (this.fresh() ?? this.keep(make())).value;
  }

  /**
   * The fresh credential, or one made now by an asynchronous make, one at a
   * time however many callers wait. A failure (ok false) is passed on, not cached.
   */
  obtain<F extends { ok: false }>(make: () => Promise<({ ok: true } & Issued<T>) | F>): Promise<({ ok: true } & Issued<T>) | F> {
    const c = this.fresh();
    if (c) return Promise.resolve({ ok: true, ...c });
    if (this.making) return this.making as Promise<({ ok: true } & Issued<T>) | F>;
    const p = make().then((r) => {
      this.making = undefined;
      if (r.ok) this.keep(r);
      return r;
    });
    this.making = p;
    return p;
  }

  /**
   * Drops the cached credential (the service refused it). Given the value the
   * refused request carried, only that one is dropped: many requests refused
   * together renew it once, not once each.
   */
  invalidate(value?: T): void {
    if (value === undefined || value === this.current?.value) this.current = undefined;
  }

  /**
   * Sends a request carrying this credential. Refused for it, the value it
   * carried is dropped and the request sent once more (again = true), with a
   * new one. The last answer is returned: still refused means a new credential
   * was refused too (its value dropped as well).
   */
  async send<R>(
    attempt: (again: boolean) => Promise<{ answer: R; used?: T }>,
    refused: (answer: R) => boolean,
    onRefused?: (answer: R) => void,
  ): Promise<R> {
    const first = await attempt(false);
    if (!refused(first.answer)) return first.answer;
    this.drop(first.used);
    onRefused?.(first.answer);
    const second = await attempt(true);
    if (refused(second.answer)) this.drop(second.used);
    return second.answer;
  }

  private drop(used: T | undefined): void {
    // a request refused before it carried one has nothing of ours to drop
    if (used !== undefined) this.invalidate(used);
  }

  private keep(c: Issued<T>): Issued<T> {
    this.current = { value: c.value, issuedAt: c.issuedAt, renewAt: c.renewAt, expiresAt: c.expiresAt };
    this.made++;
    return this.current;
  }
}
