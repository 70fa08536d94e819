// Journal store: the memory store plus an append-only file of StoreRecords.
// Frame: u32 length, u32 CRC-32 of the record, record. flush() writes every
// record since the last flush in one write(2) before any reply is sent, so an
// acknowledged change survives kill -9 (and power loss with fsync: true).
// On open the journal is replayed; a torn or corrupt tail (a crash mid-write)
// is cut off. Compaction rewrites the live state to a new file and renames it
// over the old one, when the journal has grown to several times the live size.
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { MemoryQueueStore } from './memory.ts';
import { decodeRecord, encodeRecord, type StoreRecord } from './records.ts';

export interface JournalOptions {
  dir: string;
  /** fdatasync on every flush: survives power loss, not only process death. */
  fsync?: boolean;
  /** Compact when the journal is this many times the size of its live records... */
  compactRatio?: number;
  /** ...and at least this large. */
  compactMinBytes?: number;
}

const FRAME_HEADER = 8;
const FILE = 'relay.journal';

export class JournalQueueStore extends MemoryQueueStore {
  private fd: number;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private fileBytes = 0;
  /** Journal size at which the live size is measured again. */
  private nextCheck = 0;
  private replaying = false;
  /** Bytes cut off a torn tail when opening. */
  readonly truncatedBytes: number;

  private constructor(private readonly opts: Required<JournalOptions>) {
    super();
    fs.mkdirSync(opts.dir, { recursive: true });
    const file = path.join(opts.dir, FILE);
    this.truncatedBytes = this.replay(file);
    this.fd = fs.openSync(file, 'a');
    this.maybeCompact();
  }

  static open(opts: JournalOptions): JournalQueueStore {
    return new JournalQueueStore({ fsync: false, compactRatio: 4, compactMinBytes: 64 << 20, ...opts });
  }

  private replay(file: string): number {
    if (!fs.existsSync(file)) return 0;
    const data = fs.readFileSync(file);
    let pos = 0;
    this.replaying = true;
    while (pos + FRAME_HEADER <= data.length) {
      const len = data.readUInt32BE(pos);
      const sum = data.readUInt32BE(pos + 4);
      if (pos + FRAME_HEADER + len > data.length) break;
      const body = data.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + len);
      if (crc32(body) !== sum) break;
      const r = decodeRecord(new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
      if (!r.ok) break;
      this.apply(r.value);
      pos += FRAME_HEADER + len;
    }
    this.replaying = false;
    const cut = data.length - pos;
    if (cut > 0) fs.truncateSync(file, pos);
    this.fileBytes = pos;
    return cut;
  }

  private maybeCompact(): void {
    if (this.fileBytes < Math.max(this.opts.compactMinBytes, this.nextCheck)) return;
    let live = 0;
    for (const r of this.liveRecords()) live += FRAME_HEADER + encodeRecord(r).length;
    if (this.fileBytes > this.opts.compactRatio * live) this.compact();
    else this.nextCheck = 2 * this.fileBytes;
  }

  protected override persist(r: StoreRecord): void {
    if (this.replaying) return;
    const frame = frameOf(r);
    this.buffered.push(frame);
    this.bufferedBytes += frame.length;
  }

  override async flush(): Promise<void> {
    this.flushSync();
  }

  private flushSync(): void {
    if (this.bufferedBytes === 0) return;
    const data = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    let off = 0;
    while (off < data.length) off += fs.writeSync(this.fd, data, off);
    if (this.opts.fsync) fs.fdatasyncSync(this.fd);
    this.fileBytes += data.length;
    this.maybeCompact();
  }

  /** Rewrites the journal as the live state; atomic by rename. */
  compact(): void {
    this.flushSync();
    const file = path.join(this.opts.dir, FILE);
    const tmp = `${file}.compact`;
    const fd = fs.openSync(tmp, 'w');
    let bytes = 0;
    let chunk: Buffer[] = [];
    let chunkBytes = 0;
    const write = () => {
      const data = Buffer.concat(chunk, chunkBytes);
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off);
      chunk = [];
      chunkBytes = 0;
    };
    for (const r of this.liveRecords()) {
      const f = frameOf(r);
      chunk.push(f);
      chunkBytes += f.length;
      bytes += f.length;
      if (chunkBytes > 1 << 20) write();
    }
    write();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    const dirFd = fs.openSync(this.opts.dir, 'r');
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(file, 'a');
    this.fileBytes = bytes;
    this.nextCheck = this.opts.compactRatio * bytes;
  }

  get journalBytes(): number {
    return this.fileBytes + this.bufferedBytes;
  }

  override async close(): Promise<void> {
    this.flushSync();
    fs.closeSync(this.fd);
  }
}

function frameOf(r: StoreRecord): Buffer {
  const body = encodeRecord(r);
  const frame = Buffer.allocUnsafe(FRAME_HEADER + body.length);
  frame.writeUInt32BE(body.length, 0);
  frame.writeUInt32BE(crc32(body), 4);
  frame.set(body, FRAME_HEADER);
  return frame;
}
