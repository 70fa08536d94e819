// A ClientStore that lives and dies with the process: for tests and for
// clients that keep nothing between runs.
import { MemoryLock } from './lock.ts';
import type { ClientStore } from './store.ts';

export class MemoryStore implements ClientStore {
  private readonly map = new Map<string, string>();
  private closed = false;
  /** For clients of one process on this store (as tests run an app and its extension). */
  readonly lock = new MemoryLock();

  async get(key: string): Promise<string | undefined> {
    this.check();
    return this.map.get(key);
  }

  /** Applied synchronously, before the first await, so later changes to `entries` do not leak in. */
  async write(entries: ReadonlyArray<readonly [key: string, value: string | undefined]>): Promise<void> {
    this.check();
    for (const [key, value] of entries) {
      if (value === undefined) this.map.delete(key);
      else this.map.set(key, value);
    }
  }

  async keys(prefix: string): Promise<string[]> {
    this.check();
    return [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(): void {
    if (this.closed) throw new Error('MemoryStore is closed');
  }
}
