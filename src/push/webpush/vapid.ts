// VAPID (RFC 8292): the application server's identity towards push services.
//
// One P-256 key pair. Apps subscribe with its public key (the
// applicationServerKey: 65-byte uncompressed point, base64url), which locks the
// subscription to us; each push carries
//   Authorization: vapid t=<ES256 JWT {aud, exp, sub}>, k=<that public key>
// aud is the push service's origin, exp at most 24 h ahead (§2), sub a mailto:
// or https: contact (§2.1 says MAY; Apple's and Mozilla's services refuse a JWT
// without it, so we require it).
//
// A push service verifies a signature per distinct token and caches the result
// (§4 security considerations encourage reuse), so we sign one JWT per audience
// and reuse it until less than half its lifetime remains: a push service's clock
// may run ahead of ours, and a token near its end could expire in flight.
import { createECDH, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { generatePemKeyPair } from '../../server/identity.ts';
import { Credential } from '../credential.ts';
import { signJws } from '../jws.ts';

/** RFC 8292 §2: exp must not be more than 24 h after the request. */
export const MAX_VAPID_LIFETIME_SECONDS = 24 * 3600;
export const DEFAULT_VAPID_LIFETIME_SECONDS = 12 * 3600;
/** Audiences whose JWTs are kept (oldest dropped first); UnifiedPush servers can be many. */
const MAX_CACHED_AUDIENCES = 10_000;

export interface VapidKey {
  privateKey: KeyObject;
  /** 65 bytes, 0x04 ‖ x ‖ y. */
  publicKey: Uint8Array;
  /** base64url of publicKey: the applicationServerKey. */
  publicKeyB64: string;
}

/**
 * Loads a VAPID private key: PKCS#8 (or SEC1) PEM, a KeyObject, or the raw
 * 32-byte scalar in base64url (the form web-push's generateVAPIDKeys() prints).
 * Throws TypeError unless it is a P-256 private key.
 */
export function loadVapidKey(key: string | KeyObject): VapidKey {
  let privateKey: KeyObject;
  if (typeof key !== 'string') privateKey = key;
  else if (key.includes('-----BEGIN')) privateKey = createPrivateKey(key);
  else {
    const d = Buffer.from(key, 'base64url');
    if (d.length !== 32 || d.toString('base64url') !== key.replace(/=+$/, '')) throw new TypeError('VAPID key is neither PEM nor a 32-byte base64url scalar');
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const pub = ecdh.getPublicKey();
    privateKey = createPrivateKey({
      key: { kty: 'EC', crv: 'P-256', d: key.replace(/=+$/, ''), x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') },
      format: 'jwk',
    });
  }
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new TypeError('VAPID key must be a P-256 private key');
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const publicKey = new Uint8Array(65);
  publicKey[0] = 0x04;
  publicKey.set(Buffer.from(jwk.x!, 'base64url'), 1);
  publicKey.set(Buffer.from(jwk.y!, 'base64url'), 33);
  return { privateKey, publicKey, publicKeyB64: Buffer.from(publicKey).toString('base64url') };
}

/** A new VAPID key: the private key as PKCS#8 PEM, the public key as the applicationServerKey (base64url). */
export function createVapidKey(): { privateKey: string; publicKey: string } {
  const { privateKey } = generatePemKeyPair('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKey: loadVapidKey(privateKey).publicKeyB64 };
}

/** Why a VAPID subject is unacceptable, or undefined: a mailto: address or an https: URL. */
export function vapidSubjectProblem(sub: unknown): string | undefined {
  if (typeof sub !== 'string' || sub === '') return 'VAPID subject is required';
  if (sub.startsWith('mailto:')) {
    // one addr-spec, no spaces; Apple refuses a domain without a dot (…@localhost)
    return /^mailto:[^\s@]+@[^\s@]+\.[^\s@]+$/.test(sub) ? undefined : 'VAPID mailto: subject is not an email address';
  }
  if (sub.startsWith('https:')) {
    try {
      return new URL(sub).hostname ? undefined : 'VAPID https: subject has no host';
    } catch {
      return 'VAPID https: subject is not a URL';
    }
  }
  return 'VAPID subject must be a mailto: or https: URI';
}

export interface VapidSignerOptions {
  privateKey: string | KeyObject;
  /** mailto: or https: contact for the push service's operators. */
  subject: string;
  /** exp − now of each JWT (default 12 h, at most 24 h). */
  lifetimeSeconds?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

/** Signs and caches the Authorization header per push service origin. */
export class VapidSigner {
  readonly key: VapidKey;
  readonly subject: string;
  readonly lifetimeSeconds: number;
  private readonly now: () => number;
  /** Per audience, least recently used first. */
  private readonly cache = new Map<string, Credential<string>>();
  private signed = 0;

  constructor(o: VapidSignerOptions) {
    this.key = loadVapidKey(o.privateKey);
    const problem = vapidSubjectProblem(o.subject);
    if (problem) throw new TypeError(problem);
    this.subject = o.subject;
    this.lifetimeSeconds = o.lifetimeSeconds ?? DEFAULT_VAPID_LIFETIME_SECONDS;
    if (!Number.isInteger(this.lifetimeSeconds) || this.lifetimeSeconds < 60 || this.lifetimeSeconds > MAX_VAPID_LIFETIME_SECONDS)
      throw new RangeError(`VAPID lifetime must be 60..${MAX_VAPID_LIFETIME_SECONDS} seconds`);
    this.now = o.now ?? Date.now;
  }

  /** The applicationServerKey apps subscribe with. */
  get publicKey(): string {
    return this.key.publicKeyB64;
  }

  /** JWTs signed so far. */
  get signatures(): number {
    return this.signed;
  }

  /** `vapid t=<JWT>, k=<public key>` for a push service origin (scheme://host[:port]). */
  authorization(audience: string): string {
    let cred = this.cache.get(audience);
    if (cred) this.cache.delete(audience);
    else {
      if (new URL(audience).origin !== audience) throw new TypeError('VAPID audience must be an origin');
      if (this.cache.size >= MAX_CACHED_AUDIENCES) this.cache.delete(this.cache.keys().next().value!);
      cred = new Credential(this.now);
    }
    this.cache.set(audience, cred);
    return cred.value(() => {
      const now = this.now();
      const lifetime = this.lifetimeSeconds * 1000;
      return { value: `vapid t=${this.jwt(audience, now)}, k=${this.key.publicKeyB64}`, issuedAt: now, renewAt: now + lifetime / 2, expiresAt: now + lifetime };
    });
  }

  /** Forgets the cached JWTs (all, or one audience's): the next push signs anew. */
  invalidate(audience?: string): void {
    if (audience === undefined) this.cache.clear();
    else this.cache.delete(audience);
  }

  private jwt(aud: string, now: number): string {
    this.signed++;
    return signJws({ typ: 'JWT', alg: 'ES256' }, { aud, exp: Math.floor(now / 1000) + this.lifetimeSeconds, sub: this.subject }, this.key.privateKey);
  }
}
