// A ClientStore that encrypts every value at rest, over any other store: a
// key derived from the user's passphrase (Argon2id, memory-hard) seals each
// value with XChaCha20-Poly1305 and a fresh random nonce, the record's key as
// associated data, so a value moved to another record does not open. The KDF
// parameters, their salt and a key check live in a clear header record, so
// that a wrong passphrase is told apart at open and the cost can be raised by
// a later changePassphrase. Record keys and value sizes stay visible.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { concat, fromBase64Url, toBase64Url } from '../../core/encoding.ts';
import { InFlight } from '../lock.ts';
import type { AcquireOptions, ReleaseLock, StoreLock } from './lock.ts';
import type { ClientStore } from './store.ts';

type Entries = ReadonlyArray<readonly [key: string, value: string | undefined]>;

/** Argon2id cost: memory in KiB, passes, lanes. */
export interface KdfParams {
  m: number;
  t: number;
  p: number;
}

/** OWASP's minimum for Argon2id (19 MiB, 2 passes): about a second in pure JavaScript on a phone-class CPU. */
export const DEFAULT_KDF: KdfParams = { m: 19_456, t: 2, p: 1 };

/** The record holding the header; no SDK record has this key. */
export const HEADER_KEY = 'encryption';

/** The passphrase does not open the store. */
export class PassphraseError extends Error {
  override name = 'PassphraseError';
}

interface Header extends KdfParams {
  v: 1;
  kdf: 'argon2id';
  salt: string;
  /** The empty plaintext sealed under the key, the other fields as associated data. */
  check: string;
}

const NONCE = 24;
const utf8 = (s: string) => new TextEncoder().encode(s);

function seal(key: Uint8Array, plain: Uint8Array, aad: Uint8Array): string {
  const nonce = randomBytes(NONCE);
  return toBase64Url(concat(nonce, xchacha20poly1305(key, nonce, aad).encrypt(plain)));
}

/** The plaintext, or undefined if it does not open (tampered with, another key or record). */
function open(key: Uint8Array, sealed: string, aad: Uint8Array): Uint8Array | undefined {
  const bytes = fromBase64Url(sealed);
  if (!bytes || bytes.length < NONCE + 16) return undefined;
  try {
    return xchacha20poly1305(key, bytes.subarray(0, NONCE), aad).decrypt(bytes.subarray(NONCE));
  } catch {
    return undefined;
  }
}

const checkAad = (h: Omit<Header, 'check'>) => utf8(JSON.stringify([h.v, h.kdf, h.m, h.t, h.p, h.salt]));

function validParams({ m, t, p }: KdfParams): boolean {
  const int = (x: number, lo: number, hi: number) => Number.isSafeInteger(x) && x >= lo && x <= hi;
  return int(p, 1, 16) && int(t, 1, 64) && int(m, 8 * p, 1 << 20);
}

function parseHeader(text: string): Header {
  let h: Header;
  try {
    h = JSON.parse(text) as Header;
  } catch {
    throw new Error('the encrypted store header is corrupt');
  }
  if (h?.v !== 1 || h.kdf !== 'argon2id' || !validParams(h) || typeof h.salt !== 'string' || typeof h.check !== 'string')
    throw new Error('the encrypted store header is corrupt or of an unknown version');
  return h;
}

function checkPassphrase(passphrase: unknown): asserts passphrase is string {
  if (typeof passphrase !== 'string' || passphrase === '') throw new TypeError('a passphrase is a non-empty string');
}

const derive = (passphrase: string, h: KdfParams & { salt: string }) =>
  argon2idAsync(utf8(passphrase.normalize('NFC')), fromBase64Url(h.salt)!, { m: h.m, t: h.t, p: h.p, dkLen: 32 });

/** The key if the passphrase opens the header's check, else a PassphraseError. */
async function unlock(passphrase: string, h: Header): Promise<Uint8Array> {
  const key = await derive(passphrase, h);
  if (!open(key, h.check, checkAad(h))) throw new PassphraseError('wrong passphrase for the encrypted store');
  return key;
}

/** A new key: random salt, the given cost; returns it and its header's text. */
async function newKey(passphrase: string, kdf: KdfParams): Promise<{ key: Uint8Array; header: string }> {
  checkPassphrase(passphrase);
  if (!validParams(kdf)) throw new RangeError('Argon2id parameters out of range (p 1–16, t 1–64, m 8·p–1048576 KiB)');
  const base = { v: 1 as const, kdf: 'argon2id' as const, m: kdf.m, t: kdf.t, p: kdf.p, salt: toBase64Url(randomBytes(16)) };
  const key = await derive(passphrase, base);
  return { key, header: JSON.stringify({ ...base, check: seal(key, new Uint8Array(0), checkAad(base)) }) };
}

export interface EncryptedStoreOptions {
  /** Cost of a new key (a new store, or a plaintext one encrypted now). Default DEFAULT_KDF. */
  kdf?: KdfParams;
  /** The lock held while a new header is written (default: the inner store's), and how long to wait for it (10 s). */
  lock?: StoreLock;
  lockTimeoutMs?: number;
}

export class EncryptedStore implements ClientStore {
  readonly lock: StoreLock | undefined;
  /** Writes not yet done: a passphrase change waits for them before it reads. */
  private readonly writes = new InFlight();
  /** A passphrase change in progress: reads and writes wait for it. */
  private changing: Promise<void> | undefined;

  private constructor(
    private readonly inner: ClientStore,
    private key: Uint8Array,
    private header: string,
  ) {
    const lock = inner.lock;
    this.lock = lock && { acquire: (o) => this.acquire(lock, o) };
  }

  /**
   * Opens `inner` with the passphrase (PassphraseError if wrong). A store with
   * no header gets one, under its lock: an empty store, or one in plaintext
   * (every value JSON, as the SDK writes them), whose values are encrypted in
   * the same write.
   */
  static async open(inner: ClientStore, passphrase: string, opts: EncryptedStoreOptions = {}): Promise<EncryptedStore> {
    checkPassphrase(passphrase);
    let text = await inner.get(HEADER_KEY);
    if (text === undefined) {
      const lock = opts.lock ?? inner.lock;
      const release = await lock?.acquire({ timeoutMs: opts.lockTimeoutMs ?? 10_000 });
      try {
        text = await inner.get(HEADER_KEY); // another process may have made it meanwhile
        if (text === undefined) {
          const made = await newKey(passphrase, opts.kdf ?? DEFAULT_KDF);
          const entries = await sealAll(inner, made.key, (key, value) => {
            if (!isJson(value)) throw new Error(`the store has records but no encryption header (${key} is not plaintext)`);
            return value;
          });
          await inner.write([...entries, [HEADER_KEY, made.header]]);
          return new EncryptedStore(inner, made.key, made.header);
        }
      } finally {
        await release?.();
      }
    }
    return new EncryptedStore(inner, await unlock(passphrase, parseHeader(text)), text);
  }

  async get(key: string): Promise<string | undefined> {
    await this.changing;
    if (key === HEADER_KEY) return undefined;
    const sealed = await this.inner.get(key);
    return sealed === undefined ? undefined : this.decrypt(key, sealed);
  }

  async write(entries: Entries): Promise<void> {
    if (entries.some(([k]) => k === HEADER_KEY)) throw new RangeError(`"${HEADER_KEY}" is the encrypted store's own record`);
    if (this.changing) {
      const copy = entries.map(([k, v]) => [k, v] as const);
      return this.changing.then(() => this.write(copy));
    }
    const sealed = entries.map(([k, v]) => [k, v === undefined ? undefined : seal(this.key, utf8(v), utf8(k))] as const);
    return this.writes.track(this.inner.write(sealed));
  }

  async keys(prefix: string): Promise<string[]> {
    return (await this.inner.keys(prefix)).filter((k) => k !== HEADER_KEY);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /**
   * Re-encrypts every record under a key from `next` (new salt; cost `kdf`,
   * default: the current one), all in one write. Call it while holding the
   * store (through an open client's store, or with no client running): another
   * process's client on the store must open it again with the new passphrase.
   */
  async changePassphrase(old: string, next: string, kdf?: KdfParams): Promise<void> {
    checkPassphrase(old);
    await unlock(old, parseHeader(this.header));
    const made = await newKey(next, kdf ?? parseHeader(this.header));
    await this.changing;
    let done!: () => void;
    this.changing = new Promise((r) => (done = r));
    try {
      await this.writes.settled();
      const entries = await sealAll(this.inner, made.key, (key, value) => this.decrypt(key, value));
      await this.inner.write([...entries, [HEADER_KEY, made.header]]);
      this.key = made.key;
      this.header = made.header;
    } finally {
      this.changing = undefined;
      done();
    }
  }

  private decrypt(key: string, sealed: string): string {
    const plain = open(this.key, sealed, utf8(key));
    if (!plain) throw new Error(`the stored record ${key} does not decrypt: changed, or moved from another record`);
    return new TextDecoder().decode(plain);
  }

  /** The inner lock, then a check that no other client changed the passphrase since this one opened. */
  private async acquire(lock: StoreLock, o: AcquireOptions): Promise<ReleaseLock> {
    const release = await lock.acquire(o);
    try {
      if ((await this.inner.get(HEADER_KEY)) !== this.header)
        throw new PassphraseError('the store was encrypted again (a new passphrase) by another client: open it with the new passphrase');
    } catch (e) {
      await release();
      throw e;
    }
    return release;
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Every record but the header, its plaintext (from `plain`) sealed under `key`. */
async function sealAll(inner: ClientStore, key: Uint8Array, plain: (key: string, value: string) => string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const k of await inner.keys('')) {
    const v = k === HEADER_KEY ? undefined : await inner.get(k);
    if (v !== undefined) out.push([k, seal(key, utf8(plain(k, v)), utf8(k))]);
  }
  return out;
}

/**
 * The store as it is, or encrypted with the passphrase; closed if that fails
 * (for clients that own their store). An encrypted store opened without a
 * passphrase is a PassphraseError.
 */
export async function withPassphrase(store: ClientStore, passphrase: string | undefined, opts: EncryptedStoreOptions = {}): Promise<ClientStore> {
  try {
    if (passphrase !== undefined) return await EncryptedStore.open(store, passphrase, opts);
    if ((await store.get(HEADER_KEY)) !== undefined) throw new PassphraseError('the store is encrypted: open it with its passphrase');
    return store;
  } catch (e) {
    await store.close();
    throw e;
  }
}
