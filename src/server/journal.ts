// Append-only journal of records, shared by the stores of every Hush server.
// Frame: u32 length, u32 CRC-32 of the record, record. `flush()` writes every
// record appended since the last flush in one write(2), so once it returns the
// records survive kill -9. With fsync it also syncs them (group commit): the
// fdatasync runs on libuv's threadpool, one at a time, and every flush that
// arrives while one runs is covered by the next; a flush resolves once a sync
// covering its records has finished.
// On open the file is replayed through `apply`, read in chunks (a start holds
// one chunk, not the whole file). A torn tail (a crash mid-write:
// a last frame running past the end, a last frame with a bad CRC, zeros to the
// end) is cut off and reported; a bad frame with more after it is corruption
// and stops the open (JournalCorruptError): cutting there would silently drop
// every later record. `repairJournal` sets the rest aside so the journal opens.
// Compaction rewrites the live state (`live()`) to a new file and renames it
// over the old one once the journal is `compactRatio` times the live size.
// A failed write cuts the file back to its last good length; a failed write or
// sync fails every later flush: memory is ahead of disk, so the process must
// restart.
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import type { Parsed } from '../core/encoding.ts';
import type { RecordedStore } from './recorded-store.ts';

/** The file operations appends go through; tests replace them to fail writes and hold syncs. */
export interface JournalIo {
  /** As fs.writeSync(fd, data, offset): writes from data[offset] on, returns the bytes written. */
  write?(fd: number, data: Buffer, offset: number): number;
  /** fdatasync, off the event loop. */
  sync?(fd: number): Promise<void>;
}

export interface JournalOptions {
  file: string;
  /** fdatasync before a flush resolves: survives power loss, not only process death. */
  fsync?: boolean;
  /** Compact when the journal is this many times the size of its live records... */
  compactRatio?: number;
  /** ...and at least this large. */
  compactMinBytes?: number;
  /** The command an operator runs to repair this journal, named in JournalCorruptError. */
  repairCommand?: string;
  io?: JournalIo;
}

/** Where a store's changes go after they are applied in memory. */
export interface RecordLog<R> {
  append(r: R): void;
  /** The durability barrier: resolves when every appended record is stored. */
  flush(): Promise<void> | void;
  close(): Promise<void> | void;
  /** Why the log cannot store records now (a failed write), if it cannot: a journal until restart, a database until a later commit. */
  failure(): string | undefined;
}

export interface JournalCodec<R> {
  encode(r: R): Uint8Array;
  /** `b` is a view of the journal's read buffer, which is reused: the record must own (copy) the bytes it keeps. */
  decode(b: Uint8Array): Parsed<R>;
  /** encode(r).length without encoding: measuring a million live records by encoding them took seconds of each start. */
  size?(r: R): number;
}

/** A bad record with more after it: opening would lose every record after it. */
export class JournalCorruptError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly size: number,
    readonly reason: string,
    repairCommand = 'hush relay|ntf repair --dir DIR',
  ) {
    super(
      `${file}: corrupt record at byte ${offset} of ${size} (${reason}) with more after it; not opened, as every record ` +
        `after it would be lost. Repair: stop the server and run \`${repairCommand}\`; it keeps bytes ${offset}-${size} in ` +
        `${corruptFile(file, offset)} and cuts the journal there, which then opens with the records before them.`,
    );
    this.name = 'JournalCorruptError';
  }
}

const FRAME_HEADER = 8;
const fdatasync = promisify(fs.fdatasync);
const corruptFile = (file: string, offset: number) => `${file}.corrupt-${offset}`;

/** Opens a recorded store's journal: replays it into the store, then attaches it as the store's log. */
export function openJournal<R>(store: RecordedStore<R>, codec: JournalCodec<R>, opts: JournalOptions): Journal<R> {
  fs.mkdirSync(path.dirname(opts.file), { recursive: true });
  const journal = new Journal(
    opts,
    codec,
    (r) => store.load(r),
    () => store.liveRecords(),
  );
  store.attach(journal);
  return journal;
}

export class Journal<R> implements RecordLog<R> {
  private fd: number;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  /** The file's length: every record written. */
  private fileBytes = 0;
  /** Journal size at which the live size is measured again. */
  private nextCheck = 0;
  private failed: Error | undefined;
  /** Bytes written by flushes since open (across compactions)... */
  private written = 0;
  /** ...of which a finished sync covers this many. */
  private synced = 0;
  private syncing: { upTo: number; fd: number; done: Promise<void> } | undefined;
  /** Flushes waiting for the sync after the one in flight. */
  private next: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } | undefined;
  /** Bytes cut off a torn tail when opening. */
  readonly truncatedBytes: number;
  private readonly opts: Required<Omit<JournalOptions, 'repairCommand' | 'io'>> & Pick<JournalOptions, 'repairCommand'>;
  private readonly io: Required<JournalIo>;

  constructor(
    opts: JournalOptions,
    private readonly codec: JournalCodec<R>,
    apply: (r: R) => void,
    private readonly live: () => Iterable<R>,
  ) {
    const { io, ...rest } = opts;
    this.opts = { fsync: false, compactRatio: 4, compactMinBytes: 64 * 1024 * 1024, ...rest };
    this.io = { write: (fd, data, offset) => fs.writeSync(fd, data, offset), sync: fdatasync, ...io };
    this.truncatedBytes = this.replay(apply);
    this.fd = fs.openSync(this.opts.file, 'a');
    this.maybeCompact();
  }

  private replay(apply: (r: R) => void): number {
    const { file } = this.opts;
    if (!fs.existsSync(file)) return 0;
    const s = scan(file, this.codec, apply);
    if (s.corrupt) throw new JournalCorruptError(file, s.end, s.size, s.corrupt, this.opts.repairCommand);
    if (s.end < s.size) fs.truncateSync(file, s.end);
    this.fileBytes = s.end;
    return s.size - s.end;
  }

  append(r: R): void {
    const frame = this.frame(r);
    this.buffered.push(frame);
    this.bufferedBytes += frame.length;
  }

  /** Without fsync synchronous; with fsync a promise that resolves once a sync covers every record appended. */
  flush(): Promise<void> | void {
    if (this.failed) throw this.failed;
    this.write();
    this.maybeCompact();
    if (this.opts.fsync) return this.durable();
  }

  failure(): string | undefined {
    return this.failed?.message;
  }

  private write(): void {
    if (this.bufferedBytes === 0) return;
    const data = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    try {
      writeAll(this.fd, data, this.io.write);
    } catch (e) {
      this.fail('write', e);
      try {
        fs.ftruncateSync(this.fd, this.fileBytes); // no partial frame may hide later records
      } catch {}
      throw this.failed;
    }
    this.fileBytes += data.length;
    this.written += data.length;
  }

  private fail(what: string, e: unknown): void {
    this.failed ??= new Error(`journal ${what} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }

  /** Resolves once a finished sync covers everything written so far. */
  private durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.synced >= this.written) return Promise.resolve();
    if (!this.syncing) return this.startSync();
    if (this.syncing.upTo >= this.written) return this.syncing.done;
    return (this.next ??= deferred()).promise;
  }

  private startSync(): Promise<void> {
    const upTo = this.written;
    const fd = this.fd;
    const done = new Promise<void>((resolve) => resolve(this.io.sync(fd))).then(
      () => {
        this.synced = Math.max(this.synced, upTo);
        this.syncSettled();
      },
      (e) => {
        this.fail('sync', e);
        this.syncSettled();
        throw this.failed;
      },
    );
    this.syncing = { upTo, fd, done };
    return done;
  }

  /** The flushes that arrived during the sync get the next one, covering everything written since. */
  private syncSettled(): void {
    this.syncing = undefined;
    const next = this.next;
    this.next = undefined;
    if (next) this.durable().then(next.resolve, next.reject);
  }

  private maybeCompact(): void {
    if (this.fileBytes < Math.max(this.opts.compactMinBytes, this.nextCheck)) return;
    // Compact if the live records take less than this; counting stops once they take more.
    const below = this.fileBytes / this.opts.compactRatio;
    const size = this.codec.size ?? ((r: R) => this.codec.encode(r).length);
    let live = 0;
    for (const r of this.live()) if ((live += FRAME_HEADER + size(r)) >= below) break;
    if (live < below) this.compact();
    else this.nextCheck = 2 * this.fileBytes;
  }

  /** Rewrites the journal as the live state, synced; atomic by rename. */
  compact(): void {
    if (this.failed) throw this.failed;
    this.write();
    const tmp = `${this.opts.file}.compact`;
    const fd = fs.openSync(tmp, 'w');
    let bytes = 0;
    try {
      let chunk: Buffer[] = [];
      let chunkBytes = 0;
      const write = () => {
        writeAll(fd, Buffer.concat(chunk, chunkBytes));
        chunk = [];
        chunkBytes = 0;
      };
      for (const r of this.live()) {
        const f = this.frame(r);
        chunk.push(f);
        chunkBytes += f.length;
        bytes += f.length;
        if (chunkBytes > 1 << 20) write();
      }
      write();
      fs.fsyncSync(fd);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, this.opts.file);
    syncDir(this.opts.file);
    this.retire(this.fd);
    this.fd = fs.openSync(this.opts.file, 'a');
    this.fileBytes = bytes;
    this.synced = this.written; // the new file holds all of it, synced
    this.nextCheck = this.opts.compactRatio * bytes;
  }

  /** Closes the old file after compaction, once a sync running on it has finished. */
  private retire(fd: number): void {
    const close = () => fs.closeSync(fd);
    if (this.syncing?.fd === fd) this.syncing.done.then(close, close);
    else close();
  }

  get bytes(): number {
    return this.fileBytes + this.bufferedBytes;
  }

  async close(): Promise<void> {
    try {
      if (!this.failed) await this.flush();
    } finally {
      while (this.syncing) await this.syncing.done.catch(() => {});
      fs.closeSync(this.fd);
    }
  }

  private frame(r: R): Buffer {
    const body = this.codec.encode(r);
    const frame = Buffer.allocUnsafe(FRAME_HEADER + body.length);
    frame.writeUInt32BE(body.length, 0);
    frame.writeUInt32BE(crc32(body), 4);
    frame.set(body, FRAME_HEADER);
    return frame;
  }
}

/** The journal is read this much at a time, into one buffer: a start holds one chunk of it, not the whole file. */
const READ_CHUNK = 4 << 20;

/** A journal file read forward in chunks into one buffer, reused: what a decoded record keeps, it must copy. */
class FileReader {
  private buf = Buffer.allocUnsafe(READ_CHUNK);
  /** File offset of buf[0], and how many bytes from there buf holds. */
  private start = 0;
  private held = 0;
  readonly size: number;

  constructor(private readonly fd: number) {
    this.size = fs.fstatSync(fd).size;
  }

  /** The file's bytes [from, from + n), if it has them; valid until the next call. */
  bytes(from: number, n: number): Buffer | undefined {
    if (from + n > this.size) return undefined;
    if (from < this.start || from + n > this.start + this.held) this.fill(from, n);
    return this.buf.subarray(from - this.start, from - this.start + n);
  }

  private fill(from: number, n: number): void {
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n); // a record larger than a chunk
    this.start = from;
    this.held = 0;
    const want = Math.min(this.buf.length, this.size - from);
    while (this.held < want) {
      const got = fs.readSync(this.fd, this.buf, this.held, want - this.held, from + this.held);
      if (got === 0) throw new Error(`journal shrank while being read at byte ${from + this.held}`);
      this.held += got;
    }
  }

  /** Whether the file holds only zero bytes from `from` to its end. */
  zerosFrom(from: number): boolean {
    for (let at = from; at < this.size; at += READ_CHUNK) {
      const n = Math.min(READ_CHUNK, this.size - at);
      if (!this.bytes(at, n)!.every((b) => b === 0)) return false;
    }
    return true;
  }
}

/**
 * Reads frames from the start, applying each record. `end` is where the good
 * frames end; `corrupt` says why the frame there is bad when it is not a torn
 * tail. A frame whose CRC holds but whose record does not decode was written
 * whole (a bug, or a newer version's record), so it is corrupt even when last.
 * The codec decodes from the reader's buffer, so its records must own their bytes.
 */
function scan<R>(file: string, codec: JournalCodec<R>, apply: (r: R) => void): { end: number; size: number; corrupt?: string } {
  const fd = fs.openSync(file, 'r');
  try {
    const data = new FileReader(fd);
    const { size } = data;
    let pos = 0;
    while (pos < size) {
      const header = data.bytes(pos, FRAME_HEADER);
      if (!header) return { end: pos, size };
      const crc = header.readUInt32BE(4);
      const body = data.bytes(pos + FRAME_HEADER, header.readUInt32BE(0));
      if (!body) return { end: pos, size };
      const end = pos + FRAME_HEADER + body.length;
      let bad: string;
      if (crc32(body) !== crc) {
        if (end === size) return { end: pos, size };
        bad = 'CRC mismatch';
      } else {
        const r = codec.decode(body);
        if (r.ok) {
          apply(r.value);
          pos = end;
          continue;
        }
        bad = `unreadable record: ${r.error}`;
      }
      // Zeros to the end: the file grew but its data never reached the disk (power loss).
      return data.zerosFrom(pos) ? { end: pos, size } : { end: pos, size, corrupt: bad };
    }
    return { end: pos, size };
  } finally {
    fs.closeSync(fd);
  }
}

export interface JournalRepair {
  /** Where the corrupt record starts; the journal now ends there. */
  offset: number;
  /** Bytes from `offset` to the old end, kept in `keptIn`. */
  keptBytes: number;
  keptIn: string;
  /** Records before `offset`: what the journal still holds. */
  records: number;
}

/**
 * Sets aside everything from a journal's first corrupt record on: copies it to
 * `<file>.corrupt-<offset>` (never overwriting one) and truncates the journal
 * there. Undefined when nothing is corrupt (a torn tail is cut at open). The
 * server must not be running.
 */
export function repairJournal<R>(file: string, codec: JournalCodec<R>): JournalRepair | undefined {
  if (!fs.existsSync(file)) return undefined;
  let records = 0;
  const s = scan(file, codec, () => records++);
  if (!s.corrupt) return undefined;
  const keptIn = corruptFile(file, s.end);
  const side = fs.openSync(keptIn, 'wx');
  try {
    writeAll(side, readTail(file, s.end));
    fs.fsyncSync(side);
  } finally {
    fs.closeSync(side);
  }
  syncDir(keptIn);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.ftruncateSync(fd, s.end);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { offset: s.end, keptBytes: s.size - s.end, keptIn, records };
}

/** The file's bytes from `from` to its end. */
function readTail(file: string, from: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const reader = new FileReader(fd);
    return reader.bytes(from, reader.size - from)!;
  } finally {
    fs.closeSync(fd);
  }
}

function writeAll(fd: number, data: Buffer, write: (fd: number, data: Buffer, offset: number) => number = fs.writeSync): void {
  let off = 0;
  while (off < data.length) off += write(fd, data, off);
}

/** Makes a rename or a new file in the directory durable. */
function syncDir(file: string): void {
  const dir = fs.openSync(file.replace(/[^/]+$/, '') || '.', 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
