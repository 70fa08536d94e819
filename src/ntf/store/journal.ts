// The embedded NTF store: memory state with every change in a journal.
import path from 'node:path';
import { openJournal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryNtfStore } from './memory.ts';
import { decodeNtfRecord, encodeNtfRecord, ntfRecordSize } from './records.ts';

const journalFile = (dir: string) => path.join(dir, 'ntf.journal');
const codec = { encode: encodeNtfRecord, decode: decodeNtfRecord, size: ntfRecordSize };

export function openJournalNtfStore(dir: string, opts: Omit<JournalOptions, 'file'> = {}) {
  const store = new MemoryNtfStore();
  return { store, journal: openJournal(store, codec, { ...opts, file: journalFile(dir) }) };
}

/** Sets aside a corrupt journal's records from the bad one on (src/server/journal.ts repairJournal). */
export function repairNtfJournal(dir: string) {
  const file = journalFile(dir);
  return { file, repair: repairJournal(file, codec) };
}
