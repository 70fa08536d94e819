// Relay configuration: <dir>/relay.json, overridden by HUSH_RELAY_* variables.
import path from 'node:path';
import { z } from 'zod';
import { boolSchema, listenerSchema, loadConfig, positiveSchema, type EnvMap } from '../server/config.ts';
import { MAX_MESSAGE_BYTES } from './protocol.ts';
import { DEFAULT_LIMITS } from './server.ts';

const positive = positiveSchema;
const bool = boolSchema;

export const relayConfigSchema = z
  .object({
    ...listenerSchema(5223, 9464),
    store: z
      .object({ fsync: bool.default(false), compactMinMB: positive.default(64) })
      .strict()
      .default({ fsync: false, compactMinMB: 64 }),
    limits: z
      .object({
        queueQuota: positive.default(DEFAULT_LIMITS.queueQuota),
        maxMessageBytes: positive.max(MAX_MESSAGE_BYTES).default(DEFAULT_LIMITS.maxMessageBytes),
        messageTtlHours: positive.default(DEFAULT_LIMITS.messageTtlMs / 3600_000),
        maxConnections: positive.default(DEFAULT_LIMITS.maxConnections),
        maxPending: positive.default(DEFAULT_LIMITS.maxPending),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type RelayConfig = z.infer<typeof relayConfigSchema>;

export const RELAY_ENV: EnvMap = {
  HUSH_RELAY_HOST: 'host',
  HUSH_RELAY_PORT: 'port',
  HUSH_RELAY_PUBLIC_HOST: 'publicHost',
  HUSH_RELAY_TLS_CERT: 'tls.cert',
  HUSH_RELAY_TLS_KEY: 'tls.key',
  HUSH_RELAY_METRICS_HOST: 'metrics.host',
  HUSH_RELAY_METRICS_PORT: 'metrics.port',
  HUSH_RELAY_FSYNC: 'store.fsync',
  HUSH_RELAY_COMPACT_MIN_MB: 'store.compactMinMB',
  HUSH_RELAY_QUEUE_QUOTA: 'limits.queueQuota',
  HUSH_RELAY_MAX_MESSAGE_BYTES: 'limits.maxMessageBytes',
  HUSH_RELAY_MESSAGE_TTL_HOURS: 'limits.messageTtlHours',
  HUSH_RELAY_MAX_CONNECTIONS: 'limits.maxConnections',
  HUSH_RELAY_MAX_PENDING: 'limits.maxPending',
  HUSH_LOG_LEVEL: 'logLevel',
};

export const relayFiles = (dir: string) => ({
  config: path.join(dir, 'relay.json'),
  identity: path.join(dir, 'identity.key'),
  store: path.join(dir, 'store'),
});

export const loadRelayConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) =>
  loadConfig(relayConfigSchema, relayFiles(dir).config, RELAY_ENV, env);
