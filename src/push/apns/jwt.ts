// The APNs provider token: a JWT signed with ES256 by the team's .p8 key.
//
//   header {"alg":"ES256","kid":<key ID>}   claims {"iss":<team ID>,"iat":<UNIX seconds>}
//
// Apple rejects a token older than one hour (403 ExpiredProviderToken) and one
// replaced more often than every 20 minutes (429 TooManyProviderTokenUpdates),
// so one token is shared by all requests and renewed after refreshAfterMs
// (20–60 min, default 50), or at once after the server called it expired.
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';

export const MIN_REFRESH_MS = 20 * 60_000;
export const MAX_REFRESH_MS = 60 * 60_000;
export const DEFAULT_REFRESH_MS = 50 * 60_000;

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

const b64url = (s: string) => Buffer.from(s).toString('base64url');

/** Signs one provider token. */
export function signApnsJwt(key: KeyObject, keyId: string, teamId: string, iatSeconds: number): string {
  const input = `${b64url(JSON.stringify({ alg: 'ES256', kid: keyId }))}.${b64url(JSON.stringify({ iss: teamId, iat: iatSeconds }))}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

/** The cached provider token of one key. */
export class ApnsJwt {
  readonly keyId: string;
  readonly teamId: string;
  readonly refreshAfterMs: number;
  private readonly key: KeyObject;
  private readonly now: () => number;
  private current: { token: string; issuedAt: number } | undefined;
  /** How many tokens were signed (for metrics and tests). */
  generation = 0;

  constructor(opts: ApnsJwtOptions) {
    if (!opts.keyId || !opts.teamId) throw new TypeError('APNs keyId and teamId are required');
    const refresh = opts.refreshAfterMs ?? DEFAULT_REFRESH_MS;
    if (!(refresh >= MIN_REFRESH_MS && refresh <= MAX_REFRESH_MS))
      throw new RangeError(`APNs token refresh must be between 20 and 60 minutes, got ${refresh} ms`);
    this.keyId = opts.keyId;
    this.teamId = opts.teamId;
    this.key = loadApnsKey(opts.key);
    this.refreshAfterMs = refresh;
    this.now = opts.now ?? Date.now;
  }

  /** The token to send now: the cached one, or a new one if it is due. */
  get token(): string {
    const now = this.now();
    const c = this.current;
    // a clock that went backwards also renews: Apple refuses iat in the future
    if (c && now - c.issuedAt < this.refreshAfterMs && now >= c.issuedAt) return c.token;
    const iat = Math.floor(now / 1000);
    const token = signApnsJwt(this.key, this.keyId, this.teamId, iat);
    this.current = { token, issuedAt: iat * 1000 };
    this.generation++;
    return token;
  }

  /** When the current token was issued (ms), if there is one. */
  get issuedAt(): number | undefined {
    return this.current?.issuedAt;
  }

  /**
   * Drops the cached token (after 403 ExpiredProviderToken / InvalidProviderToken).
   * Given the token the failed request carried, only that one is dropped: many
   * requests failing together renew it once, not once each.
   */
  invalidate(token?: string): void {
    if (token === undefined || token === this.current?.token) this.current = undefined;
  }
}
