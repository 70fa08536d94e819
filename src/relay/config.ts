// Relay configuration: <dir>/relay.json, overridden by HUSH_RELAY_* variables.
import path from 'node:path';
import { z } from 'zod';
import { creationEnv, creationSchema } from '../server/creation.ts';
import { journalStoreFields, listenerEnv, listenerSchema, loadConfig, positiveSchema as positive, type EnvMap } from '../server/config.ts';
import { connectionLimitFields, connectionLimitsEnv } from '../server/connection-limits.ts';
import { MAX_MESSAGE_BYTES } from './protocol.ts';
import { DEFAULT_CREATION, DEFAULT_LIMITS } from './server.ts';

export const relayConfigSchema = z
  .object({
    ...listenerSchema(5223, 9464),
    store: z.object(journalStoreFields).strict().prefault({}),
    limits: z
      .object({
        queueQuota: positive.default(DEFAULT_LIMITS.queueQuota),
        maxMessageBytes: positive.max(MAX_MESSAGE_BYTES).default(DEFAULT_LIMITS.maxMessageBytes),
        messageTtlHours: positive.default(DEFAULT_LIMITS.messageTtlMs / 3600_000),
        ...connectionLimitFields,
        idleTimeoutSeconds: positive.default(DEFAULT_LIMITS.idleTimeoutMs / 1000),
      })
      .strict()
      .prefault({}),
    creation: creationSchema(DEFAULT_CREATION),
  })
  .strict();

export const RELAY_ENV: EnvMap = {
  ...listenerEnv('HUSH_RELAY_'),
  HUSH_RELAY_FSYNC: 'store.fsync',
  HUSH_RELAY_COMPACT_MIN_MB: 'store.compactMinMB',
  HUSH_RELAY_QUEUE_QUOTA: 'limits.queueQuota',
  HUSH_RELAY_MAX_MESSAGE_BYTES: 'limits.maxMessageBytes',
  HUSH_RELAY_MESSAGE_TTL_HOURS: 'limits.messageTtlHours',
  ...connectionLimitsEnv('HUSH_RELAY_'),
  HUSH_RELAY_IDLE_TIMEOUT_SECONDS: 'limits.idleTimeoutSeconds',
  ...creationEnv('HUSH_RELAY_'),
};

export const relayFiles = (dir: string) => ({
  config: path.join(dir, 'relay.json'),
  identity: path.join(dir, 'identity.key'),
  store: path.join(dir, 'store'),
});

export const loadRelayConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) =>
  loadConfig(relayConfigSchema, relayFiles(dir).config, RELAY_ENV, env);
