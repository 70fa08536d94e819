// Append-only journal of records, shared by the stores of every Hush server.
// Frame: u32 length, u32 CRC-32 of the record, record. `flush()` writes every
// record appended since the last flush in one write(2), so once it returns the
// records survive kill -9 (and power loss with fsync). On open the file is
// replayed through `apply`; a torn or corrupt tail (a crash mid-write) is cut
// off and reported. Compaction rewrites the live state (`live()`) to a new file
// and renames it over the old one once the journal is `compactRatio` times the
// live size. A failed write cuts the file back to its last good length and
// fails every later flush: memory is ahead of disk, so the process must restart.
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import type { Parsed } from '../core/encoding.ts';

export interface JournalOptions {
  file: string;
  /** fdatasync on every flush: survives power loss, not only process death. */
  fsync?: boolean;
  /** Compact when the journal is this many times the size of its live records... */
  compactRatio?: number;
  /** ...and at least this large. */
  compactMinBytes?: number;
}

/** Where a store's changes go after they are applied in memory. */
export interface RecordLog<R> {
  append(r: R): void;
  /** The durability barrier: resolves when every appended record is stored. */
  flush(): Promise<void> | void;
  close(): Promise<void> | void;
}

export interface JournalCodec<R> {
  encode(r: R): Uint8Array;
  decode(b: Uint8Array): Parsed<R>;
}

const FRAME_HEADER = 8;

export class Journal<R> implements RecordLog<R> {
  private fd: number;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private fileBytes = 0;
  /** Journal size at which the live size is measured again. */
  private nextCheck = 0;
  private failure: Error | undefined;
  /** Bytes cut off a torn tail when opening. */
  readonly truncatedBytes: number;
  private readonly opts: Required<JournalOptions>;

  constructor(
    opts: JournalOptions,
    private readonly codec: JournalCodec<R>,
    apply: (r: R) => void,
    private readonly live: () => Iterable<R>,
  ) {
    this.opts = { fsync: false, compactRatio: 4, compactMinBytes: 64 * 1024 * 1024, ...opts };
    this.truncatedBytes = this.replay(apply);
    this.fd = fs.openSync(this.opts.file, 'a');
    this.maybeCompact();
  }

  private replay(apply: (r: R) => void): number {
    if (!fs.existsSync(this.opts.file)) return 0;
    const data = fs.readFileSync(this.opts.file);
    let pos = 0;
    while (pos + FRAME_HEADER <= data.length) {
      const len = data.readUInt32BE(pos);
      const sum = data.readUInt32BE(pos + 4);
      if (pos + FRAME_HEADER + len > data.length) break;
      // A copy, so the state keeps only its records alive, not the whole file buffer.
      const body = new Uint8Array(data.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + len));
      if (crc32(body) !== sum) break;
      const r = this.codec.decode(body);
      if (!r.ok) break;
      apply(r.value);
      pos += FRAME_HEADER + len;
    }
    const cut = data.length - pos;
    if (cut > 0) fs.truncateSync(this.opts.file, pos);
    this.fileBytes = pos;
    return cut;
  }

  append(r: R): void {
    const frame = this.frame(r);
    this.buffered.push(frame);
    this.bufferedBytes += frame.length;
  }

  flush(): void {
    if (this.failure) throw this.failure;
    if (this.bufferedBytes === 0) return;
    const data = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    try {
      writeAll(this.fd, data);
      if (this.opts.fsync) fs.fdatasyncSync(this.fd);
    } catch (e) {
      this.failure = e as Error;
      try {
        fs.ftruncateSync(this.fd, this.fileBytes); // no partial frame may hide later records
      } catch {}
      throw e;
    }
    this.fileBytes += data.length;
    this.maybeCompact();
  }

  private maybeCompact(): void {
    if (this.fileBytes < Math.max(this.opts.compactMinBytes, this.nextCheck)) return;
    let live = 0;
    for (const r of this.live()) live += FRAME_HEADER + this.codec.encode(r).length;
    if (this.fileBytes > this.opts.compactRatio * live) this.compact();
    else this.nextCheck = 2 * this.fileBytes;
  }

  /** Rewrites the journal as the live state; atomic by rename. */
  compact(): void {
    this.flush();
    const tmp = `${this.opts.file}.compact`;
    const fd = fs.openSync(tmp, 'w');
    let bytes = 0;
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
    fs.closeSync(fd);
    fs.renameSync(tmp, this.opts.file);
    const dir = fs.openSync(this.opts.file.replace(/[^/]+$/, '') || '.', 'r');
    fs.fsyncSync(dir);
    fs.closeSync(dir);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.opts.file, 'a');
    this.fileBytes = bytes;
    this.nextCheck = this.opts.compactRatio * bytes;
  }

  get bytes(): number {
    return this.fileBytes + this.bufferedBytes;
  }

  close(): void {
    if (!this.failure) this.flush();
    fs.closeSync(this.fd);
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

function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off);
}
