// The memory side of a store that persists by records: each change is one
// record, applied to memory and then handed to the attached log (a journal,
// PostgreSQL), which owns durability. Replaying the log rebuilds memory.
import type { RecordLog } from './journal.ts';

export abstract class RecordedStore<R> {
  private log: RecordLog<R> | undefined;

  /** Where changes go once loaded. */
  attach(log: RecordLog<R>): void {
    this.log = log;
  }

  /** Replays a stored record into memory, without logging it again. */
  load(r: R): void {
    this.apply(r);
  }

  protected record(r: R): void {
    this.apply(r);
    this.log?.append(r);
  }

  /** Changes memory by one record; records for entities that no longer exist are ignored. */
  protected abstract apply(r: R): void;

  /** The fewest records that rebuild the state as it is now (what a compacted journal holds). */
  abstract liveRecords(): Iterable<R>;

  failure(): string | undefined {
    return this.log?.failure();
  }

  async flush(): Promise<void> {
    await this.log?.flush();
  }

  async close(): Promise<void> {
    await this.log?.close();
  }
}
