// Prometheus metrics of a push gateway. Counts and timings, by the operator's
// names for the notification servers it serves; never tokens.
import { MetricSet, SECONDS_BUCKETS } from '../server/metrics.ts';

export class GatewayMetrics {
  private readonly m = new MetricSet('hush_gateway');
  readonly registry = this.m.registry;
  readonly requests = this.m.counter(
    'requests_total',
    'Push requests, by server and result (accepted, unauthorized, rate, quota, bad_request, busy)',
    ['server', 'result'],
  );
  readonly pushes = this.m.counter('pushes_total', 'Pushes handed to a provider, by provider, kind and outcome', ['provider', 'kind', 'outcome']);
  readonly pushSeconds = this.m.histogram('push_seconds', 'Time a push provider took to accept or refuse a push', SECONDS_BUCKETS, ['provider']);
  readonly inFlight = this.m.gauge('in_flight', 'Pushes being delivered now');
  readonly connectionsRefused = this.m.counter(
    'connections_refused_total',
    'Connections closed at accept: their address already held maxConnectionsPerAddress',
  );
}
