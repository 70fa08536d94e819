// The connection metrics every ProtocolServer reports, under its server's prefix
// (hush_relay, hush_ntf). Counts and sizes only: no addresses.
import client, { type Registry } from 'prom-client';

export class ConnectionMetrics {
  readonly open: client.Gauge;
  readonly refused: client.Counter<'reason'>;
  readonly backpressure: client.Counter<'event'>;
  private largestBuffered: () => number = () => 0;

  constructor(prefix: string, registry: Registry) {
    const registers = [registry];
    this.open = new client.Gauge({ name: `${prefix}_connections`, help: 'Open client connections', registers });
    this.refused = new client.Counter({
      name: `${prefix}_connections_refused_total`,
      help: 'Connections refused or dropped before their session, by reason: limit (maxConnections), address (maxConnectionsPerAddress), http (upgrade request too slow or bad), handshake (no hello in time)',
      labelNames: ['reason'],
      registers,
    });
    this.backpressure = new client.Counter({
      name: `${prefix}_backpressure_total`,
      help: 'Sessions whose client reads too slowly, by event: paused (no longer read until it catches up), closed (4008)',
      labelNames: ['event'],
      registers,
    });
    const self = this;
    new client.Gauge({
      name: `${prefix}_buffered_bytes_max`,
      help: 'Outbound bytes buffered for the session with the most now (unsent blocks and replies waiting for the store)',
      registers,
      collect() {
        this.set(self.largestBuffered());
      },
    });
  }

  /** Where the buffered-bytes gauge reads from: the server, once it exists. */
  bind(largestBuffered: () => number): void {
    this.largestBuffered = largestBuffered;
  }
}
