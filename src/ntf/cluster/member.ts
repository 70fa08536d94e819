// A notification server as one member of a cluster on one PostgreSQL database
// (docs/ntf-cluster.md): the replica keeps its memory up with the others'
// writes, the leases say which relays it links and whether it runs the
// cluster's cron duty. Taking a relay: catch up, load the relay's kept
// notifications (pushing those still owed a push, in flight at a member that
// died), then link it, and NSUBS brings the relay's unacknowledged NMSGs.
// Giving one up: close the link at once and forget its notifications.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { NtfMetrics } from '../metrics.ts';
import type { NtfCluster, NtfServer } from '../server.ts';
import type { MemoryNtfStore } from '../store/memory.ts';
import { loadRelayNotifications, subscriptionStored, type PostgresLog } from '../store/postgres.ts';
import { TERMINAL_SUB_STATUSES } from '../protocol.ts';
import type { Timers } from '../timers.ts';
import { CRON_DUTY, leaseRelay, Leases, relayLease } from './leases.ts';
import type { Replica } from './replica.ts';
import type { SubRecord } from '../store/store.ts';

export interface ClusterMemberOptions {
  url: string;
  schema: string;
  /** This member's ID (stable across its restarts: it takes its own leases back at once). */
  id: string;
  store: MemoryNtfStore;
  log: PostgresLog;
  /** Leases, reading the others' rows, checks: its own connections, so a long flush never delays a renewal. */
  pool: pg.Pool;
  /** Listening since before the store was loaded (open.ts). */
  replica: Replica;
  logger: Logger;
  metrics: NtfMetrics;
  timers: Timers;
  leaseMs?: number;
  renewMs?: number;
}

export class ClusterMember implements NtfCluster {
  readonly leases: Leases;
  readonly replica: Replica;
  private server: NtfServer | undefined;
  private linksUp = new Set<string>();
  /** Relays some member held at the last round. */
  private leased = new Set<string>();
  private members = 1;
  private roundTimer: unknown;
  private rounding: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** When the last round reached the database (monotonic ms). */
  private lastOk: number;

  constructor(private readonly o: ClusterMemberOptions) {
    this.leases = new Leases({
      pool: o.pool,
      schema: o.schema,
      owner: o.id,
      now: () => performance.now(),
      ...(o.leaseMs ? { leaseMs: o.leaseMs } : {}),
      ...(o.renewMs ? { renewMs: o.renewMs } : {}),
    });
    this.replica = o.replica;
    this.lastOk = performance.now();
    o.metrics.bindCluster({ relaysHeld: () => this.leases.relays().length, members: () => this.members, holdsCron: () => this.holdsCron() });
  }

  /** A subscription another member created or deleted: the holder of its relay subscribes or unsubscribes it. */
  subChanged(event: 'added' | 'removed', sub: SubRecord): void {
    if (!this.server || !this.holdsRelay(sub.relay)) return;
    if (event === 'added') this.server.subscriber.add(sub);
    else this.server.subscriber.remove(sub);
  }

  holdsRelay = (relay: string) => this.leases.holds(relayLease(relay));
  holdsCron = () => this.leases.holds(CRON_DUTY);

  linkUp(relay: string): boolean {
    return this.holdsRelay(relay) ? (this.server?.subscriber.connected(relay) ?? false) : this.linksUp.has(relay);
  }

  catchUp = () => this.replica.catchUp();

  async confirmGone(relay: string, notifierId: string): Promise<boolean> {
    this.o.metrics.dbQueries.inc({ purpose: 'check' });
    return !(await subscriptionStored(this.o.pool, this.o.schema, relay, notifierId));
  }

  relayWanted(relay: string): void {
    if (!this.leased.has(relay)) this.roundSoon();
  }

  takenOver(relay: string): void {
    this.o.logger.warn({ event: 'relay_lease_conflict' });
    this.giveUp(relayLease(relay), 'lost');
  }

  async start(server: NtfServer): Promise<void> {
    this.server = server;
    await this.round(); // a lone member links its relays at once
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.roundTimer) this.o.timers.clear(this.roundTimer);
    await this.rounding;
    for (const relay of this.leases.relays()) this.giveUp(relayLease(relay), 'handed_back');
    await this.leases.releaseAll().catch(() => {});
    await this.replica.close();
    await this.o.pool.end();
  }

  health(): { ok: boolean; reason?: string } {
    const since = performance.now() - this.lastOk;
    if (since > this.leases.leaseMs)
      return { ok: false, reason: `database unreachable for ${Math.round(since / 1000)} s: relay leases given up` };
    if (this.replica.downSince !== undefined) return { ok: false, reason: "database change feed (LISTEN) lost: reconnecting" };
    return { ok: true };
  }

  /** A round every renewMs; leases past their deadline are given up even while a round hangs. */
  private schedule(): void {
    if (this.stopped) return;
    this.roundTimer = this.o.timers.set(() => {
      this.roundTimer = undefined;
      for (const name of this.leases.expire()) this.giveUp(name, 'lost', false);
      void this.round();
      this.schedule();
    }, this.leases.renewMs);
  }

  /** A round now, or right after the one running. */
  private roundSoon(): void {
    if (this.rounding) this.again = true;
    else void this.round();
  }

  private round(): Promise<void> {
    this.rounding ??= this.runRound().finally(() => {
      this.rounding = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.round();
      }
    });
    return this.rounding;
  }

  private async runRound(): Promise<void> {
    const server = this.server!;
    const wanted = [...this.o.store.relays()].filter((r) => this.live(r));
    const up = this.leases.relays().filter((r) => server.subscriber.connected(r));
    const r = await this.leases.round(wanted, up);
    this.o.metrics.leaseRounds.inc({ result: r.error ? 'failed' : 'ok' });
    this.o.metrics.dbQueries.inc({ purpose: 'lease' }, r.error ? 1 : 3 + (r.acquired.length > 0 ? 1 : 0));
    for (const name of r.lost) this.giveUp(name, 'lost', false);
    for (const name of r.handedBack) this.giveUp(name, 'handed_back', false);
    if (r.error) {
      this.o.logger.warn({ event: 'lease_round_failed', err: r.error, lost: r.lost.length });
      return;
    }
    this.lastOk = performance.now();
    this.members = r.members;
    this.linksUp = r.linksUp;
    this.leased = r.leased;
    // Not awaited: a take that waits on the database must not hold up the next round's renewals.
    for (const name of r.acquired) void this.take(name);
  }

  /** A live (not terminal) subscription at `relay`. */
  private live(relay: string): boolean {
    for (const s of this.o.store.subsOfRelay(relay)) if (!TERMINAL_SUB_STATUSES.has(s.status)) return true;
    return false;
  }

  private async take(name: string): Promise<void> {
    const relay = leaseRelay(name);
    if (relay === undefined) return this.o.logger.info({ event: 'cron_duty_taken' });
    const server = this.server!;
    try {
      await this.replica.catchUp();
      const kept = await loadRelayNotifications(this.o.pool, this.o.schema, this.o.store, relay);
      this.o.metrics.dbQueries.inc({ purpose: 'lease' });
      if (!this.holdsRelay(relay)) return;
      server.subscriber.take(relay);
      server.dispatcher.pushPending();
      this.o.metrics.relayTakeovers.inc();
      this.o.logger.info({ event: 'relay_taken', notifications: kept });
    } catch (err) {
      // Not linked: the lease is handed back by the next round's idle check if it stays so; give it up now.
      this.o.logger.warn({ event: 'relay_take_failed', err: String(err) });
      this.giveUp(name, 'lost');
    }
  }

  /** Stops acting as the holder of `name` (a relay: its link closed, its notifications forgotten). */
  private giveUp(name: string, reason: 'lost' | 'handed_back', forget = true): void {
    if (forget) this.leases.forget(name);
    const relay = leaseRelay(name);
    if (relay === undefined || !this.server) return;
    this.server.subscriber.giveUp(relay);
    this.o.store.forgetRelayNotifications(relay);
    this.o.metrics.relaysGivenUp.inc({ reason });
    this.o.logger.info({ event: 'relay_given_up', reason });
  }
}
