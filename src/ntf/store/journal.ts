// The embedded NTF store: memory state with every change in a journal.
import fs from 'node:fs';
import path from 'node:path';
import { Journal, repairJournal, type JournalOptions } from '../../server/journal.ts';
import { MemoryNtfStore } from './memory.ts';
import { decodeNtfRecord, encodeNtfRecord } from './records.ts';

const journalFile = (dir: string) => path.join(dir, 'ntf.journal');
const codec = { encode: encodeNtfRecord, decode: decodeNtfRecord };

export function openJournalNtfStore(dir: string, opts: Omit<JournalOptions, 'file'> = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const store = new MemoryNtfStore();
  const journal = new Journal(
    { ...opts, file: journalFile(dir) },
    codec,
    (r) => store.load(r),
    () => store.liveRecords(),
  );
  store.attach(journal);
  return { store, journal };
}

/** Sets aside a corrupt journal's records from the bad one on (src/server/journal.ts repairJournal). */
export function repairNtfJournal(dir: string) {
  const file = journalFile(dir);
  return { file, repair: repairJournal(file, codec) };
}
