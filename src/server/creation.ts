// Who may create server state (a relay's NEW, a notification server's TNEW and
// SNEW): an optional password, and rate limits per connection and per client
// address (addressKey: an IPv6 client by its /64). The limits are checked before
// the password, so a stranger guesses passwords no faster than it may create.
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { positiveSchema } from './config.ts';
import { addressKey } from './connection-limits.ts';
import { RateLimiter, type RateLimit } from './rate-limit.ts';

export interface CreationPolicy {
  /** Required on every creation when set; it goes in the server address (address.ts), hence its alphabet. */
  password?: string;
  perConnection: RateLimit;
  perAddress: RateLimit;
}

/** Why a creation was refused, for metrics. */
export type CreationRefusal = 'rate_connection' | 'rate_address' | 'password';

/** A password that fits a server address: hush://<fp>:<password>@host:port. */
export const passwordSchema = z
  .string()
  .regex(/^[A-Za-z0-9._~-]{1,64}$/, 'must be 1 to 64 characters of A-Z a-z 0-9 . _ ~ -');

/** The `creation` config section: password, then burst and hourly rate per connection and per address. */
export function creationSchema(d: CreationPolicy) {
  return z
    .object({
      password: passwordSchema.optional(),
      perConnectionBurst: positiveSchema.default(d.perConnection.burst),
      perConnectionPerHour: positiveSchema.default(d.perConnection.perMinute * 60),
      perAddressBurst: positiveSchema.default(d.perAddress.burst),
      perAddressPerHour: positiveSchema.default(d.perAddress.perMinute * 60),
    })
    .strict()
    .prefault({});
}

export const creationEnv = (prefix: string) => ({
  [`${prefix}CREATION_PASSWORD`]: 'creation.password',
  [`${prefix}CREATION_PER_CONNECTION_BURST`]: 'creation.perConnectionBurst',
  [`${prefix}CREATION_PER_CONNECTION_PER_HOUR`]: 'creation.perConnectionPerHour',
  [`${prefix}CREATION_PER_ADDRESS_BURST`]: 'creation.perAddressBurst',
  [`${prefix}CREATION_PER_ADDRESS_PER_HOUR`]: 'creation.perAddressPerHour',
});

export const creationPolicy = (c: z.infer<ReturnType<typeof creationSchema>>): CreationPolicy => ({
  ...(c.password !== undefined ? { password: c.password } : {}),
  perConnection: { burst: c.perConnectionBurst, perMinute: c.perConnectionPerHour / 60 },
  perAddress: { burst: c.perAddressBurst, perMinute: c.perAddressPerHour / 60 },
});

const digest = (b: Uint8Array) => createHash('sha256').update(b).digest();

export class CreationGuard {
  private readonly byAddress: RateLimiter;
  /** Compared as digests: equal lengths for timingSafeEqual, and no timing hint of the length. */
  private readonly password: Buffer | undefined;

  constructor(
    private readonly policy: CreationPolicy,
    private readonly now: () => number,
    private readonly refused: (reason: CreationRefusal) => void,
  ) {
    this.byAddress = new RateLimiter(policy.perAddress, now);
    this.password = policy.password === undefined ? undefined : digest(new TextEncoder().encode(policy.password));
  }

  /** The budget of one connection: keep it with the connection, pass it to check. */
  connectionBudget = () => new RateLimiter(this.policy.perConnection, this.now, 1);

  /** Spends a creation from both budgets; the error to answer, or undefined to go on. */
  check(connection: RateLimiter, address: string, password: Uint8Array | undefined): 'RATE' | 'PASSWORD' | undefined {
    if (!connection.take('')) return this.refuse('rate_connection', 'RATE');
    if (!this.byAddress.take(addressKey(address))) return this.refuse('rate_address', 'RATE');
    if (this.password && !timingSafeEqual(this.password, digest(password ?? new Uint8Array(0))))
      return this.refuse('password', 'PASSWORD');
    return undefined;
  }

  private refuse<E>(reason: CreationRefusal, error: E): E {
    this.refused(reason);
    return error;
  }
}
