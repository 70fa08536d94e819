// Leases in PostgreSQL (docs/ntf.md §9): who holds each relay's
// service subscription, and the cluster-wide duties. A lease is a row with an
// expiry on the database's clock, renewed every renewMs by its holder; a
// holder that could not renew gives the lease up by its own clock before the
// database lets anyone else take it, so two members never act on one lease.
// Each round a member also counts the live members (heartbeats) and takes
// free or expired leases up to its fair share, or hands one back when it
// holds two more than the member holding the fewest.
import pg from 'pg';

export interface LeaseOptions {
  pool: pg.Pool;
  schema: string;
  /** This member's ID. */
  owner: string;
  /** A lease's length on the database's clock; default 10 s. */
  leaseMs?: number;
  /** Renewal period; default 2 s. */
  renewMs?: number;
  /** Monotonic milliseconds (the local deadlines). */
  now(): number;
}

/** What one round decided, for the member to act on. */
export interface LeaseRound {
  /** The round failed (the database): nothing was renewed, and what passed its deadline is in `lost`. */
  error?: string;
  /** Taken this round: act as holder (after catching up). */
  acquired: string[];
  /** Not renewed in time, or someone else's now: stop acting as holder at once. */
  lost: string[];
  /** Handed back (rebalancing, no live subscription left): stop acting as holder at once. */
  handedBack: string[];
  /** Relays some member holds. */
  leased: Set<string>;
  /** Relays whose holder reports its link up. */
  linksUp: Set<string>;
  /** Live members, this one included. */
  members: number;
}

export const DEFAULT_LEASE_MS = 10_000;
export const DEFAULT_RENEW_MS = 2_000;
/** The cluster-wide duty of TCRN pushes and token expiry. */
export const CRON_DUTY = 'duty:cron';
export const relayLease = (relay: string) => `relay:${relay}`;
export const leaseRelay = (name: string) => (name.startsWith('relay:') ? name.slice(6) : undefined);

export class Leases {
  /** Held leases → the local deadline (monotonic ms) after which they are given up unless renewed. */
  private readonly held = new Map<string, number>();
  private readonly sql: Record<'heartbeat' | 'renew' | 'state' | 'take' | 'release', string>;
  readonly leaseMs: number;
  readonly renewMs: number;

  constructor(private readonly o: LeaseOptions) {
    this.leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
    this.renewMs = o.renewMs ?? DEFAULT_RENEW_MS;
    const s = pg.escapeIdentifier(o.schema);
    const ttl = (n: number) => `make_interval(secs => $${n}::float8 / 1000)`;
    this.sql = {
      // Members gone a day are forgotten.
      heartbeat: `WITH gone AS (DELETE FROM ${s}.instances WHERE seen_at < now() - interval '1 day')
                  INSERT INTO ${s}.instances (instance_id, seen_at) VALUES ($1, now())
                  ON CONFLICT (instance_id) DO UPDATE SET seen_at = now()`,
      renew: `UPDATE ${s}.leases SET expires_at = now() + ${ttl(2)}, link_up = name = ANY($3::text[])
              WHERE owner = $1 AND expires_at > now() RETURNING name`,
      state: `SELECT (SELECT count(*) FROM ${s}.instances WHERE seen_at > now() - ${ttl(1)})::int AS members,
                     coalesce((SELECT json_object_agg(name, json_build_array(owner, link_up)) FROM ${s}.leases WHERE expires_at > now()), '{}') AS leases`,
      take: `INSERT INTO ${s}.leases (name, owner, expires_at, link_up, taken_at)
             SELECT n, $1, now() + ${ttl(2)}, false, now() FROM unnest($3::text[]) AS n
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at, link_up = false, taken_at = now()
             WHERE ${s}.leases.expires_at <= now() OR ${s}.leases.owner = $1
             RETURNING name`,
      release: `DELETE FROM ${s}.leases WHERE owner = $1 AND name = ANY($2::text[])`,
    };
  }

  /** Stops holding `name` here (the database's row is left to expire, or be renewed by the next round). */
  forget(name: string): boolean {
    return this.held.delete(name);
  }

  /** Gives up what has passed its local deadline (a round that hangs must not keep a relay linked); returns those. */
  expire(): string[] {
    const now = this.o.now();
    return [...this.held].filter(([name, d]) => d <= now && this.held.delete(name)).map(([name]) => name);
  }

  holds(name: string): boolean {
    const deadline = this.held.get(name);
    return deadline !== undefined && deadline > this.o.now();
  }

  /** Held relays. */
  relays(): string[] {
    return [...this.held.keys()].flatMap((n) => leaseRelay(n) ?? []);
  }

  /**
   * One round: heartbeat, renew what is held, then take or hand back relays.
   * `wanted`: the relays with live subscriptions; `up`: the held relays whose link is up.
   */
  async round(wanted: string[], up: string[]): Promise<LeaseRound> {
    const started = this.o.now();
    const deadline = started + this.leaseMs - this.renewMs; // before the database's expiry, with a round to spare
    const lost: string[] = [];
    const handedBack: string[] = [];
    const drop = (name: string, into = lost) => {
      if (this.held.delete(name)) into.push(name);
    };
    const q = <R extends pg.QueryResultRow>(text: string, values: unknown[]) =>
      this.o.pool.query<R>({ text, values, query_timeout: this.leaseMs / 2 } as pg.QueryConfig);
    const { owner } = this.o;
    const ttl = this.leaseMs;
    const acquired: string[] = [];
    try {
      await q(this.sql.heartbeat, [owner]);
      const renewed = new Set((await q<{ name: string }>(this.sql.renew, [owner, ttl, up.map(relayLease)])).rows.map((r) => r.name));
      for (const name of [...this.held.keys()]) if (!renewed.has(name)) drop(name); // expired and taken, or deleted: someone else's now
      for (const name of renewed) {
        if (!this.held.has(name)) acquired.push(name); // held before this process restarted
        this.held.set(name, deadline);
      }
      const state = (await q<{ members: number; leases: Record<string, [string, boolean]> }>(this.sql.state, [ttl])).rows[0]!;
      const members = Math.max(1, state.members);
      const holders = new Map<string, number>([[owner, 0]]);
      const leased = new Set<string>();
      const linksUp = new Set<string>();
      for (const [name, [holder, linkUp]] of Object.entries(state.leases)) {
        const relay = leaseRelay(name);
        if (relay === undefined) continue;
        holders.set(holder, (holders.get(holder) ?? 0) + 1);
        leased.add(relay);
        if (linkUp) linksUp.add(relay);
      }
      const wantedSet = new Set(wanted);
      // Relays with no live subscription left: handed back.
      const idle = this.relays().filter((r) => !wantedSet.has(r)).map(relayLease);
      const mine = this.relays().length - idle.length;
      const fewest = holders.size < members ? 0 : Math.min(...holders.values());
      const share = Math.ceil(wanted.length / members);
      const handBack = mine - fewest >= 2 ? this.relays().filter((r) => wantedSet.has(r)).slice(0, Math.floor((mine - fewest) / 2)) : [];
      const release = [...idle, ...handBack.map(relayLease)];
      if (release.length > 0) {
        for (const name of release) drop(name, handedBack);
        await q(this.sql.release, [owner, release]);
      }
      const free = wanted.map(relayLease).filter((n) => !(n in state.leases) || state.leases[n]![0] === owner);
      const room = handBack.length > 0 ? 0 : Math.max(0, share - mine);
      const candidates = shuffle(free.filter((n) => !this.held.has(n))).slice(0, room);
      if (!this.held.has(CRON_DUTY) && (!(CRON_DUTY in state.leases) || state.leases[CRON_DUTY]![0] === owner)) candidates.push(CRON_DUTY);
      if (candidates.length > 0) {
        const taken = await q<{ name: string }>(this.sql.take, [owner, ttl, candidates]);
        for (const { name } of taken.rows) {
          this.held.set(name, deadline);
          acquired.push(name);
        }
      }
      for (const name of acquired) leased.add(leaseRelay(name) ?? name);
      return { acquired, lost, handedBack, leased, linksUp, members };
    } catch (err) {
      // No renewal: what reaches its deadline is given up, before anyone else may take it.
      lost.push(...this.expire());
      return { error: err instanceof Error ? err.message : String(err), acquired: acquired.filter((n) => this.held.has(n)), lost, handedBack, leased: new Set(), linksUp: new Set(), members: 0 };
    }
  }

  /** Hands every lease back (a clean stop), so others take them at once. */
  async releaseAll(): Promise<void> {
    const names = [...this.held.keys()];
    this.held.clear();
    if (names.length > 0) await this.o.pool.query(this.sql.release, [this.o.owner, names]);
  }
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
