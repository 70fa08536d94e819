// Journal store: a memory store with the journal (src/server/journal.ts)
// attached as its log, the journal replayed into it on open.
import path from 'node:path';
import { openJournal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord, recordSize } from './records.ts';

export interface JournalStoreOptions extends Omit<JournalOptions, 'file'> {
  dir: string;
}

const journalFile = (dir: string) => path.join(dir, 'relay.journal');
const codec = { encode: encodeRecord, decode: decodeRecord, size: recordSize };

/** Sets aside a corrupt journal's records from the bad one on (src/server/journal.ts repairJournal). */
export function repairRelayJournal(dir: string) {
  const file = journalFile(dir);
  return { file, repair: repairJournal(file, codec) };
}

export function openJournalQueueStore({ dir, ...opts }: JournalStoreOptions) {
  const store = new MemoryQueueStore();
  return { store, journal: openJournal(store, codec, { ...opts, file: journalFile(dir) }) };
}
