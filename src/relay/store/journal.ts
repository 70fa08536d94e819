// Journal store: the memory store, with every change appended to a journal
// (src/server/journal.ts) and the journal replayed on open.
import fs from 'node:fs';
import path from 'node:path';
import { Journal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord, type StoreRecord } from './records.ts';

export interface JournalStoreOptions extends Omit<JournalOptions, 'file'> {
  dir: string;
}

const journalFile = (dir: string) => path.join(dir, 'relay.journal');
const codec = { encode: encodeRecord, decode: decodeRecord };

/** Sets aside a corrupt journal's records from the bad one on (src/server/journal.ts repairJournal). */
export function repairRelayJournal(dir: string) {
  const file = journalFile(dir);
  return { file, repair: repairJournal(file, codec) };
}

export class JournalQueueStore extends MemoryQueueStore {
  private readonly journal: Journal<StoreRecord>;

  private constructor(opts: JournalStoreOptions) {
    super();
    fs.mkdirSync(opts.dir, { recursive: true });
    const { dir, ...rest } = opts;
    this.journal = new Journal(
      { ...rest, file: journalFile(dir) },
      codec,
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

  override failure(): string | undefined {
    return this.journal.failure();
  }

  override async flush(): Promise<void> {
    await this.journal.flush();
  }

  override async close(): Promise<void> {
    await this.journal.close();
  }
}
