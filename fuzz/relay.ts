// Relay inputs: every relay command, encoded by the relay's own encoder with
// fuzzed fields, about queues the session really has (so mutated commands
// reach the handlers behind the authenticator check), wrapped by commands.ts.
import type { CryptoSuite, KeyPair } from '../src/core/crypto/suite.ts';
import {
  decodeResponse,
  encodeCommand,
  ID_LENGTH,
  MAX_MESSAGE_BYTES,
  MSG_ID_LENGTH,
  NMSG_NONCE_LENGTH,
  type RelayCommand,
} from '../src/relay/protocol.ts';
import { fuzzTransmission, idField, keyField, otherKey, passwordField, randomTransmission, unknownTag, type Cmd } from './commands.ts';
import type { Prng } from './prng.ts';
import { tagOf, type FuzzSession } from './session.ts';

interface Queue {
  rcvId: Uint8Array;
  sndId: Uint8Array;
  rcvAuth: KeyPair;
  notifierId?: Uint8Array;
  ntfAuth: KeyPair;
  /** Set once KEY secured the queue: SENDs must then be signed with it. */
  sndAuth?: KeyPair;
  /** Message IDs seen in MSGs, newest last (for ACK). */
  msgIds: Uint8Array[];
}

/** Valid creations left (NEW that would make a queue): the relay's state grows with each. */
export interface Creations {
  take(): boolean;
}

const EMPTY = new Uint8Array(0);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const utf8 = (s: string) => new TextEncoder().encode(s);

/** A relay session's fuzzer: the queues it set up, and a draw of one fuzzed transmission at a time. */
export class RelayFuzz {
  private readonly queues: Queue[] = [];
  private readonly byRcvId = new Map<string, Queue>();
  /** Spare keys: NEW's and NSUBS's authorizing keys, and "another key" for wrong authenticators. */
  private readonly keys: KeyPair[];

  private constructor(
    private readonly s: FuzzSession,
    private readonly r: Prng,
    crypto: CryptoSuite,
    private readonly creations: Creations,
    /** The relay's creation password (ASCII), if it has one. */
    private readonly password: Uint8Array | undefined,
  ) {
    this.keys = Array.from({ length: 4 }, () => crypto.x25519KeyPair());
    s.onItem = (_corrId, entityId, command) => {
      if (tagOf(command) !== 'MSG') return;
      const m = decodeResponse(command);
      const q = this.byRcvId.get(hex(entityId));
      if (m.ok && m.value.type === 'MSG' && q) q.msgIds = [...q.msgIds.slice(-3), m.value.msgId];
    };
  }

  /**
   * Creates a few queues (notifiers, a secured one, messages waiting) with
   * good commands, as many as the relay allows; the last one is the victim.
   */
  static async setUp(s: FuzzSession, r: Prng, crypto: CryptoSuite, creations: Creations, password?: string): Promise<RelayFuzz> {
    const f = new RelayFuzz(s, r, crypto, creations, password === undefined ? undefined : utf8(password));
    for (let i = 0; i < 4; i++) {
      const rcvAuth = crypto.x25519KeyPair();
      const ntfAuth = crypto.x25519KeyPair();
      const withNtf = i !== 2;
      const reply = await s.call(
        EMPTY,
        encodeCommand({
          type: 'NEW',
          rcvAuthKey: rcvAuth.publicKey,
          rcvDhKey: crypto.x25519KeyPair().publicKey,
          ...(withNtf ? { ntf: { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: crypto.x25519KeyPair().publicKey } } : {}),
          ...(f.password ? { password: f.password } : {}),
        }),
        rcvAuth.privateKey,
      );
      const ids = reply && decodeResponse(reply);
      if (!ids?.ok || ids.value.type !== 'IDS') continue; // refused (RATE…): fuzz with what there is
      const q: Queue = { rcvId: ids.value.rcvId, sndId: ids.value.sndId, rcvAuth, ntfAuth, msgIds: [] };
      if (ids.value.ntf) q.notifierId = ids.value.ntf.notifierId;
      f.queues.push(q);
      f.byRcvId.set(hex(q.rcvId), q);
    }
    const secured = f.queues[0];
    if (secured) {
      const sndAuth = crypto.x25519KeyPair();
      const ok = await s.call(secured.rcvId, encodeCommand({ type: 'KEY', sndAuthKey: sndAuth.publicKey }), secured.rcvAuth.privateKey);
      if (ok && tagOf(ok) === 'OK') secured.sndAuth = sndAuth;
    }
    for (const q of f.queues)
      await s.call(q.sndId, encodeCommand({ type: 'SEND', notify: true, body: r.bytes(16) }), q.sndAuth?.privateKey);
    return f;
  }

  /** What the set-up made, for the run's figures: the fuzzed commands reach this far. */
  get depth(): Record<string, number> {
    return { queues: this.queues.length, secured: this.queues.filter((q) => q.sndAuth).length };
  }

  /** One input: a fuzzed command, or (sometimes) bytes with no structure. */
  next(): Uint8Array {
    const { r, s } = this;
    if (r.chance(0.05)) return randomTransmission(r, s.maxItem);
    const other = this.keys.map((k) => k.privateKey);
    return fuzzTransmission(s, r, this.command(), other);
  }

  private command(): Cmd {
    const { r } = this;
    // Commands that change a queue for good (DEL, OFF, KEY, NKEY, NDEL) go to the victim,
    // so that the others' commands keep reaching their handlers all session long.
    const victim = this.queues.length > 1 ? this.queues.at(-1) : undefined;
    const keepers = victim ? this.queues.slice(0, -1) : this.queues;
    const q: Queue | undefined = keepers.length > 0 ? r.pick(keepers) : undefined;
    const spare = r.pick(this.keys);
    const rcv = (c: RelayCommand, lasting = false): Cmd => {
      const to = lasting ? (victim ?? q) : q;
      return { entity: to?.rcvId ?? r.bytes(ID_LENGTH), command: encodeCommand(c), signer: to?.rcvAuth.privateKey };
    };
    const ntf = (c: RelayCommand, signed: boolean): Cmd => ({
      entity: q?.notifierId ?? r.bytes(ID_LENGTH),
      command: encodeCommand(c),
      signer: signed ? q?.ntfAuth.privateKey : undefined,
    });
    const kind = r.weighted<string>([
      [4, 'NEW'],
      [7, 'SUB'],
      [7, 'GET'],
      [7, 'ACK'],
      [4, 'KEY'],
      [4, 'NKEY'],
      [3, 'NDEL'],
      [1, 'OFF'],
      [1, 'DEL'],
      [22, 'SEND'],
      [6, 'NSUB'],
      [3, 'NSUBS'],
      [6, 'NACK'],
      [3, 'NUNS'],
      [4, 'PING'],
      [3, 'unknown'],
    ]);
    switch (kind) {
      case 'NEW': {
        // Signed by the key it names only while creations are left (each one is a queue the relay
        // keeps); else by another key: AUTH, after the checks that come before.
        const named = r.chance(0.2) && this.creations.take();
        const c: RelayCommand = {
          type: 'NEW',
          rcvAuthKey: keyField(r, spare.publicKey),
          rcvDhKey: keyField(r, this.keys[0]!.publicKey),
          ...(r.chance(0.5) ? { ntf: { ntfAuthKey: keyField(r, spare.publicKey), rcvNtfDhKey: keyField(r, this.keys[1]!.publicKey) } } : {}),
          ...passwordField(r, this.password),
        };
        return { entity: EMPTY, command: encodeCommand(c), signer: (named ? spare : otherKey(this.keys, spare)).privateKey };
      }
      case 'SUB':
      case 'GET':
        return rcv({ type: kind });
      case 'NDEL':
      case 'OFF':
      case 'DEL':
        return rcv({ type: kind }, true);
      case 'ACK':
        return rcv({ type: 'ACK', msgId: idField(r, MSG_ID_LENGTH, q?.msgIds.at(-1)) });
      case 'KEY':
        return rcv({ type: 'KEY', sndAuthKey: keyField(r, q?.sndAuth?.publicKey ?? spare.publicKey) }, q?.sndAuth === undefined);
      case 'NKEY':
        return rcv({ type: 'NKEY', ntfAuthKey: keyField(r, spare.publicKey), rcvNtfDhKey: keyField(r, this.keys[1]!.publicKey) }, true);
      case 'SEND':
        return {
          entity: q?.sndId ?? r.bytes(ID_LENGTH),
          command: encodeCommand({ type: 'SEND', notify: r.chance(0.5), body: r.bytes(this.bodyLength()) }),
          signer: q?.sndAuth?.privateKey,
        };
      case 'NSUB':
        return ntf({ type: 'NSUB' }, true);
      case 'NACK':
        return ntf({ type: 'NACK', nonce: idField(r, NMSG_NONCE_LENGTH) }, false);
      case 'NUNS':
        return ntf({ type: 'NUNS' }, false);
      case 'NSUBS':
        return { entity: EMPTY, command: encodeCommand({ type: 'NSUBS', serviceKey: keyField(r, spare.publicKey) }), signer: spare.privateKey };
      case 'PING':
        return { entity: EMPTY, command: encodeCommand({ type: 'PING' }) };
      default:
        return { entity: q?.rcvId ?? EMPTY, command: encodeCommand({ type: unknownTag(r) } as unknown as RelayCommand), signer: q?.rcvAuth.privateKey };
    }
  }

  /** Mostly small bodies; sometimes around the largest one the relay takes. */
  private bodyLength(): number {
    const { r } = this;
    if (r.chance(0.003)) return MAX_MESSAGE_BYTES + r.range(-2, 2);
    return r.chance(0.95) ? r.int(256) : r.int(4096);
  }
}
