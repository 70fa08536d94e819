// The live dashboard's data (GET /api/metrics): one snapshot of the local
// stack's Prometheus metrics — the relay's and the notification server's
// registries — read with getMetricsAsJSON() and reduced to plain numbers.
// Counters are totals since start; the dashboard computes rates from deltas
// between snapshots. Like the metrics themselves: counts and timings only.
import type { Registry } from 'prom-client';
import { SUB_STATUSES, TOKEN_STATUSES, type SubStatus, type TokenStatusName } from '../ntf/protocol.ts';
import type { PushKind } from '../push/device.ts';

export const PUSH_KINDS: readonly PushKind[] = ['verification', 'message', 'check'];
export const PUSH_OUTCOMES = ['delivered', 'invalid', 'failed'] as const;

export interface DashboardMetrics {
  /** When the snapshot was taken (ms since the epoch). */
  time: number;
  /** Device tokens at the notification server, by status (hush_ntf_tokens). */
  tokens: Record<TokenStatusName, number>;
  /** Subscriptions, by status; INACTIVE = ACTIVE at a relay that is disconnected now (hush_ntf_subscriptions). */
  subscriptions: Record<SubStatus, number>;
  /** Pushes finished by the notification server (counters, totals since start; hush_ntf_pushes_total). */
  pushes: {
    total: number;
    byOutcome: Record<(typeof PUSH_OUTCOMES)[number], number>;
    byKind: Record<PushKind, number>;
    /** Finished pushes by provider (apns, apns-sandbox, fcm, webpush…). */
    byProvider: Record<string, number>;
    /** Attempts to be retried (hush_ntf_push_retries_total). */
    retries: number;
    /** Pushes waiting to be sent, by provider (hush_ntf_push_queue_length). */
    queued: Record<string, number>;
  };
  /** Time providers took to accept or refuse a push, all providers summed (hush_ntf_push_seconds). */
  pushLatency: Histogram;
  /** From an NMSG's arrival to the provider accepting the message push carrying it (hush_ntf_notification_delay_seconds). */
  notificationDelay: Histogram;
  ntf: {
    /** NMSGs received from relays (counter). */
    notificationsReceived: number;
    /** Relays the notification server is connected to. */
    relayConnections: number;
    /** Client connections (apps) open now. */
    connections: number;
  };
  relay: {
    /** Queues in the store. */
    queues: number;
    /** Messages waiting in queues. */
    messagesWaiting: number;
    /** Queues with notifier credentials. */
    notifiers: number;
    /** NMSGs kept for a notifier that is not subscribed. */
    pendingNotifications: number;
    /** Client connections open now. */
    connections: number;
    /** Counters: messages accepted from senders, MSGs delivered to recipients. */
    messagesSent: number;
    messagesDelivered: number;
    /** NMSG events by outcome (counter): delivered to a subscribed notifier, or stored. */
    notifications: Record<string, number>;
  };
}

export interface Histogram {
  /** Cumulative, as in Prometheus: `count` observations took ≤ `le` seconds; the last is `le: '+Inf'` (= count). */
  buckets: Array<{ le: number | '+Inf'; count: number }>;
  count: number;
  /** Seconds. */
  sum: number;
}

/** What dashboardMetrics reads: the stack's relay and notification server (RunningRelay / RunningNtf). */
export interface MetricsSources {
  relay: { server: { metrics: { registry: Registry } } };
  ntf: { server: { metrics: { registry: Registry } } };
}

type MetricJSON = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];
type Value = { value: number; labels: Record<string, string | number | undefined>; metricName?: string };

function index(metrics: MetricJSON[]): Map<string, Value[]> {
  const m = new Map<string, Value[]>();
  for (const metric of metrics) m.set(metric.name, metric.values as Value[]);
  return m;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** Sum of a metric's values, all labels. */
function sum(values: Value[] | undefined): number {
  let s = 0;
  for (const v of values ?? []) s += num(v.value);
  return s;
}

/** Sums values by one label's value, starting from `keys` at 0. */
function byLabel<K extends string>(values: Value[] | undefined, label: string, keys: readonly K[] = []): Record<K, number> {
  const r = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  for (const v of values ?? []) {
    const k = v.labels[label];
    if (k === undefined) continue;
    r[String(k) as K] = (r[String(k) as K] ?? 0) + num(v.value);
  }
  return r;
}

function histogram(values: Value[] | undefined): Histogram {
  const buckets = new Map<number, number>();
  let count = 0;
  let total = 0;
  for (const v of values ?? []) {
    if (v.metricName?.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + num(v.value));
    } else if (v.metricName?.endsWith('_count')) count += num(v.value);
    else if (v.metricName?.endsWith('_sum')) total += num(v.value);
  }
  return {
    buckets: [...buckets].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le: le === Infinity ? ('+Inf' as const) : le, count: c })),
    count,
    sum: total,
  };
}

/** One snapshot of the stack's metrics for the dashboard. */
export async function dashboardMetrics(stack: MetricsSources): Promise<DashboardMetrics> {
  const [relayJson, ntfJson] = await Promise.all([
    stack.relay.server.metrics.registry.getMetricsAsJSON(),
    stack.ntf.server.metrics.registry.getMetricsAsJSON(),
  ]);
  const r = index(relayJson);
  const n = index(ntfJson);
  const pushes = n.get('hush_ntf_pushes_total');
  return {
    time: Date.now(),
    tokens: byLabel(n.get('hush_ntf_tokens'), 'status', TOKEN_STATUSES),
    subscriptions: byLabel(n.get('hush_ntf_subscriptions'), 'status', SUB_STATUSES),
    pushes: {
      total: sum(pushes),
      byOutcome: byLabel(pushes, 'outcome', PUSH_OUTCOMES),
      byKind: byLabel(pushes, 'kind', PUSH_KINDS),
      byProvider: byLabel(pushes, 'provider'),
      retries: sum(n.get('hush_ntf_push_retries_total')),
      queued: byLabel(n.get('hush_ntf_push_queue_length'), 'provider'),
    },
    pushLatency: histogram(n.get('hush_ntf_push_seconds')),
    notificationDelay: histogram(n.get('hush_ntf_notification_delay_seconds')),
    ntf: {
      notificationsReceived: sum(n.get('hush_ntf_notifications_received_total')),
      relayConnections: sum(n.get('hush_ntf_relay_connections')),
      connections: sum(n.get('hush_ntf_connections')),
    },
    relay: {
      queues: sum(r.get('hush_relay_queues')),
      messagesWaiting: sum(r.get('hush_relay_messages_stored')),
      notifiers: sum(r.get('hush_relay_notifiers')),
      pendingNotifications: sum(r.get('hush_relay_notifications_unacked')),
      connections: sum(r.get('hush_relay_connections')),
      messagesSent: sum(r.get('hush_relay_messages_sent_total')),
      messagesDelivered: sum(r.get('hush_relay_messages_delivered_total')),
      notifications: byLabel(r.get('hush_relay_notifications_total'), 'outcome', ['delivered', 'stored']),
    },
  };
}
