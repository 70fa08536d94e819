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
  /** Finer below 10 ms than SECONDS_BUCKETS: where the app server's own share of a wake-up shows. */
  readonly publishSeconds = this.m.histogram(
    'publish_seconds',
    "Time from a publish's arrival to its reply: the checks and the provider's answer",
    [0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  private sources: { registrations(): number; online(): number } | undefined;

  constructor() {
    this.m.reading('registrations', 'Registered nodes (device tokens)', () => this.sources?.registrations());
    this.m.reading('servers_online', 'XMPP servers the component is connected to', () => this.sources?.online());
  }

  bind(sources: { registrations(): number; online(): number }): void {
    this.sources = sources;
  }
}
