// Journal store: the memory store, with every change appended to a journal
// (src/server/journal.ts) and the journal replayed on open.
import fs from 'node:fs';
import path from 'node:path';
import { Journal } from '../../server/journal.ts';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord, type StoreRecord } from './records.ts';

export interface JournalStoreOptions {
  dir: string;
  fsync?: boolean;
  compactRatio?: number;
  compactMinBytes?: number;
}

export class JournalQueueStore extends MemoryQueueStore {
  private readonly journal: Journal<StoreRecord>;

  private constructor(opts: JournalStoreOptions) {
    super();
    fs.mkdirSync(opts.dir, { recursive: true });
    const { dir, ...rest } = opts;
    this.journal = new Journal(
      { ...rest, file: path.join(dir, 'relay.journal') },
      { encode: encodeRecord, decode: decodeRecord },
      (r) => this.apply(r),
      () => this.liveRecords(),
    );
  }

  static open(opts: JournalStoreOptions): JournalQueueStore {
    return new JournalQueueStore(opts);
  }

  /** Bytes cut off a torn tail when opening. */
  get truncatedBytes(): number {
    return this.journal.truncatedBytes;
  }

  get journalBytes(): number {
    return this.journal.bytes;
  }

  compact(): void {
    this.journal.compact();
  }

  protected override persist(r: StoreRecord): void {
    this.journal.append(r);
  }

  override async flush(): Promise<void> {
    this.journal.flush();
  }

  override async close(): Promise<void> {
    this.journal.close();
  }
}
