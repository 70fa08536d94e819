// A ClientStore in IndexedDB, for browsers: one database with one object store
// "kv" of string values under out-of-line string keys. Each write() is one
// transaction, which IndexedDB commits all or nothing.
import { WebLock, type LockManagerLike, type StoreLock } from './lock.ts';
import type { ClientStore } from './store.ts';

const KV = 'kv';

export class IndexedDbStore implements ClientStore {
  private closed = false;
  /** A Web Lock named `hush-store:<name>`, where the browser has Web Locks (none: no lock). */
  readonly lock: StoreLock | undefined;

  private constructor(
    private readonly db: IDBDatabase,
    private readonly keyRange: typeof IDBKeyRange,
    name: string,
  ) {
    const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
    this.lock = locks && new WebLock(locks, `hush-store:${name}`);
  }

  /**
   * `keyRange` must come from the same implementation as `factory` (a polyfill
   * only accepts its own ranges), so it can be passed along with it.
   */
  static open(
    name: string,
    factory: IDBFactory = globalThis.indexedDB,
    keyRange: typeof IDBKeyRange = globalThis.IDBKeyRange,
  ): Promise<IndexedDbStore> {
    return new Promise((resolve, reject) => {
      const req = factory.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(KV);
      req.onsuccess = () => resolve(new IndexedDbStore(req.result, keyRange, name));
      req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB database ${name}`));
      req.onblocked = () => reject(new Error(`IndexedDB database ${name} is blocked by another connection`));
    });
  }

  async get(key: string): Promise<string | undefined> {
    const value = await result(this.kv('readonly').get(key));
    return typeof value === 'string' ? value : undefined;
  }

  async write(entries: ReadonlyArray<readonly [key: string, value: string | undefined]>): Promise<void> {
    // 'strict' so that `complete` means on disk: the SDK acknowledges what it has written.
    const tx = this.tx('readwrite', { durability: 'strict' });
    const kv = tx.objectStore(KV);
    try {
      for (const [key, value] of entries) {
        if (value === undefined) kv.delete(key);
        else kv.put(value, key);
      }
    } catch (e) {
      tx.abort(); // otherwise the entries before the bad one would commit on their own
      throw e;
    }
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB write failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB write aborted'));
    });
  }

  async keys(prefix: string): Promise<string[]> {
    const keys = await result(this.kv('readonly').getAllKeys(prefixRange(this.keyRange, prefix)));
    return keys as string[]; // every key this store writes is a string; IndexedDB returns them sorted
  }

  async close(): Promise<void> {
    this.closed = true;
    this.db.close(); // lets running transactions finish
  }

  private tx(mode: IDBTransactionMode, options?: IDBTransactionOptions): IDBTransaction {
    if (this.closed) throw new Error('IndexedDbStore is closed');
    return this.db.transaction(KV, mode, options);
  }

  private kv(mode: IDBTransactionMode): IDBObjectStore {
    return this.tx(mode).objectStore(KV);
  }
}

function result<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

/**
 * The keys that start with `prefix`: from `prefix` up to the first string past
 * them all, which is the prefix without its trailing U+FFFF units and its last
 * unit incremented. (An upper bound of prefix + '\uffff' would miss a key like
 * prefix + '\uffff' + 'x'.)
 */
function prefixRange(range: typeof IDBKeyRange, prefix: string): IDBKeyRange | undefined {
  const stem = prefix.replace(/\uffff+$/, '');
  if (stem === '') return prefix === '' ? undefined : range.lowerBound(prefix);
  const end = stem.slice(0, -1) + String.fromCharCode(stem.charCodeAt(stem.length - 1) + 1);
  return range.bound(prefix, end, false, true);
}
