// The APNs provider token: a JWT signed with ES256 by the team's .p8 key.
//
//   header {"alg":"ES256","kid":<key ID>}   claims {"iss":<team ID>,"iat":<UNIX seconds>}
//
// Apple rejects a token older than one hour (403 ExpiredProviderToken) and one
// replaced more often than every 20 minutes (429 TooManyProviderTokenUpdates),
// so one token is shared by all requests and renewed after refreshAfterMs
// (20–60 min, default 50), or at once after the server called it expired.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { Credential } from '../credential.ts';
import { signJws } from '../jws.ts';

export const MIN_REFRESH_MS = 20 * 60_000;
export const MAX_REFRESH_MS = 60 * 60_000;
export const DEFAULT_REFRESH_MS = 50 * 60_000;
/** Apple's limit on a token's age. */
const MAX_AGE_MS = 60 * 60_000;

export interface ApnsJwtOptions {
  keyId: string;
  teamId: string;
  /** The .p8 key: an EC P-256 private key, PKCS#8 PEM (or a KeyObject). */
  key: string | KeyObject;
  /** Renew the token after this many milliseconds (20–60 min). */
  refreshAfterMs?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

/** Reads a .p8 (PKCS#8 PEM) key and checks it is an ES256 key. */
export function loadApnsKey(key: string | KeyObject): KeyObject {
  const k = typeof key === 'string' ? createPrivateKey(key) : key;
  if (k.type !== 'private' || k.asymmetricKeyType !== 'ec' || k.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new TypeError('APNs key must be an EC P-256 private key (.p8)');
  return k;
}

/** Signs one provider token. */
export function signApnsJwt(key: KeyObject, keyId: string, teamId: string, iatSeconds: number): string {
  return signJws({ alg: 'ES256', kid: keyId }, { iss: teamId, iat: iatSeconds }, key);
}

/** The cached provider token of one key; invalidate() after 403 ExpiredProviderToken / InvalidProviderToken. */
export class ApnsJwt extends Credential<string> {
  readonly keyId: string;
  readonly teamId: string;
  readonly refreshAfterMs: number;
  private readonly key: KeyObject;

  constructor(opts: ApnsJwtOptions) {
    super(opts.now);
    if (!opts.keyId || !opts.teamId) throw new TypeError('APNs keyId and teamId are required');
    const refresh = opts.refreshAfterMs ?? DEFAULT_REFRESH_MS;
    if (!(refresh >= MIN_REFRESH_MS && refresh <= MAX_REFRESH_MS))
      throw new RangeError(`APNs token refresh must be between 20 and 60 minutes, got ${refresh} ms`);
    this.keyId = opts.keyId;
    this.teamId = opts.teamId;
    this.key = loadApnsKey(opts.key);
    this.refreshAfterMs = refresh;
  }

  /** The token to send now: the cached one, or a new one if it is due. */
  get token(): string {
    return this.value(() => {
      const iat = Math.floor(this.now() / 1000);
      const issuedAt = iat * 1000;
      return { value: signApnsJwt(this.key, this.keyId, this.teamId, iat), issuedAt, renewAt: issuedAt + this.refreshAfterMs, expiresAt: issuedAt + MAX_AGE_MS };
    });
  }

  /** How many tokens were signed (for metrics and tests). */
  get generation(): number {
    return this.made;
  }
}
