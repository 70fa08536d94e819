// `hush relay|ntf|gateway start`, the part every server shares: the key file
// `init` made, the logger, the listener with its TLS files read, and the ops
// endpoint (/metrics, /healthz) beside the protocol port.
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ConfigError } from './config.ts';
import { createLogger } from './log.ts';
import { startOps, type Health } from './ops.ts';

/** The logger of server `name` starting from `dir`, once the key file its `init` makes is known to be there. */
export function startLogger(name: string, dir: string, keyFile: string, logLevel: string): Logger {
  if (!fs.existsSync(keyFile)) throw new ConfigError(`${keyFile} not found: run \`hush ${name} init --dir ${dir}\` first`);
  return createLogger(name, logLevel);
}

type TlsFiles = { cert: string; key: string };

/** The `tls` option for the PEM files a config names (none without them). */
export const readTls = (tls: TlsFiles | undefined): { tls?: { cert: Buffer; key: Buffer } } =>
  tls ? { tls: { cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) } } : {};

/** Where a relay or NTF server listens, as its config (listenerSchema) says: host, port, publicHost, TLS, PROXY protocol. */
export function listenerOf(c: { host: string; port: number; publicHost?: string | undefined; tls?: TlsFiles | undefined; proxyProtocol: boolean }): {
  host: string;
  port: number;
  publicHost?: string;
  tls?: { cert: Buffer; key: Buffer };
  proxyProtocol?: boolean;
} {
  return {
    host: c.host,
    port: c.port,
    ...(c.publicHost ? { publicHost: c.publicHost } : {}),
    ...readTls(c.tls),
    ...(c.proxyProtocol ? { proxyProtocol: true } : {}),
  };
}

/** A started server with its ops endpoint; stop() closes the endpoint, then the server. */
export interface Running<S> {
  server: S;
  metricsPort: number;
  stop(): Promise<void>;
}

interface OpsServed {
  start(): Promise<unknown>;
  stop(): Promise<void>;
  metrics: { registry: Registry };
  /** Whether it can do its job (a failed store, relay links down); one with nothing that can fail for good (the gateway) has none. */
  health?(): { ok: boolean; reason?: string };
}

/**
 * Starts `server`, then its ops endpoint on `metrics` (if that fails, the
 * server is stopped): /healthz answers the server's health() (503 when not ok)
 * and the fields `details` adds.
 */
export async function startWithOps<S extends OpsServed>(
  server: S,
  metrics: { host: string; port: number },
  details: () => Record<string, unknown>,
): Promise<Running<S>> {
  await server.start();
  const health = (): Health => ({ ...details(), ...(server.health?.() ?? { ok: true }) });
  let ops;
  try {
    ops = await startOps(server.metrics.registry, metrics.host, metrics.port, health);
  } catch (e) {
    await server.stop(); // e.g. the metrics port is taken: leave nothing listening
    throw e;
  }
  return {
    server,
    metricsPort: ops.port,
    async stop() {
      await ops.close();
      await server.stop();
    },
  };
}
