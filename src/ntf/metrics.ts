// Prometheus metrics of a notification server. Counts and timings only.
import client from 'prom-client';
import { ConnectionMetrics } from '../server/connection-metrics.ts';
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

export class NtfMetrics {
  readonly registry = new client.Registry();
  private sources: NtfMetricSources | undefined;
  private readonly r = [this.registry];

  readonly commands = new client.Counter({ name: 'hush_ntf_commands_total', help: 'Commands received, by command', labelNames: ['command'], registers: this.r });
  readonly errors = new client.Counter({ name: 'hush_ntf_errors_total', help: 'Error responses, by error', labelNames: ['error'], registers: this.r });
  readonly refusals = new client.Counter({
    name: 'hush_ntf_refusals_total',
    help: 'Commands refused by the creation limits, by command (TNEW, SNEW, TRPL) and reason: rate_connection, rate_address, verification_pushes (ERR RATE), password (ERR PASSWORD), subscriptions_per_token (ERR QUOTA)',
    labelNames: ['command', 'reason'],
    registers: this.r,
  });
  readonly tokensExpired = new client.Counter({
    name: 'hush_ntf_tokens_expired_total',
    help: 'Tokens deleted for staying out of ACTIVE too long, by kind: unverified (never verified), inactive (verified before)',
    labelNames: ['kind'],
    registers: this.r,
  });
  /** hush_ntf_connections, _connections_refused_total, _backpressure_total, _buffered_bytes_max. */
  readonly connections = new ConnectionMetrics('hush_ntf', this.registry);
  readonly received = new client.Counter({ name: 'hush_ntf_notifications_received_total', help: 'NMSGs received from relays', registers: this.r });
  readonly pushes = new client.Counter({
    name: 'hush_ntf_pushes_total',
    help: 'Pushes finished, by provider, kind and outcome (delivered, invalid, failed)',
    labelNames: ['provider', 'kind', 'outcome'],
    registers: this.r,
  });
  readonly pushRetries = new client.Counter({ name: 'hush_ntf_push_retries_total', help: 'Push attempts to be retried', labelNames: ['provider'], registers: this.r });
  readonly pushSeconds = new client.Histogram({
    name: 'hush_ntf_push_seconds',
    help: 'Time a push provider took to accept or refuse a push',
    labelNames: ['provider'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: this.r,
  });

  readonly notificationDelay = new client.Histogram({
    name: 'hush_ntf_notification_delay_seconds',
    help: 'From the NMSG that queued a message push to the provider accepting that push: the notification server\'s part of message → device',
    labelNames: ['provider'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: this.r,
  });

  readonly relaysRefused = new client.Counter({
    name: 'hush_ntf_relay_refused_total',
    help: 'Relay connections not made: the relay policy refused the address, or what its host name resolved to',
    registers: this.r,
  });

  readonly relayProbeRtt = new client.Histogram({
    name: 'hush_ntf_relay_probe_rtt_seconds',
    help: 'Round trip of the PINGs that probe quiet relay links',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: this.r,
  });

  constructor() {
    const self = this;
    new client.Gauge({
      name: 'hush_ntf_relay_links',
      help: 'Relay links by state: up (subscribed), connecting, down (waiting to retry)',
      labelNames: ['state'],
      registers: this.r,
      collect() {
        for (const [state, n] of Object.entries(self.sources?.linkStates() ?? {})) this.set({ state }, n);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_relay_link_down_seconds',
      help: 'Longest time a relay link with ACTIVE subscriptions has not been up; 0 when all are up',
      registers: this.r,
      collect() {
        if (self.sources) this.set(self.sources.longestLinkDownMs() / 1000);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_store_failed',
      help: '1 while the store cannot persist (memory is ahead of it): a journal until restart, PostgreSQL until a commit succeeds',
      registers: this.r,
      collect() {
        if (self.sources) this.set(self.sources.storeFailed() ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_tokens',
      help: 'Tokens by status',
      labelNames: ['status'],
      registers: this.r,
      collect() {
        const c = self.sources?.counts().tokens;
        if (c) for (const [status, n] of Object.entries(c)) this.set({ status }, n);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_subscriptions',
      help: 'Subscriptions by status',
      labelNames: ['status'],
      registers: this.r,
      collect() {
        if (!self.sources) return;
        const c: Record<SubStatus, number> = { ...self.sources.counts().subscriptions, INACTIVE: 0 };
        const inactive = self.sources.inactive();
        c.ACTIVE -= inactive;
        c.INACTIVE = inactive;
        for (const status of SUB_STATUSES) this.set({ status }, c[status]);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_relay_connections',
      help: 'Relays the server is connected to',
      registers: this.r,
      collect() {
        if (self.sources) this.set(self.sources.linkStates().up);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_push_queue_length',
      help: 'Pushes waiting, by provider',
      labelNames: ['provider'],
      registers: this.r,
      collect() {
        for (const [provider, n] of self.sources?.queueLengths() ?? []) this.set({ provider }, n);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_notifications_pending',
      help: 'Notifications taken in from relays (ACTIVE tokens) whose push no provider has accepted yet',
      registers: this.r,
      collect() {
        if (self.sources) this.set(self.sources.pendingPushes().count);
      },
    });
    new client.Gauge({
      name: 'hush_ntf_notifications_pending_oldest_seconds',
      help: 'How long the oldest pending notification has waited for an accepted push; 0 when none is pending',
      registers: this.r,
      collect() {
        if (self.sources) this.set(self.sources.pendingPushes().oldestSeconds);
      },
    });
  }

  bind(sources: NtfMetricSources): void {
    this.sources = sources;
  }
}
