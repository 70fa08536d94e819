// Prometheus metrics of a relay. Counts only: no IDs, keys or sizes of single messages.
import client from 'prom-client';
import { ConnectionMetrics } from '../server/connection-metrics.ts';
import type { QueueStore } from './store/store.ts';

export class RelayMetrics {
  readonly registry = new client.Registry();
  readonly commands = new client.Counter({
    name: 'hush_relay_commands_total',
    help: 'Commands received, by command',
    labelNames: ['command'],
    registers: [this.registry],
  });
  readonly errors = new client.Counter({
    name: 'hush_relay_errors_total',
    help: 'Error responses, by error',
    labelNames: ['error'],
    registers: [this.registry],
  });
  readonly creationsRefused = new client.Counter({
    name: 'hush_relay_creations_refused_total',
    help: 'NEW refused, by reason: rate_connection, rate_address (ERR RATE), password (ERR PASSWORD)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly messagesSent = new client.Counter({
    name: 'hush_relay_messages_sent_total',
    help: 'Messages accepted from senders',
    registers: [this.registry],
  });
  readonly messagesDelivered = new client.Counter({
    name: 'hush_relay_messages_delivered_total',
    help: 'MSG transmissions delivered to recipients',
    registers: [this.registry],
  });
  readonly notifications = new client.Counter({
    name: 'hush_relay_notifications_total',
    help: 'NMSG events, by outcome: delivered to a subscribed notifier, stored until one subscribes, or redelivered (unacknowledged, on NSUB/NSUBS)',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  /** hush_relay_connections, _connections_refused_total, _backpressure_total, _buffered_bytes_max. */
  readonly connections = new ConnectionMetrics('hush_relay', this.registry);

  constructor(store: QueueStore, now: () => number = Date.now) {
    const counts = () => store.counts();
    const gauge = (name: string, help: string, pick: (c: ReturnType<typeof counts>) => number) =>
      new client.Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(pick(counts()));
        },
      });
    gauge('hush_relay_queues', 'Queues in the store', (c) => c.queues);
    gauge('hush_relay_messages_stored', 'Messages waiting in queues', (c) => c.messages);
    gauge('hush_relay_notifiers', 'Queues with notifier credentials', (c) => c.notifiers);
    gauge('hush_relay_notifications_unacked', 'NMSGs kept until a notifier acknowledges them (the latest per queue)', (c) => c.pendingNotifications);
    new client.Gauge({
      name: 'hush_relay_notifications_unacked_oldest_seconds',
      help: 'Age of the oldest unacknowledged NMSG; 0 when there is none',
      registers: [this.registry],
      collect() {
        const oldest = store.oldestPendingNotification();
        this.set(oldest === undefined ? 0 : Math.max(0, now() - oldest) / 1000);
      },
    });
    new client.Gauge({
      name: 'hush_relay_store_failed',
      help: '1 when the store can no longer persist (memory is ahead of disk): restart the relay',
      registers: [this.registry],
      collect() {
        this.set(store.failure() === undefined ? 0 : 1);
      },
    });
  }
}
