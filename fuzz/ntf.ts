// Notification server inputs: every NTF command, encoded by the NTF's own
// encoder with fuzzed fields, about a token the session registered and
// verified (the verification push opened, as a phone does) and a subscription
// to a real relay queue, so mutated commands reach the handlers.
//
// SNEW makes the server dial the relay it names: the relay field is the fuzz
// relay's address, a few fixed variants of it on 127.0.0.1 (a wrong
// fingerprint, TLS, a password, a closed port), or a string that does not
// parse — never another host, and never an unbounded set of addresses.
import { parseAddress } from '../src/core/address.ts';
import type { CryptoSuite, KeyPair } from '../src/core/crypto/suite.ts';
import { sharedKey } from '../src/core/keys.ts';
import { CODE_LENGTH, decodeResponse, encodeCommand, ID_LENGTH, type NtfCommand } from '../src/ntf/protocol.ts';
import { MAX_DEVICE_TOKEN, PROVIDERS, type DeviceToken } from '../src/push/device.ts';
import { openPush } from '../src/ntf/payload.ts';
import { fuzzTransmission, idField, keyField, otherKey, passwordField, randomTransmission, text, unknownTag, type Cmd } from './commands.ts';
import { mutate, type Prng } from './prng.ts';
import type { Creations } from './relay.ts';
import { tagOf, type FuzzSession } from './session.ts';

/** A relay queue's notifier credentials, for SNEWs the relay knows. */
export interface Notifier {
  notifierId: Uint8Array;
  ntfAuth: KeyPair;
}

/** What the NTF fuzzer gets from the run: the relay, and the pushes the APNs test server accepted. */
export interface NtfWorld {
  crypto: CryptoSuite;
  /** The relay's address and its fixed variants (all on 127.0.0.1) SNEW may name. */
  relays: { real: string; variants: string[] };
  /** New queues at the relay with notifier credentials, for SNEWs the relay knows. */
  newNotifiers(n: number): Promise<Notifier[]>;
  /** The push data of the next verification push to this APNs token (hex), or undefined after the hang bound. */
  verificationPush(tokenHex: string): Promise<string | undefined>;
  /** The creation password (ASCII), if the server has one. */
  password?: string;
  tokens: Creations;
  subscriptions: Creations;
}

interface Token {
  tokenId: Uint8Array;
  auth: KeyPair;
  device: DeviceToken;
  code?: Uint8Array;
  subIds: Uint8Array[];
}

const EMPTY = new Uint8Array(0);
const utf8 = (s: string) => new TextEncoder().encode(s);
const apnsDevice = (r: Prng): DeviceToken => ({ provider: 'apns', token: r.bytes(32) });

export class NtfFuzz {
  private readonly tokens: Token[] = [];
  private notifiers: Notifier[] = [];
  private readonly keys: KeyPair[];
  private readonly password: Uint8Array | undefined;

  private constructor(
    private readonly s: FuzzSession,
    private readonly r: Prng,
    private readonly w: NtfWorld,
  ) {
    this.keys = Array.from({ length: 4 }, () => w.crypto.x25519KeyPair());
    this.password = w.password === undefined ? undefined : utf8(w.password);
  }

  /**
   * A verified token with two subscriptions, and a token left unverified (the
   * victim of TDEL and TRPL); as much as the servers allow.
   */
  static async setUp(s: FuzzSession, r: Prng, w: NtfWorld): Promise<NtfFuzz> {
    const f = new NtfFuzz(s, r, w);
    const { crypto } = w;
    f.notifiers = await w.newNotifiers(2);
    for (const verify of [true, false]) {
      const auth = crypto.x25519KeyPair();
      const dh = crypto.x25519KeyPair();
      const device = apnsDevice(r);
      const push = verify ? w.verificationPush(Buffer.from(device.token).toString('hex')) : undefined;
      const reply = await s.call(
        EMPTY,
        encodeCommand({ type: 'TNEW', device, tknAuthKey: auth.publicKey, tknDhKey: dh.publicKey, ...(f.password ? { password: f.password } : {}) }),
        auth.privateKey,
      );
      const ids = reply && decodeResponse(reply);
      if (!ids?.ok || ids.value.type !== 'IDTKN') continue; // refused (RATE…): fuzz with what there is
      const token: Token = { tokenId: ids.value.tokenId, auth, device, subIds: [] };
      f.tokens.push(token);
      const data = await push;
      const secret = sharedKey(crypto, dh.privateKey, ids.value.srvDhKey, 'ntf token');
      const content = data !== undefined && secret ? openPush(crypto, secret, Buffer.from(data, 'base64url')) : undefined;
      if (content?.kind !== 'verification') continue;
      token.code = content.code;
      const ok = await s.call(token.tokenId, encodeCommand({ type: 'TVFY', code: content.code }), auth.privateKey);
      if (!ok || tagOf(ok) !== 'OK') continue;
      for (const n of f.notifiers) {
        const sub = await s.call(
          token.tokenId,
          encodeCommand({ type: 'SNEW', relay: w.relays.real, notifierId: n.notifierId, ntfAuthKey: n.ntfAuth.publicKey }),
          auth.privateKey,
        );
        const idsub = sub && decodeResponse(sub);
        if (idsub?.ok && idsub.value.type === 'IDSUB') token.subIds.push(idsub.value.subId);
      }
    }
    return f;
  }

  /** What the set-up made, for the run's figures: the fuzzed commands reach this far. */
  get depth(): Record<string, number> {
    return {
      tokens: this.tokens.length,
      verified: this.tokens.filter((t) => t.code).length,
      subscriptions: this.tokens.reduce((n, t) => n + t.subIds.length, 0),
    };
  }

  next(): Uint8Array {
    const { r, s } = this;
    if (r.chance(0.05)) return randomTransmission(r, s.maxItem);
    return fuzzTransmission(s, r, this.command(), this.keys.map((k) => k.privateKey));
  }

  private command(): Cmd {
    const { r, w } = this;
    // TDEL and TRPL go to the unverified token, SDEL to the second subscription: the rest keep reaching their handlers.
    const t: Token | undefined = this.tokens.length > 0 ? r.pick(this.tokens) : undefined;
    const victim = this.tokens.length > 1 ? this.tokens.at(-1) : t;
    const spare = r.pick(this.keys);
    const tkn = (c: NtfCommand, to = t): Cmd => ({ entity: to?.tokenId ?? r.bytes(ID_LENGTH), command: encodeCommand(c), signer: to?.auth.privateKey });
    const kind = r.weighted<string>([
      [8, 'TNEW'],
      [8, 'TVFY'],
      [8, 'TCHK'],
      [4, 'TRPL'],
      [2, 'TDEL'],
      [6, 'TCRN'],
      [14, 'SNEW'],
      [8, 'SCHK'],
      [3, 'SDEL'],
      [4, 'PING'],
      [3, 'unknown'],
    ]);
    switch (kind) {
      case 'TNEW': {
        // Signed by the key it names only while creations are left: each one is a token (and a push).
        // (else by another key: AUTH, after the checks that come before)
        const named = r.chance(0.2) && w.tokens.take();
        const c: NtfCommand = {
          type: 'TNEW',
          device: this.device(),
          tknAuthKey: keyField(r, spare.publicKey),
          tknDhKey: keyField(r, this.keys[0]!.publicKey),
          ...passwordField(r, this.password),
        };
        return { entity: EMPTY, command: encodeCommand(c), signer: (named ? spare : otherKey(this.keys, spare)).privateKey };
      }
      case 'TVFY':
        return tkn({ type: 'TVFY', code: idField(r, CODE_LENGTH, t?.code) });
      case 'TCHK':
        return tkn({ type: kind });
      case 'TDEL':
        return tkn({ type: kind }, victim);
      case 'TRPL':
        return tkn({ type: 'TRPL', device: this.device() }, victim);
      case 'TCRN':
        return tkn({ type: 'TCRN', minutes: r.pick([0, 1, 19, 20, 21, 60, 1440, 0xffff, r.int(0x10000)]) });
      case 'SNEW': {
        const n = this.notifiers.length > 0 ? r.pick(this.notifiers) : undefined;
        const c = tkn({
          type: 'SNEW',
          relay: this.relay(),
          notifierId: idField(r, ID_LENGTH, n?.notifierId),
          ntfAuthKey: keyField(r, n?.ntfAuth.publicKey ?? spare.publicKey),
        });
        // Each SNEW with a right authenticator can make a subscription (and a relay link): within the budget only.
        return r.chance(0.3) && w.subscriptions.take() ? c : { ...c, signer: otherKey(this.keys, spare).privateKey };
      }
      case 'SCHK':
      case 'SDEL': {
        const owner = this.tokens[0];
        const subIds = owner?.subIds ?? [];
        const subId = kind === 'SDEL' ? subIds.at(-1) : subIds.length > 0 ? r.pick(subIds) : undefined;
        return { entity: idField(r, ID_LENGTH, subId), command: encodeCommand({ type: kind }), signer: owner?.auth.privateKey };
      }
      case 'PING':
        return { entity: EMPTY, command: encodeCommand({ type: 'PING' }) };
      default:
        return { entity: t?.tokenId ?? EMPTY, command: encodeCommand({ type: unknownTag(r) } as unknown as NtfCommand), signer: t?.auth.privateKey };
    }
  }

  /** A device token: APNs-shaped most often (the provider the gateway serves), else any provider, length or tag. */
  private device(): DeviceToken {
    const { r } = this;
    const provider = r.weighted<() => string>([
      [6, () => 'apns'],
      [4, () => r.pick(PROVIDERS)],
      [1, () => unknownTag(r)],
    ])();
    const length = provider === 'apns' && r.chance(0.6) ? 32 : r.length(MAX_DEVICE_TOKEN + 1, [0, 1, MAX_DEVICE_TOKEN, MAX_DEVICE_TOKEN + 1]);
    return { provider, token: r.bytes(length) } as DeviceToken;
  }

  /** The relay address of an SNEW: see the top of this file. */
  private relay(): string {
    const { r, w } = this;
    const { real, variants } = w.relays;
    const candidate = r.weighted<() => string>([
      [8, () => real],
      [3, () => r.pick(variants)],
      [2, () => text(r, 120)],
      [2, () => String.fromCharCode(...mutate(r, utf8(real), 120))],
    ])();
    // Only the fixed addresses may be dialled; anything else that parses becomes the relay's own.
    return parseAddress(candidate).ok && candidate !== real && !variants.includes(candidate) ? real : candidate;
  }

}
