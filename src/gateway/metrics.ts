// Prometheus metrics of a push gateway. Counts and timings, by the operator's
// names for the notification servers it serves; never tokens.
import client from 'prom-client';

export class GatewayMetrics {
  readonly registry = new client.Registry();
  private readonly r = [this.registry];

  readonly requests = new client.Counter({
    name: 'hush_gateway_requests_total',
    help: 'Push requests, by server and result (accepted, unauthorized, rate, quota, bad_request, busy)',
    labelNames: ['server', 'result'],
    registers: this.r,
  });
  readonly pushes = new client.Counter({
    name: 'hush_gateway_pushes_total',
    help: 'Pushes handed to a provider, by provider, kind and outcome',
    labelNames: ['provider', 'kind', 'outcome'],
    registers: this.r,
  });
  readonly pushSeconds = new client.Histogram({
    name: 'hush_gateway_push_seconds',
    help: 'Time a push provider took to accept or refuse a push',
    labelNames: ['provider'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: this.r,
  });
  readonly inFlight = new client.Gauge({ name: 'hush_gateway_in_flight', help: 'Pushes being delivered now', registers: this.r });
  readonly connectionsRefused = new client.Counter({
    name: 'hush_gateway_connections_refused_total',
    help: 'Connections closed at accept: their address already held maxConnectionsPerAddress',
    registers: this.r,
  });
}
