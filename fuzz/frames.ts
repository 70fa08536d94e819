// Handshake and block inputs, the same for every protocol: client hellos
// that are bad in one way or another (or good), and blocks that are not good
// blocks. Each is one input; the server must close the connection, or answer
// the PING that follows if it took the input as good.
import { encodeBlock, maxItemLength } from '../src/core/block.ts';
import { SMALL_ORDER_KEYS } from '../src/core/keys.ts';
import { concat } from '../src/core/encoding.ts';
import { encodeClientHello } from '../src/core/handshake.ts';
import { encodeTransmission, signedPart } from '../src/core/transmission.ts';
import { mutate, type Prng } from './prng.ts';
import { dial, keysFor, SENTINEL, type BadReply, type FuzzSession, type Outcome, type Target } from './session.ts';

const EMPTY = new Uint8Array(0);

/** X25519 public keys of small order, also with the (ignored) top bit set: servers must refuse them all. */
export const LOW_ORDER_KEYS: readonly Uint8Array[] = SMALL_ORDER_KEYS.flatMap((k) => [k, Uint8Array.from(k, (b, i) => (i === 31 ? b | 0x80 : b))]);

const HELLO_KINDS = [
  'valid',
  'random-block',
  'short-frame',
  'long-frame',
  'empty-frame',
  'text-frame',
  'version',
  'fingerprint',
  'client-key',
  'mutated-hello',
  'mutated-block',
  'two-items',
  'bad-padding',
  'hello-then-garbage',
] as const;

/**
 * One handshake input: a new connection whose client hello is `kind` of bad
 * (or good), then a PING sealed under the keys a good hello makes. The server
 * must close, or (if it took the hello) answer the PING.
 */
export async function helloInput(t: Target, r: Prng, bad: BadReply): Promise<{ outcome: Outcome; input: Uint8Array; kind: string }> {
  const kind = r.pick(HELLO_KINDS);
  const d = await dial(t);
  if (!d.hello) {
    d.ws.terminate();
    return { outcome: d.closed ? 'closed' : 'hang', input: EMPTY, kind };
  }
  const keys = keysFor(t, d.hello, bad);
  if (!keys) {
    d.ws.terminate();
    return { outcome: 'answered', input: EMPTY, kind };
  }
  const { blockSize } = t;
  const good = keys.clientHello;
  const block = (items: Uint8Array[]) => encodeBlock(items, blockSize);
  const hello = (h: { version?: number; fingerprint?: Uint8Array; clientKey?: Uint8Array }) =>
    block([encodeClientHello({ version: keys.version, fingerprint: t.fingerprint, clientKey: keys.clientKey.publicKey, ...h })]);
  let frame: Uint8Array | string;
  switch (kind) {
    case 'valid':
      frame = block([good]);
      break;
    case 'random-block':
      frame = r.bytes(blockSize);
      break;
    case 'short-frame':
      frame = r.chance(0.5) ? block([good]).subarray(0, r.int(blockSize)) : r.bytes(r.int(blockSize));
      break;
    case 'long-frame':
      frame = concat(block([good]), r.bytes(r.range(1, r.chance(0.5) ? 16 : blockSize)));
      break;
    case 'empty-frame':
      frame = EMPTY;
      break;
    case 'text-frame':
      frame = r.chance(0.5) ? 'hello' : Buffer.from(block([good])).toString('latin1');
      break;
    case 'version':
      frame = hello({ version: r.pick([0, t.versions[1] + 1, t.versions[0] - 1, 0xffff, r.int(0x10000)]) & 0xffff });
      break;
    case 'fingerprint':
      frame = hello({ fingerprint: r.chance(0.5) ? r.bytes(32) : mutate(r, t.fingerprint, 255) });
      break;
    case 'client-key':
      frame = hello({ clientKey: r.chance(0.7) ? r.pick(LOW_ORDER_KEYS) : r.bytes(r.pick([0, 1, 31, 33, 64])) });
      break;
    case 'mutated-hello': {
      const m = mutate(r, good, maxItemLength(blockSize));
      frame = block([m]);
      break;
    }
    case 'mutated-block':
      frame = mutate(r, block([good]), 2 * blockSize);
      break;
    case 'two-items':
      frame = block(r.chance(0.5) ? [good, good] : [good, r.bytes(r.int(64))]);
      break;
    case 'bad-padding': {
      const b = block([good]);
      b[r.range(2 + 2 + good.length, blockSize - 1)] = r.range(1, 255);
      frame = b;
      break;
    }
    default: {
      // a good hello, then a block that is not sealed
      d.ws.send(block([good]));
      frame = r.bytes(blockSize);
    }
  }
  const input = typeof frame === 'string' ? new TextEncoder().encode(frame) : frame;
  const outcome = await new Promise<Outcome>((resolve) => {
    const timer = setTimeout(() => finish('hang'), t.hangMs);
    const finish = (o: Outcome) => {
      clearTimeout(timer);
      d.ws.removeAllListeners('message');
      d.ws.removeAllListeners('close');
      resolve(o);
    };
    d.ws.on('close', () => finish('closed'));
    d.ws.on('message', (data: Buffer) => {
      const content = keys.recv.open(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      if (!content) bad('a block after the handshake does not open');
      finish('answered');
    });
    d.ws.send(frame, { binary: typeof frame !== 'string' });
    // the probe: answered only if the server took the hello as a good client's
    const corrId = new Uint8Array([SENTINEL, 1]);
    d.ws.send(keys.send.sealItems([encodeTransmission(EMPTY, signedPart(corrId, EMPTY, t.ping))]));
  });
  d.ws.terminate();
  return { outcome, input, kind };
}

const BLOCK_KINDS = ['random', 'size', 'random-content', 'bad-padding', 'zero-count', 'replay', 'text', 'tag'] as const;

/**
 * One block input on an open session: a block that is not a good one, then
 * the sentinel in a good block. The server must close the session (or, for a
 * block that still opens and decodes, answer the sentinel).
 */
export async function blockInput(s: FuzzSession, r: Prng): Promise<{ outcome: Outcome; input: Uint8Array; kind: string }> {
  const kind = r.pick(BLOCK_KINDS);
  const size = s.target.blockSize;
  const ping = () => encodeBlock([s.transmission(s.nextCorrId(), EMPTY, s.target.ping)], s.contentSize);
  let input: Uint8Array;
  switch (kind) {
    case 'random':
      input = r.bytes(size);
      break;
    case 'size':
      input = r.bytes(r.chance(0.5) ? r.int(size) : size + r.range(1, size));
      break;
    case 'random-content':
      // random bytes, or a random header and items followed by zero padding
      input = s.sealRaw(r.chance(0.5) ? r.bytes(s.contentSize) : concat(r.bytes(r.range(2, 64)), new Uint8Array(s.contentSize)).subarray(0, s.contentSize));
      break;
    case 'bad-padding': {
      const plain = ping();
      plain[r.range(64, s.contentSize - 1)] = r.range(1, 255);
      input = s.sealRaw(plain);
      break;
    }
    case 'zero-count':
      input = s.sealRaw(new Uint8Array(s.contentSize));
      break;
    case 'replay':
      input = s.lastBlock ?? r.bytes(size);
      break;
    case 'text':
      input = new TextEncoder().encode('not a block');
      break;
    default:
      // a good block with one bit of its tag or ciphertext flipped
      input = s.sealRaw(ping());
      input[r.int(input.length)]! ^= 1 << r.int(8);
  }
  s.sendFrame(kind === 'text' ? 'not a block' : input);
  return { outcome: (await s.exchange([])).outcome, input, kind };
}
