// Prometheus metrics of a relay. Counts only: no IDs, keys or sizes of single messages.
import { ConnectionMetrics } from '../server/connection-metrics.ts';
import { MetricSet } from '../server/metrics.ts';
import type { QueueStore } from './store/store.ts';

export class RelayMetrics {
  private readonly m = new MetricSet('hush_relay');
  readonly registry = this.m.registry;
  readonly commands = this.m.counter('commands_total', 'Commands received, by command', ['command']);
  readonly errors = this.m.counter('errors_total', 'Error responses, by error', ['error']);
  readonly creationsRefused = this.m.counter(
    'creations_refused_total',
    'NEW refused, by reason: rate_connection, rate_address (ERR RATE), password (ERR PASSWORD)',
    ['reason'],
  );
  readonly messagesSent = this.m.counter('messages_sent_total', 'Messages accepted from senders');
  readonly messagesDelivered = this.m.counter('messages_delivered_total', 'MSG transmissions delivered to recipients');
  readonly notifications = this.m.counter(
    'notifications_total',
    'NMSG events, by outcome: delivered to a subscribed notifier, stored until one subscribes, or redelivered (unacknowledged, on NSUB/NSUBS)',
    ['outcome'],
  );
  readonly serviceTakeovers = this.m.counter(
    'service_takeovers_total',
    "NSUBS that took a service's subscription from another live connection (that one got ENDS): one notification server replacing its own dead link, or two fighting over one service key",
  );
  /** hush_relay_connections, _connections_refused_total, _backpressure_total, _buffered_bytes_max. */
  readonly connections = new ConnectionMetrics(this.m);

  constructor(store: QueueStore, now: () => number = Date.now) {
    const m = this.m;
    m.reading('queues', 'Queues in the store', () => store.counts().queues);
    m.reading('messages_stored', 'Messages waiting in queues', () => store.counts().messages);
    m.reading('notifiers', 'Queues with notifier credentials', () => store.counts().notifiers);
    m.reading('notifications_unacked', 'NMSGs kept until a notifier acknowledges them (the latest per queue)', () => store.counts().pendingNotifications);
    m.reading('notifications_unacked_oldest_seconds', 'Age of the oldest unacknowledged NMSG; 0 when there is none', () => {
      const oldest = store.oldestPendingNotification();
      return oldest === undefined ? 0 : Math.max(0, now() - oldest) / 1000;
    });
    m.reading('store_failed', '1 when the store can no longer persist (memory is ahead of disk): restart the relay', () =>
      store.failure() === undefined ? 0 : 1,
    );
  }
}
