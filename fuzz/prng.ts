// A seeded PRNG (sfc32) and the generic byte mutations every fuzz target uses.
// Seeded, so a run's inputs come back from its printed seed: each session draws
// from its own stream, split from the run's seed by the session's name.
import { concat } from '../src/core/encoding.ts';

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = '') {
    // splitmix-style mixing of the seed and the stream name into the four words
    let h = seed >>> 0;
    for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x9e3779b1) >>> 0;
    const mix = () => {
      h = (h + 0x6d2b79f5) >>> 0;
      let t = Math.imul(h ^ (h >>> 15), h | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (t ^ (t >>> 14)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** One of `choices` by weight: [[weight, value], …]. */
  weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of choices) total += w;
    let r = this.int(total);
    for (const [w, v] of choices) if ((r -= w) < 0) return v;
    return choices.at(-1)![1];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      const v = this.u32();
      out[i] = v;
      out[i + 1] = v >>> 8;
      out[i + 2] = v >>> 16;
      out[i + 3] = v >>> 24;
    }
    for (; i < n; i++) out[i] = this.u32();
    return out;
  }

  /** A length that is mostly small, sometimes at or around the interesting bounds given. */
  length(max: number, edges: readonly number[] = []): number {
    if (edges.length > 0 && this.chance(0.3)) return Math.max(0, Math.min(max, this.pick(edges) + this.range(-1, 1)));
    return this.chance(0.8) ? this.int(Math.min(max, 64) + 1) : this.int(max + 1);
  }
}

/** Bytes that decoders treat specially: length prefixes at their limits, zero, all ones. */
const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x20, 0x21, 0x7e, 0x18, 0x19, 0x1f, 0x40];

/** One to a few random edits of `b` (a new array): bit flips, interesting bytes, cuts, inserts, duplications. */
export function mutate(r: Prng, b: Uint8Array, maxLength = 0xffff): Uint8Array {
  let out: Uint8Array = b.slice();
  const edits = r.range(1, 4);
  for (let e = 0; e < edits; e++) {
    const at = out.length === 0 ? 0 : r.int(out.length);
    switch (r.int(8)) {
      case 0: // flip a bit
        if (out.length > 0) out[at]! ^= 1 << r.int(8);
        break;
      case 1: // an interesting byte
        if (out.length > 0) out[at] = r.pick(INTERESTING);
        break;
      case 2: // a random byte
        if (out.length > 0) out[at] = r.u32();
        break;
      case 3: // truncate
        out = out.slice(0, at);
        break;
      case 4: {
        // insert random bytes
        const ins = r.bytes(r.range(1, 16));
        out = concat(out.subarray(0, at), ins, out.subarray(at));
        break;
      }
      case 5: {
        // delete a run
        const n = r.range(1, 8);
        out = concat(out.subarray(0, at), out.subarray(at + n));
        break;
      }
      case 6: {
        // duplicate a run
        const n = r.range(1, 32);
        out = concat(out.subarray(0, at + n), out.subarray(at, at + n), out.subarray(at + n));
        break;
      }
      default:
        // append junk
        out = concat(out, r.bytes(r.range(1, 8)));
    }
  }
  return out.length > maxLength ? out.subarray(0, maxLength) : out;
}
