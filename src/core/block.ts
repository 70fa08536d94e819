// Fixed-size blocks. Every WebSocket message is exactly one block, so an
// observer learns only how many blocks pass, never what they hold. A block
// carries one or more transmissions (batching):
//   u16 count, count × (u16 length, bytes), zero padding to the block size.
// After the handshake every block is sealed with ChaCha20-Poly1305 under a
// per-direction key and a counter nonce: content is blockSize - 16 bytes.
import { Decoder, ParseError, parse, type Parsed } from './encoding.ts';
import { NONCE_LENGTH, TAG_LENGTH, type CryptoSuite } from './crypto/suite.ts';

const BLOCK_HEADER = 2;
const ITEM_HEADER = 2;

/** Largest transmission a block of this content size can hold. */
export const maxItemLength = (contentSize: number) => contentSize - BLOCK_HEADER - ITEM_HEADER;

export function encodeBlock(items: Uint8Array[], contentSize: number): Uint8Array {
  // Written straight into the zero-filled block: one allocation, no copies of the padding.
  let size = BLOCK_HEADER;
  for (const item of items) {
    if (item.length > 0xffff) throw new RangeError('long bytes over 65535');
    size += ITEM_HEADER + item.length;
  }
  if (size > contentSize) throw new RangeError('block overflow');
  const out = new Uint8Array(contentSize);
  const view = new DataView(out.buffer);
  view.setUint16(0, items.length);
  let pos = BLOCK_HEADER;
  for (const item of items) {
    view.setUint16(pos, item.length);
    out.set(item, pos + ITEM_HEADER);
    pos += ITEM_HEADER + item.length;
  }
  return out;
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

/** True if every byte is 0. An indexed loop over 32-bit words where aligned: the padding is most of every block. */
function allZero(b: Uint8Array): boolean {
  let acc = 0;
  let i = 0;
  const head = Math.min(b.length, (4 - (b.byteOffset & 3)) & 3);
  for (; i < head; i++) acc |= b[i]!;
  const words = (b.length - i) >>> 2;
  if (words > 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset + i, words);
    for (let j = 0; j < words; j++) acc |= w[j]!;
    i += words * 4;
  }
  for (; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/** Packs items greedily into as few blocks as possible, keeping their order. */
export function packBlocks(items: Uint8Array[], contentSize: number): Uint8Array[] {
  const blocks: Uint8Array[] = [];
  let batch: Uint8Array[] = [];
  let used = BLOCK_HEADER;
  for (const item of items) {
    const size = ITEM_HEADER + item.length;
    if (size + BLOCK_HEADER > contentSize) throw new RangeError('transmission larger than a block');
    if (used + size > contentSize || batch.length === 0xffff) {
      blocks.push(encodeBlock(batch, contentSize));
      batch = [];
      used = BLOCK_HEADER;
    }
    batch.push(item);
    used += size;
  }
  if (batch.length > 0) blocks.push(encodeBlock(batch, contentSize));
  return blocks;
}

/** One direction of a session's block encryption; the nonce is the block counter. */
export class BlockCipher {
  private counter = 0;
  private readonly nonce = new Uint8Array(NONCE_LENGTH);

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

  /** Undefined if the block was altered, reordered, replayed or has the wrong size. */
  open(block: Uint8Array): Uint8Array | undefined {
    if (block.length !== this.blockSize) return undefined;
    return this.crypto.open(this.key, this.next(), block);
  }
}
