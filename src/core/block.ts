// Fixed-size blocks. Every WebSocket message is exactly one block, so an
// observer learns only how many blocks pass, never what they hold. A block
// carries one or more transmissions (batching):
//   u16 count, count × (u16 length, bytes), zero padding to the block size.
// After the handshake every block is sealed with ChaCha20-Poly1305 under a
// per-direction key and a counter nonce: content is blockSize - 16 bytes.
import { allZero, Decoder, ParseError, parse, type Parsed } from './encoding.ts';
import { NONCE_LENGTH, TAG_LENGTH, type CryptoSuite } from './crypto/suite.ts';

const BLOCK_HEADER = 2;
const ITEM_HEADER = 2;

/** Largest transmission a block of this content size can hold. */
export const maxItemLength = (contentSize: number) => contentSize - BLOCK_HEADER - ITEM_HEADER;

export function encodeBlock(items: Uint8Array[], contentSize: number): Uint8Array {
  // Written straight into the zero-filled block: one allocation, no copies of the padding.
  const used = blockUsed(items, contentSize);
  const out = new Uint8Array(contentSize);
  writeBlock(items, out, used);
  return out;
}

/** Bytes the header and items of a block take; throws, before anything is written, if they don't fit. */
function blockUsed(items: Uint8Array[], contentSize: number): number {
  let size = BLOCK_HEADER;
  for (const item of items) {
    if (item.length > 0xffff) throw new RangeError('long bytes over 65535');
    size += ITEM_HEADER + item.length;
  }
  if (size > contentSize) throw new RangeError('block overflow');
  return size;
}

/** Writes header and items at the start of `out` (whose bytes from `used` on must be zero). */
function writeBlock(items: Uint8Array[], out: Uint8Array, used: number): void {
  out[0] = items.length >>> 8;
  out[1] = items.length;
  let pos = BLOCK_HEADER;
  for (const item of items) {
    out[pos] = item.length >>> 8;
    out[pos + 1] = item.length;
    out.set(item, pos + ITEM_HEADER);
    pos += ITEM_HEADER + item.length;
  }
  if (pos !== used) throw new Error('block size mismatch');
}

export function decodeBlock(block: Uint8Array): Parsed<Uint8Array[]> {
  return parse(block, (d: Decoder) => {
    const count = d.u16();
    if (count === 0) throw new ParseError('empty block');
    const items: Uint8Array[] = [];
    for (let i = 0; i < count; i++) items.push(d.long());
    if (!allZero(d.raw(d.remaining, 'padding'))) throw new ParseError('non-zero padding');
    return items;
  });
}

/** Packs items greedily into as few blocks as possible, keeping their order. */
export function packBlocks(items: Uint8Array[], contentSize: number): Uint8Array[] {
  return groupBlocks(items, contentSize).map((batch) => encodeBlock(batch, contentSize));
}

/** The items of each block packBlocks makes, not yet encoded (for BlockCipher.sealItems). */
export function groupBlocks(items: Uint8Array[], contentSize: number): Uint8Array[][] {
  const blocks: Uint8Array[][] = [];
  let batch: Uint8Array[] = [];
  let used = BLOCK_HEADER;
  for (const item of items) {
    const size = ITEM_HEADER + item.length;
    if (size + BLOCK_HEADER > contentSize) throw new RangeError('transmission larger than a block');
    if (used + size > contentSize || batch.length === 0xffff) {
      blocks.push(batch);
      batch = [];
      used = BLOCK_HEADER;
    }
    batch.push(item);
    used += size;
  }
  if (batch.length > 0) blocks.push(batch);
  return blocks;
}

/** One direction of a session's block encryption; the nonce is the block counter. */
export class BlockCipher {
  private counter = 0;
  private readonly nonce = new Uint8Array(NONCE_LENGTH);
  /** Plain block reused by sealItems: bytes from `scratchUsed` on are zero. */
  private scratch: Uint8Array | undefined;
  private scratchUsed = 0;

  constructor(
    private readonly crypto: CryptoSuite,
    private readonly key: Uint8Array,
    readonly blockSize: number,
  ) {}

  get contentSize(): number {
    return this.blockSize - TAG_LENGTH;
  }

  private next(): Uint8Array {
    const c = this.counter++;
    new DataView(this.nonce.buffer).setUint32(4, Math.floor(c / 0x1_0000_0000));
    new DataView(this.nonce.buffer).setUint32(8, c >>> 0);
    return this.nonce;
  }

  seal(content: Uint8Array): Uint8Array {
    return this.crypto.seal(this.key, this.next(), content);
  }

  /**
   * seal(encodeBlock(items, contentSize)), with the plain block encoded into a
   * buffer this cipher reuses rather than a new one per block: blocks are
   * large, and allocating them is what drives the garbage collector on a busy
   * server. (The suite's seal returns new bytes; it keeps nothing of its input.)
   */
  sealItems(items: Uint8Array[]): Uint8Array {
    const used = blockUsed(items, this.contentSize);
    const s = (this.scratch ??= new Uint8Array(this.contentSize));
    if (used < this.scratchUsed) s.fill(0, used, this.scratchUsed);
    writeBlock(items, s, used);
    this.scratchUsed = used;
    return this.seal(s);
  }

  /** Undefined if the block was altered, reordered, replayed or has the wrong size. */
  open(block: Uint8Array): Uint8Array | undefined {
    if (block.length !== this.blockSize) return undefined;
    return this.crypto.open(this.key, this.next(), block);
  }
}
