// One writer per store. An app and its push extension (an iOS Notification
// Service Extension, an Android service, a browser's service worker) may run
// clients on the same store in different processes; two at once would both
// advance the same ratchets from the same state (a message key used twice,
// messages lost). A client holds its store's lock from open (or reload) to
// close (or suspend); a store provides one (StoreLock) or the app injects it.

/** The store could not be taken in time, was taken away, or the client does not hold it. */
export class StoreLockError extends Error {
  override name = 'StoreLockError';
}

export interface AcquireOptions {
  /** How long to wait for another holder to let go; then a StoreLockError. 0: only if free now. */
  timeoutMs: number;
  /**
   * Called if the lock is lost while held (a file lock another process found
   * stale and took): the holder must stop writing at once.
   */
  onLost?: (error: StoreLockError) => void;
}

/** Gives the store up; resolves once another holder may take it. Calling it again does nothing. */
export type ReleaseLock = () => Promise<void>;

export interface StoreLock {
  acquire(opts: AcquireOptions): Promise<ReleaseLock>;
}

export const lockTimeout = (timeoutMs: number) =>
  new StoreLockError(`the store is in use by another client (waited ${timeoutMs} ms for it)`);

/** Once only: a release function that later calls leave alone. */
export function once(fn: () => Promise<void>): ReleaseLock {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

/** An in-process lock, first come first served (MemoryStore: clients of one process on one store). */
export class MemoryLock implements StoreLock {
  private held = false;
  private readonly waiting: Array<() => void> = [];

  acquire({ timeoutMs }: AcquireOptions): Promise<ReleaseLock> {
    return new Promise((resolve, reject) => {
      const grant = () => {
        this.held = true;
        resolve(once(async () => this.handOn()));
      };
      if (!this.held) return grant();
      if (timeoutMs <= 0) return reject(lockTimeout(timeoutMs));
      const waiter = () => {
        clearTimeout(timer);
        grant();
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(lockTimeout(timeoutMs));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  private handOn(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held = false;
  }
}

/** The part of the Web Locks API (navigator.locks) used here. */
export interface LockManagerLike {
  request(name: string, options: { mode: 'exclusive'; ifAvailable?: boolean; signal?: AbortSignal }, callback: (lock: unknown) => Promise<void>): Promise<void>;
}

/**
 * A Web Lock held until released (browsers: tabs, workers and the service
 * worker of one origin). The browser frees it when its holder goes away, so it
 * is never lost while held.
 */
export class WebLock implements StoreLock {
  constructor(
    private readonly locks: LockManagerLike,
    private readonly name: string,
  ) {}

  acquire({ timeoutMs }: AcquireOptions): Promise<ReleaseLock> {
    return new Promise((resolve, reject) => {
      const abort = new AbortController();
      const timer = timeoutMs > 0 ? setTimeout(() => abort.abort(), timeoutMs) : undefined;
      let letGo!: () => void;
      const held = new Promise<void>((r) => (letGo = r));
      const request = this.locks.request(
        this.name,
        { mode: 'exclusive', ...(timeoutMs > 0 ? { signal: abort.signal } : { ifAvailable: true }) },
        async (lock) => {
          clearTimeout(timer);
          if (!lock) return reject(lockTimeout(timeoutMs)); // ifAvailable, and taken
          resolve(
            once(async () => {
              letGo();
              await request;
            }),
          );
          return held;
        },
      );
      request.catch((e: unknown) => {
        clearTimeout(timer);
        reject(abort.signal.aborted ? lockTimeout(timeoutMs) : e);
      });
    });
  }
}
