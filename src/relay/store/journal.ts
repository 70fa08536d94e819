// Journal store: a memory store with the journal (src/server/journal.ts)
// attached as its log, the journal replayed into it on open.
import fs from 'node:fs';
import path from 'node:path';
import { Journal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord } from './records.ts';

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

export function openJournalQueueStore({ dir, ...opts }: JournalStoreOptions) {
  fs.mkdirSync(dir, { recursive: true });
  const store = new MemoryQueueStore();
  const journal = new Journal(
    { ...opts, file: journalFile(dir) },
    codec,
    (r) => store.load(r),
    () => store.liveRecords(),
  );
  store.attach(journal);
  return { store, journal };
}
