// The connection metrics every ProtocolServer reports, under its server's prefix
// (hush_relay, hush_ntf). Counts and sizes only: no addresses.
import type client from 'prom-client';
import type { MetricSet } from './metrics.ts';

export class ConnectionMetrics {
  readonly open: client.Gauge;
  readonly refused: client.Counter<'reason'>;
  readonly backpressure: client.Counter<'event'>;
  private largestBuffered: () => number = () => 0;

  constructor(m: MetricSet) {
    this.open = m.gauge('connections', 'Open client connections');
    this.refused = m.counter(
      'connections_refused_total',
      'Connections refused or dropped before their session, by reason: limit (maxConnections), address (maxConnectionsPerAddress), http (upgrade request too slow or bad), handshake (no hello in time), proxy (no valid PROXY protocol header in time)',
      ['reason'],
    );
    this.backpressure = m.counter(
      'backpressure_total',
      'Sessions whose client reads too slowly, by event: paused (no longer read until it catches up), closed (4008)',
      ['event'],
    );
    m.reading('buffered_bytes_max', 'Outbound bytes buffered for the session with the most now (unsent blocks and replies waiting for the store)', () =>
      this.largestBuffered(),
    );
  }

  /** Where the buffered-bytes gauge reads from: the server, once it exists. */
  bind(largestBuffered: () => number): void {
    this.largestBuffered = largestBuffered;
  }
}
