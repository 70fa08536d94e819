// A ClientStore in one JSON file, for Node clients. The whole map is kept in
// memory and every write() rewrites the file: client state is small, and a
// whole-file replace by rename is the simplest way to make each write() atomic.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ClientStore } from './store.ts';

type Entries = ReadonlyArray<readonly [key: string, value: string | undefined]>;

export class FileStore implements ClientStore {
  /** Writes run one at a time, in call order, so the file always holds a prefix of them. */
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly file: string,
    private map: Map<string, string>,
  ) {}

  static async open(file: string): Promise<FileStore> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    // A left-over temp file is a write that crashed before its rename: it never happened.
    await fs.rm(tmpOf(file), { force: true });
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
