// Transmissions with mutated fields, the same for every protocol: a command
// (encoded by the protocol's own encoder, its fields already fuzzed) is wrapped
// with a corrId, an entity ID and an authenticator each of which may be right
// or wrong, and sometimes the bytes are mutated before or after signing.
import { AUTH_LENGTH, MAX_CORR_ID, MAX_ENTITY_ID } from '../src/core/transmission.ts';
import { concat } from '../src/core/encoding.ts';
import { mutate, type Prng } from './prng.ts';
import { LOW_ORDER_KEYS } from './frames.ts';
import type { FuzzSession } from './session.ts';

/** A command for the fuzzer to wrap: the entity it names and the private key that authorizes it, if any. */
export interface Cmd {
  entity: Uint8Array;
  command: Uint8Array;
  /** The X25519 private key whose authenticator the server accepts for it; none: it takes no authenticator. */
  signer?: Uint8Array | undefined;
}

const EMPTY = new Uint8Array(0);

/** A 32-byte key field: `own` (the right one) most often, else random, low-order, or the wrong length. */
export function keyField(r: Prng, own?: Uint8Array): Uint8Array {
  return r.weighted<() => Uint8Array>([
    [own ? 6 : 0, () => own!],
    [3, () => r.bytes(32)],
    [2, () => r.pick(LOW_ORDER_KEYS)],
    [1, () => r.bytes(r.pick([0, 1, 16, 31, 33, 64, 255]))],
  ])();
}

/** An ID field of `length` bytes: a known one most often, else random, or the wrong length. */
export function idField(r: Prng, length: number, known?: Uint8Array): Uint8Array {
  return r.weighted<() => Uint8Array>([
    [known ? 6 : 0, () => known!],
    [3, () => r.bytes(length)],
    [1, () => r.bytes(r.length(255, [0, length - 1, length + 1]))],
  ])();
}

/** A creation password field: the right one (if the server has one) most often, else none, or wrong bytes (empty and too long too). */
export function passwordField(r: Prng, right: Uint8Array | undefined): { password?: Uint8Array } {
  return r.weighted<() => { password?: Uint8Array }>([
    [right ? 6 : 0, () => ({ password: right! })],
    [2, () => ({})],
    [2, () => ({ password: r.bytes(r.length(64, [0, 1, 64, 65])) })],
  ])();
}

/** A key of `keys` that is not `k`. */
export const otherKey = <K>(keys: readonly K[], k: K): K => keys[(keys.indexOf(k) + 1) % keys.length]!;

/** Printable ASCII (what tags and addresses are made of), or any bytes. */
export function text(r: Prng, max: number): string {
  const n = r.length(max);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(r.chance(0.9) ? r.range(0x21, 0x7e) : r.int(256));
  return s;
}

/** A tag no command has. */
export function unknownTag(r: Prng): string {
  return text(r, 8) || 'X';
}

/** Random bytes of a transmission's size: no structure at all. */
export function randomTransmission(r: Prng, max: number): Uint8Array {
  return r.bytes(r.length(max, [0, 1, 2, 3, 33, 34]));
}

/**
 * `c` as a transmission on session `s`, each part possibly wrong: corrId
 * (empty, too long), entity (empty, random, too long), authenticator (right,
 * another key's, random, none, a bad length), bytes mutated before signing or
 * after.
 */
export function fuzzTransmission(s: FuzzSession, r: Prng, c: Cmd, otherKeys: readonly Uint8Array[]): Uint8Array {
  const corrId = r.weighted<() => Uint8Array>([
    [34, () => s.nextCorrId()],
    [2, () => EMPTY],
    [2, () => r.bytes(r.range(1, MAX_CORR_ID))],
    [1, () => r.bytes(r.range(MAX_CORR_ID + 1, MAX_CORR_ID + 16))],
  ])();
  const entity = r.weighted<() => Uint8Array>([
    [30, () => c.entity],
    [2, () => EMPTY],
    [2, () => r.bytes(24)],
    [1, () => r.bytes(r.range(MAX_ENTITY_ID + 1, MAX_ENTITY_ID + 32))],
  ])();
  const command = r.chance(0.08) ? mutate(r, c.command, s.maxItem - 128) : c.command;
  // 'right': signed by the signer, or none for a command that takes none
  const auth = r.weighted<'right' | 'other' | 'random' | 'none' | 'length'>([
    [12, 'right'],
    [otherKeys.length > 0 ? 2 : 0, 'other'],
    [2, 'random'],
    [c.signer ? 3 : 0, 'none'],
    [1, 'length'],
  ]);
  let t: Uint8Array;
  switch (auth) {
    case 'right':
      t = s.transmission(corrId, entity, command, c.signer);
      break;
    case 'other':
      t = s.transmission(corrId, entity, command, r.pick(otherKeys));
      break;
    case 'none':
      t = s.transmission(corrId, entity, command);
      break;
    default: {
      // the authenticator field written by hand: random bytes of the right length, or of a wrong one
      const signed = s.transmission(corrId, entity, command).subarray(1);
      const a = r.bytes(auth === 'random' ? AUTH_LENGTH : r.pick([1, 16, 31, 33, 64, 255]));
      t = concat(Uint8Array.of(a.length), a, signed);
    }
  }
  if (r.chance(0.04)) t = mutate(r, t, s.maxItem);
  return t.length > s.maxItem ? t.subarray(0, s.maxItem) : t;
}

/**
 * Packs generated transmissions into blocks: each block is filled from `next`
 * until it (less room for the sentinel) is full or holds `maxItems`; a
 * transmission that does not fit goes first into the next block.
 */
export class Packer {
  private carry: Uint8Array | undefined;

  constructor(
    private readonly maxItems: number,
    private readonly next: () => Uint8Array,
  ) {}

  fill(s: FuzzSession): Uint8Array[] {
    const room = s.contentSize - 2 - 64; // the block's count, the sentinel and its length prefix
    const items: Uint8Array[] = [];
    let used = 0;
    while (items.length < this.maxItems) {
      const t = this.carry ?? this.next();
      this.carry = undefined;
      if (2 + t.length > room) continue; // fits no block with the sentinel: dropped
      if (used + 2 + t.length > room) {
        this.carry = t;
        break;
      }
      items.push(t);
      used += 2 + t.length;
    }
    return items;
  }
}
