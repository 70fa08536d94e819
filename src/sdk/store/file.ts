// A ClientStore in one JSON file, for Node clients. The whole map is kept in
// memory and every write() rewrites the file: client state is small, and a
// whole-file replace by rename is the simplest way to make each write() atomic.
//
// Its lock is a `<file>.lock` directory (proper-lockfile) whose mtime the
// holder refreshes: processes on one file take turns, and a holder that died
// (kill -9) leaves a lock that goes stale and is taken over.
import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { lockTimeout, once, StoreLockError, type AcquireOptions, type ReleaseLock, type StoreLock } from './lock.ts';
import type { ClientStore } from './store.ts';

/** A lock not refreshed for this long belongs to a dead holder. */
export const STALE_MS = 10_000;
/** How often the holder refreshes it. */
const UPDATE_MS = 2_000;
/** Polling while another process holds it: from 50 ms, ×1.5, at most 500 ms. */
const POLL_MS = [50, 500] as const;

type Entries = ReadonlyArray<readonly [key: string, value: string | undefined]>;

export class FileStore implements ClientStore {
  /** Writes run one at a time, in call order, so the file always holds a prefix of them. */
  private tail: Promise<void> = Promise.resolve();
  private closed = false;
  readonly lock: StoreLock = { acquire: (opts) => this.acquire(opts) };

  private constructor(
    private readonly file: string,
    private map: Map<string, string>,
  ) {}

  /**
   * Reads the file (created at the first write). Another process may hold the
   * file's lock meanwhile: the client that takes it reads the file again.
   */
  static async open(file: string): Promise<FileStore> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    return new FileStore(file, await load(file));
  }

  async get(key: string): Promise<string | undefined> {
    this.check();
    return this.map.get(key);
  }

  async write(entries: Entries): Promise<void> {
    this.check();
    const batch = entries.map(([k, v]) => [k, v] as const); // the caller may reuse its array
    const done = this.tail.then(() => this.commit(batch));
    this.tail = done.catch(() => {}); // a failed write leaves the map as it was; later writes go on
    return done;
  }

  async keys(prefix: string): Promise<string[]> {
    this.check();
    return [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.tail;
  }

  /**
   * Takes `<file>.lock`, then reads the file again: what other processes
   * wrote while they held it. A lock found compromised (not refreshed in time,
   * taken by another process) is reported through `onLost`.
   */
  private async acquire({ timeoutMs, onLost }: AcquireOptions): Promise<ReleaseLock> {
    this.check();
    const deadline = Date.now() + timeoutMs;
    let lost = false;
    const options = {
      realpath: false,
      stale: STALE_MS,
      update: UPDATE_MS,
      onCompromised: (e: Error) => {
        lost = true;
        onLost?.(new StoreLockError(`the lock on ${this.file} was lost: ${e.message}`, { cause: e }));
      },
    };
    let unlock: () => Promise<void>;
    for (let wait: number = POLL_MS[0]; ; wait = Math.min(wait * 1.5, POLL_MS[1])) {
      try {
        unlock = await lockfile.lock(this.file, options);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw new StoreLockError(`cannot lock ${this.file}: ${(e as Error).message}`, { cause: e });
        const left = deadline - Date.now();
        if (left <= 0) throw lockTimeout(timeoutMs);
        await new Promise((r) => setTimeout(r, Math.min(wait, left)));
      }
    }
    const release = once(async () => {
      if (!lost) await unlock(); // a lost lock is another process's now
    });
    try {
      // A left-over temp file is a write that crashed before its rename: it never happened.
      await fs.rm(tmpOf(this.file), { force: true });
      this.map = await load(this.file);
    } catch (e) {
      await release();
      throw e;
    }
    return release;
  }

  /** Readers see the new map only once it is durable, so get() never returns what a crash could lose. */
  private async commit(batch: Entries): Promise<void> {
    const next = new Map(this.map);
    for (const [key, value] of batch) {
      if (value === undefined) next.delete(key);
      else next.set(key, value);
    }
    await save(this.file, next);
    this.map = next;
  }

  private check(): void {
    if (this.closed) throw new Error(`FileStore ${this.file} is closed`);
  }
}

const tmpOf = (file: string) => `${file}.tmp`;

async function load(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new Error(`FileStore: cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  // Never start empty over a damaged file: that would silently drop every key.
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`FileStore: ${file} is corrupt: ${(e as Error).message}`, { cause: e });
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new Error(`FileStore: ${file} is corrupt: not a JSON object`);
  const map = new Map<string, string>();
  for (const [key, value] of Object.entries(data)) {
    if (typeof value !== 'string') throw new Error(`FileStore: ${file} is corrupt: the value of ${JSON.stringify(key)} is not a string`);
    map.set(key, value);
  }
  return map;
}

/** Replaces the file atomically: the data is on disk before the rename makes it the file. */
async function save(file: string, map: Map<string, string>): Promise<void> {
  const tmp = tmpOf(file);
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(Object.fromEntries(map)));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
  await syncDir(path.dirname(file));
}

/** Makes the rename itself durable; some platforms (Windows) cannot open a directory, so best effort. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // the rename is still atomic, only its durability on power loss is weaker
  }
}
