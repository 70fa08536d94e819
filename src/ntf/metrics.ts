// Prometheus metrics of a notification server. Counts and timings only.
import { ConnectionMetrics } from '../server/connection-metrics.ts';
import { MetricSet, SECONDS_BUCKETS } from '../server/metrics.ts';
import { SUB_STATUSES, type SubStatus } from './protocol.ts';
import type { NtfStoreCounts } from './store/store.ts';

export interface NtfMetricSources {
  counts(): NtfStoreCounts;
  /** ACTIVE subscriptions at relays that are disconnected now (reported INACTIVE). */
  inactive(): number;
  queueLengths(): Map<string, number>;
  /** Notifications whose push no provider has accepted yet, and the oldest one's wait. */
  pendingPushes(): { count: number; oldestSeconds: number };
  linkStates(): Record<'up' | 'connecting' | 'down', number>;
  /** The longest time a relay link with ACTIVE subscriptions has not been up (0: all up). */
  longestLinkDownMs(): number;
  storeFailed(): boolean;
}

/** What a cluster member reports (cluster/member.ts). */
export interface ClusterMetricSources {
  relaysHeld(): number;
  members(): number;
  holdsCron(): boolean;
}

export class NtfMetrics {
  private readonly m = new MetricSet('hush_ntf');
  readonly registry = this.m.registry;
  private sources: NtfMetricSources | undefined;

  readonly commands = this.m.counter('commands_total', 'Commands received, by command', ['command']);
  readonly errors = this.m.counter('errors_total', 'Error responses, by error', ['error']);
  readonly refusals = this.m.counter(
    'refusals_total',
    'Commands refused by the creation limits, by command (TNEW, SNEW, TRPL) and reason: rate_connection, rate_address, verification_pushes (ERR RATE), password (ERR PASSWORD), subscriptions_per_token (ERR QUOTA)',
    ['command', 'reason'],
  );
  readonly tokensExpired = this.m.counter(
    'tokens_expired_total',
    'Tokens deleted for staying out of ACTIVE too long, by kind: unverified (never verified), inactive (verified before)',
    ['kind'],
  );
  /** hush_ntf_connections, _connections_refused_total, _backpressure_total, _buffered_bytes_max. */
  readonly connections = new ConnectionMetrics(this.m);
  readonly received = this.m.counter('notifications_received_total', 'NMSGs received from relays');
  readonly pushes = this.m.counter('pushes_total', 'Pushes finished, by provider, kind and outcome (delivered, invalid, failed)', ['provider', 'kind', 'outcome']);
  readonly pushRetries = this.m.counter('push_retries_total', 'Push attempts to be retried', ['provider']);
  readonly pushSeconds = this.m.histogram('push_seconds', 'Time a push provider took to accept or refuse a push', SECONDS_BUCKETS, ['provider']);
  readonly notificationDelay = this.m.histogram(
    'notification_delay_seconds',
    "From the NMSG that queued a message push to the provider accepting that push: the notification server's part of message → device",
    [...SECONDS_BUCKETS, 10],
    ['provider'],
  );
  readonly relaysRefused = this.m.counter(
    'relay_refused_total',
    'Relay connections not made: the relay policy refused the address, or what its host name resolved to',
  );
  readonly relayProbeRtt = this.m.histogram('relay_probe_rtt_seconds', 'Round trip of the PINGs that probe quiet relay links', [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
  ]);

  readonly leaseRounds = this.m.counter(
    'lease_rounds_total',
    'Lease rounds of a cluster member (heartbeat, renewal of the leases it holds, taking its share), by result: ok, failed (the database)',
    ['result'],
  );
  readonly relayTakeovers = this.m.counter('relay_takeovers_total', "Relay leases this member took (a relay nobody held, or a dead member's)");
  readonly relaysGivenUp = this.m.counter(
    'relays_given_up_total',
    'Relay leases this member stopped holding, by reason: handed_back (rebalancing, no live subscription, stop), lost (not renewed in time, or taken)',
    ['reason'],
  );
  readonly dbQueries = this.m.counter('db_queries_total', 'PostgreSQL round trips, by purpose: flush (writes), lease, replica (reading what other members wrote), check', ['purpose']);
  readonly catchUpsLate = this.m.counter(
    'catch_ups_late_total',
    "Catch-ups (the read barrier before a cluster member's commands) not back from the database within 5 s: those commands ran on what the member's memory held",
  );
  private cluster: ClusterMetricSources | undefined;

  constructor() {
    const m = this.m;
    m.reading('relays_held', 'Relays whose lease this cluster member holds (it links them and pushes what comes from them)', () => this.cluster?.relaysHeld());
    m.reading('cluster_members', 'Live members of the cluster, this one included (heartbeat within a lease)', () => this.cluster?.members());
    m.reading('cluster_cron_duty', '1 while this member runs the TCRN pushes and token expiry for the cluster', () =>
      this.cluster ? (this.cluster.holdsCron() ? 1 : 0) : undefined,
    );
    /** What a source says, once the server has bound its sources. */
    const from = <T>(read: (s: NtfMetricSources) => T): T | undefined => (this.sources ? read(this.sources) : undefined);
    m.readingBy('relay_links', 'Relay links by state: up (subscribed), connecting, down (waiting to retry)', 'state', () =>
      Object.entries(from((s) => s.linkStates()) ?? {}),
    );
    m.reading('relay_link_down_seconds', 'Longest time a relay link with ACTIVE subscriptions has not been up; 0 when all are up', () =>
      from((s) => s.longestLinkDownMs() / 1000),
    );
    m.reading(
      'store_failed',
      '1 while the store cannot persist (memory is ahead of it): a journal until restart, PostgreSQL until a commit succeeds',
      () => from((s) => (s.storeFailed() ? 1 : 0)),
    );
    m.readingBy('tokens', 'Tokens by status', 'status', () => Object.entries(from((s) => s.counts().tokens) ?? {}));
    m.readingBy('subscriptions', 'Subscriptions by status', 'status', () => from(subscriptionsByStatus) ?? []);
    m.reading('relay_connections', 'Relays the server is connected to', () => from((s) => s.linkStates().up));
    m.readingBy('push_queue_length', 'Pushes waiting, by provider', 'provider', () => from((s) => s.queueLengths()) ?? []);
    m.reading('notifications_pending', 'Notifications taken in from relays (ACTIVE tokens) whose push no provider has accepted yet', () =>
      from((s) => s.pendingPushes().count),
    );
    m.reading(
      'notifications_pending_oldest_seconds',
      'How long the oldest pending notification has waited for an accepted push; 0 when none is pending',
      () => from((s) => s.pendingPushes().oldestSeconds),
    );
  }

  bind(sources: NtfMetricSources): void {
    this.sources = sources;
  }

  bindCluster(sources: ClusterMetricSources): void {
    this.cluster = sources;
  }
}

/** ACTIVE subscriptions at disconnected relays are reported INACTIVE. */
function subscriptionsByStatus(s: NtfMetricSources): [SubStatus, number][] {
  const c: Record<SubStatus, number> = { ...s.counts().subscriptions, INACTIVE: 0 };
  c.INACTIVE = s.inactive();
  c.ACTIVE -= c.INACTIVE;
  return SUB_STATUSES.map((status) => [status, c[status]]);
}
