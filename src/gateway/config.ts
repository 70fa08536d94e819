// Push gateway configuration: <dir>/gateway.json, overridden by HUSH_GATEWAY_* variables.
import path from 'node:path';
import { z } from 'zod';
import { providerEnv, providerSchemas } from '../push/config.ts';
import { listenerEnv, listenerSchema, loadConfig, nonNegativeSchema, positiveSchema, type EnvMap } from '../server/config.ts';
import { DEFAULT_CONNECTIONS_PER_ADDRESS, DEFAULT_IDLE_MS } from './limits.ts';

export const serverAccountSchema = z
  .object({
    name: z.string().min(1).max(64),
    /** SHA-256 (hex) of the key the server authenticates with. */
    keyHash: z.string().regex(/^[0-9a-f]{64}$/),
    ratePerSecond: positiveSchema.default(1000),
    /** Pushes allowed at once above the rate (default: two seconds' worth). */
    burst: positiveSchema.optional(),
    /** Pushes per UTC day; 0 = unlimited. */
    dailyQuota: nonNegativeSchema.default(0),
  })
  .strict()
  .transform((s) => ({ ...s, burst: s.burst ?? s.ratePerSecond * 2 }));

export const gatewayConfigSchema = z
  .object({
    ...listenerSchema(5225, 9466),
    ...providerSchemas,
    /** The notification servers allowed to push (see `hush gateway add-server`). */
    servers: z.array(serverAccountSchema).default([]),
    maxInFlight: positiveSchema.default(10_000),
    /** TCP connections per client address (IPv6: per /64); 0: no cap. */
    maxConnectionsPerAddress: nonNegativeSchema.default(DEFAULT_CONNECTIONS_PER_ADDRESS),
    /** A connection with no request for this long is closed. */
    idleTimeoutSeconds: positiveSchema.default(DEFAULT_IDLE_MS / 1000),
  })
  // Its HTTP/2 listener does not read the PROXY protocol: a gateway.json asking for it is refused.
  .omit({ proxyProtocol: true })
  .strict()
  .refine((c) => c.tls || ['127.0.0.1', '::1', 'localhost'].includes(c.host), {
    message: 'tls is required unless the gateway listens on loopback only (keys would cross the network in clear)',
    path: ['tls'],
  });

export const GATEWAY_ENV: EnvMap = {
  // The gateway prints no address, so no HUSH_GATEWAY_PUBLIC_HOST; nor PROXY_PROTOCOL (above).
  ...listenerEnv('HUSH_GATEWAY_', { publicHost: false, proxyProtocol: false }),
  ...providerEnv('HUSH_GATEWAY_'),
};

export const gatewayFiles = (dir: string) => ({
  config: path.join(dir, 'gateway.json'),
  sealKey: path.join(dir, 'seal.key'),
});

export const loadGatewayConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) =>
  loadConfig(gatewayConfigSchema, gatewayFiles(dir).config, GATEWAY_ENV, env);
