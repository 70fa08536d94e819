// Declaring a server's Prometheus metrics: one registry, one name prefix
// (hush_relay, hush_ntf, hush_gateway). Gauges read their value when scraped.
import client from 'prom-client';

/** Latencies from 1 ms to a few seconds. */
export const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class MetricSet {
  readonly registry = new client.Registry();
  private readonly registers = [this.registry];

  constructor(private readonly prefix: string) {}

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): client.Counter<L> {
    return new client.Counter<L>({ name: `${this.prefix}_${name}`, help, labelNames, registers: this.registers });
  }

  histogram<L extends string = never>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []): client.Histogram<L> {
    return new client.Histogram<L>({ name: `${this.prefix}_${name}`, help, buckets, labelNames, registers: this.registers });
  }

  /** A gauge the code sets. */
  gauge(name: string, help: string): client.Gauge {
    return new client.Gauge({ name: `${this.prefix}_${name}`, help, registers: this.registers });
  }

  /** A gauge read at scrape time; undefined leaves it as it was. */
  reading(name: string, help: string, read: () => number | undefined): void {
    new client.Gauge({
      name: `${this.prefix}_${name}`,
      help,
      registers: this.registers,
      collect() {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  }

  /** A gauge with one label, read at scrape time as (label value, number) pairs. */
  readingBy(name: string, help: string, label: string, read: () => Iterable<readonly [string, number]>): void {
    new client.Gauge({
      name: `${this.prefix}_${name}`,
      help,
      labelNames: [label],
      registers: this.registers,
      collect() {
        for (const [value, n] of read()) this.set({ [label]: value }, n);
      },
    });
  }
}
