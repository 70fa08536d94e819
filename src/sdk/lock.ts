import { StoreLockError } from './store/lock.ts';

// One async operation at a time per key: a contact's ratchet and queue are
// changed by sending, receiving and push handling, which may run at once.
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn, fn);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once everything started so far, under every key, has settled. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.allSettled([...this.tails.values()]);
  }
}

/**
 * Store writes of a client: allowed only while it holds the store (between
 * taking its lock and giving it up), so that work still running when the
 * client suspends cannot write over another holder's records.
 */
export class WriteGate {
  private open = false;
  private readonly writes = new InFlight();

  run<T>(write: () => Promise<T>): Promise<T> {
    if (!this.open) return Promise.reject(new StoreLockError('the client does not hold its store (suspended or closed)'));
    return this.writes.track(write());
  }

  /** Refuses writes from now on; resolves once those in flight are done. */
  async close(): Promise<void> {
    this.open = false;
    await this.writes.settled();
  }

  reopen(): void {
    this.open = true;
  }
}

/** Work started and not yet settled, to wait for all of it. */
export class InFlight {
  private readonly pending = new Set<Promise<unknown>>();

  /** Returns `p`, tracked until it settles. */
  track<T>(p: Promise<T>): Promise<T> {
    const settled: Promise<unknown> = p.then(
      () => this.pending.delete(settled),
      () => this.pending.delete(settled),
    );
    this.pending.add(settled);
    return p;
  }

  /** Resolves once everything tracked so far has settled. */
  async settled(): Promise<void> {
    await Promise.all(this.pending);
  }
}
