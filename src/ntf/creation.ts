// What an anonymous client may make a notification server create, send or
// keep (docs/ntf.md §8): TNEW through a creation guard (password, rates per
// connection and per address), SNEW through another (rates) and a cap per
// token, verification pushes limited per device token, and tokens that are
// not ACTIVE deleted after a grace.
import { ascii, concat, latin1 } from '../core/encoding.ts';
import type { CryptoSuite } from '../core/crypto/suite.ts';
import { CreationGuard, type CreationPolicy, type CreationRefusal } from '../server/creation.ts';
import { RateLimiter, type RateLimit } from '../server/rate-limit.ts';
import type { DeviceToken } from '../push/device.ts';
import type { NtfStore } from './store/store.ts';

export interface NtfCreation {
  /** TNEW: the creation password, and rates per connection and per client address. */
  tokens: CreationPolicy;
  /** SNEW: rates (no password: the token's key authorizes it). */
  subscriptions: Omit<CreationPolicy, 'password'>;
  /** Subscriptions one token may have; more are QUOTA. */
  maxSubscriptionsPerToken: number;
  /** Verification pushes (TNEW, repeated TNEW, TRPL) per device token. */
  verificationPushes: RateLimit;
  /** A token never verified is deleted once its status is this old. */
  unverifiedTokenMs: number;
  /** A token verified before and not ACTIVE now (INVALID, EXPIRED, REGISTERED after TRPL) is deleted once its status is this old. */
  inactiveTokenMs: number;
}

const HOUR = 3_600_000;

/**
 * A public server's: a device makes one token (a few TNEWs), a NAT shares an
 * address; a reinstalled messenger subscribes every contact at once (thousands);
 * the app checks its token and repairs it within a day; a device whose app is
 * gone leaves a token INVALID, one whose app comes back within 30 days keeps
 * its subscriptions.
 */
export const DEFAULT_NTF_CREATION: NtfCreation = {
  tokens: { perConnection: { burst: 10, perMinute: 1 }, perAddress: { burst: 50, perMinute: 10 } },
  subscriptions: { perConnection: { burst: 5000, perMinute: 500 }, perAddress: { burst: 10_000, perMinute: 1000 } },
  maxSubscriptionsPerToken: 10_000,
  verificationPushes: { burst: 5, perMinute: 0.2 },
  unverifiedTokenMs: 24 * HOUR,
  inactiveTokenMs: 30 * 24 * HOUR,
};

export type NtfRefusal = CreationRefusal | 'subscriptions_per_token' | 'verification_pushes';
export type RefusedCommand = 'TNEW' | 'SNEW' | 'TRPL';
export type ExpiredKind = 'unverified' | 'inactive';

/** Expiry sweeps run at most this often (the cron timer may tick faster). */
const SWEEP_EVERY_MS = 60_000;

export class NtfCreationLimits {
  readonly tokens: CreationGuard;
  readonly subscriptions: CreationGuard;
  /** Keyed by a hash of provider and device token: the clear token is kept nowhere here. */
  private readonly pushes: RateLimiter;
  private nextSweepAt = 0;

  constructor(
    readonly opts: NtfCreation,
    private readonly crypto: CryptoSuite,
    now: () => number,
    readonly refused: (command: RefusedCommand, reason: NtfRefusal) => void,
  ) {
    this.tokens = new CreationGuard(opts.tokens, now, (reason) => refused('TNEW', reason));
    this.subscriptions = new CreationGuard(opts.subscriptions, now, (reason) => refused('SNEW', reason));
    this.pushes = new RateLimiter(opts.verificationPushes, now);
  }

  /** Spends one verification push of `device`; false (counted as refused) when they are used up. */
  verificationPush(device: DeviceToken, command: RefusedCommand): boolean {
    const key = latin1(this.crypto.sha256(concat(ascii(device.provider), new Uint8Array(1), device.token)));
    if (this.pushes.take(key)) return true;
    this.refused(command, 'verification_pushes');
    return false;
  }

  /**
   * Deletes (with `remove`, which takes the subscriptions too) the tokens past
   * their grace, at most once a minute; returns how many of each kind. A token
   * whose statusAt is unknown (0: stored before it existed) gets `t` instead.
   */
  sweep(store: NtfStore, t: number, remove: (tokenId: string) => void): Record<ExpiredKind, number> {
    const expired = { unverified: 0, inactive: 0 };
    if (t < this.nextSweepAt) return expired;
    this.nextSweepAt = t + SWEEP_EVERY_MS;
    for (const token of [...store.inactiveTokens()]) {
      if (token.statusAt === 0) {
        store.setTokenStatus(token.tokenId, token.status, t);
        continue;
      }
      const kind: ExpiredKind = token.verified ? 'inactive' : 'unverified';
      if (t - token.statusAt < (token.verified ? this.opts.inactiveTokenMs : this.opts.unverifiedTokenMs)) continue;
      remove(token.tokenId);
      expired[kind]++;
    }
    return expired;
  }
}
