// Prometheus metrics of the XMPP app server. Counts only: no node, JID or token.
import { MetricSet, SECONDS_BUCKETS } from '../server/metrics.ts';

export class XmppMetrics {
  private readonly m = new MetricSet('hush_xmpp');
  readonly registry = this.m.registry;
  readonly publishes = this.m.counter(
    'publishes_total',
    'XEP-0357 publishes, by result: delivered (the provider took the push), invalid (dead device token: registration deleted), retry, failed, unknown_node, not_authorized (wrong secret), rate (over the per-node budget)',
    ['result'],
  );
  readonly commands = this.m.counter('commands_total', 'Registration commands, by command (register, unregister) and result', ['command', 'result']);
  readonly pushSeconds = this.m.histogram('push_seconds', 'Time a push provider took to accept or refuse a push', SECONDS_BUCKETS, ['provider']);
  private sources: { registrations(): number; online(): number } | undefined;

  constructor() {
    this.m.reading('registrations', 'Registered nodes (device tokens)', () => this.sources?.registrations());
    this.m.reading('servers_online', 'XMPP servers the component is connected to', () => this.sources?.online());
  }

  bind(sources: { registrations(): number; online(): number }): void {
    this.sources = sources;
  }
}
