// Per-server limits at the gateway: a token bucket (rate and burst) and a
// quota of pushes per UTC day. In memory: gateways are stateless, so behind a
// load balancer each instance enforces its share. And what any client may
// hold: connections per address, streams per connection.

export interface Limits {
  /** Sustained pushes per second. */
  ratePerSecond: number;
  /** Pushes allowed at once above the rate. */
  burst: number;
  /** Pushes per UTC day; 0 = no quota. */
  dailyQuota: number;
}

export type Admission = { ok: true } | { ok: false; why: 'rate' | 'quota'; retryAfterSeconds: number };

const DAY_MS = 86_400_000;

export class Limiter {
  private tokens: number;
  private last: number;
  private day: number;
  private used = 0;

  constructor(
    private readonly limits: Limits,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = limits.burst;
    this.last = now();
    this.day = Math.floor(this.last / DAY_MS);
  }

  /** Takes one push if the limits allow it. */
  admit(): Admission {
    const now = this.now();
    const day = Math.floor(now / DAY_MS);
    if (day !== this.day) {
      this.day = day;
      this.used = 0;
    }
    const { ratePerSecond, burst, dailyQuota } = this.limits;
    if (dailyQuota > 0 && this.used >= dailyQuota) return { ok: false, why: 'quota', retryAfterSeconds: Math.ceil(((day + 1) * DAY_MS - now) / 1000) };
    this.tokens = Math.min(burst, this.tokens + (Math.max(0, now - this.last) / 1000) * ratePerSecond);
    this.last = now;
    if (this.tokens < 1) return { ok: false, why: 'rate', retryAfterSeconds: Math.max(1, Math.ceil((1 - this.tokens) / ratePerSecond)) };
    this.tokens -= 1;
    this.used++;
    return { ok: true };
  }
}

/**
 * Connections per client address (an IPv6 client: per /64), counted from
 * accept to close; 0: no cap. A notification server holds `gateway.connections`
 * (default 1); a stranger holds no more than this many sockets.
 */
export const DEFAULT_CONNECTIONS_PER_ADDRESS = 100;
/** Connections idle this long are closed (HTTP/2 PINGs do not count). */
export const DEFAULT_IDLE_MS = 120_000;
/** Streams at once on one HTTP/2 connection: what a notification server's pool opens at most (push/http2/pool.ts). */
export const MAX_STREAMS_PER_CONNECTION = 1000;
