// The embedded NTF store: memory state with every change in a journal.
import fs from 'node:fs';
import path from 'node:path';
import { Journal, type JournalOptions } from '../../server/journal.ts';
import { MemoryNtfStore } from './memory.ts';
import { decodeNtfRecord, encodeNtfRecord } from './records.ts';

export function openJournalNtfStore(dir: string, opts: Omit<JournalOptions, 'file'> = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const store = new MemoryNtfStore();
  const journal = new Journal(
    { ...opts, file: path.join(dir, 'ntf.journal') },
    { encode: encodeNtfRecord, decode: decodeNtfRecord },
    (r) => store.load(r),
    () => store.liveRecords(),
  );
  store.attach(journal);
  return { store, journal };
}
