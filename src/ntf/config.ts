// Notification server configuration: <dir>/ntf.json, overridden by HUSH_NTF_* variables.
import path from 'node:path';
import { z } from 'zod';
import { journalStoreFields, listenerEnv, listenerSchema, loadConfig, positiveSchema as positive, type EnvMap } from '../server/config.ts';
import { providerEnv, providerSchemas } from '../push/config.ts';
import { DEFAULT_KEEPALIVE } from '../core/client.ts';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../server/protocol-server.ts';
import { DEFAULT_DISPATCH } from './dispatch.ts';
import { DEFAULT_LINK_DOWN_LIMIT_MS } from './server.ts';

const PROVIDER_KEYS = Object.keys(providerSchemas) as Array<keyof typeof providerSchemas>;

export const ntfConfigSchema = z
  .object({
    ...listenerSchema(5224, 9465),
    store: z
      .object({
        backend: z.enum(['journal', 'postgres']).default('journal'),
        ...journalStoreFields,
        /** postgres://user@host:port/db, for backend postgres. */
        databaseUrl: z.string().min(1).optional(),
        schema: z.string().regex(/^[a-z_][a-z0-9_]*$/).default('hush_ntf'),
      })
      .strict()
      .prefault({})
      .refine((s) => s.backend !== 'postgres' || s.databaseUrl, { message: 'store.databaseUrl is required for backend postgres' }),
    /** Providers built in: apns, fcm, webpush (src/push/config.ts). */
    ...providerSchemas,
    /** Or a remote push gateway that holds the credentials; then no provider is built in. */
    gateway: z
      .object({
        url: z.url({ protocol: /^https?$/ }),
        /** The key `hush gateway add-server` printed. */
        key: z.string().min(16),
        caFile: z.string().min(1).optional(),
        connections: positive.default(1),
      })
      .strict()
      .optional(),
    dispatch: z
      .object({
        queueLimit: positive.default(DEFAULT_DISPATCH.queueLimit),
        concurrency: positive.default(DEFAULT_DISPATCH.concurrency),
        maxAttempts: positive.default(DEFAULT_DISPATCH.maxAttempts),
      })
      .strict()
      .prefault({}),
    cronIntervalSeconds: positive.default(10),
    /** Relay links: PING after this much quiet, closed after the timeout more; clients idle this long are closed. */
    liveness: z
      .object({
        pingIntervalSeconds: positive.default(DEFAULT_KEEPALIVE.intervalMs / 1000),
        pingTimeoutSeconds: positive.default(DEFAULT_KEEPALIVE.timeoutMs / 1000),
        idleTimeoutSeconds: positive.default(DEFAULT_IDLE_TIMEOUT_MS / 1000),
        /** /healthz answers 503 while a relay link with subscriptions is down longer than this. */
        linkDownLimitSeconds: positive.default(DEFAULT_LINK_DOWN_LIMIT_MS / 1000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((c) => !c.gateway || !PROVIDER_KEYS.some((k) => c[k]), {
    message: 'either a gateway or providers built in, not both',
    path: ['gateway'],
  });

export type NtfConfig = z.infer<typeof ntfConfigSchema>;

export const NTF_ENV: EnvMap = {
  ...listenerEnv('HUSH_NTF_'),
  HUSH_NTF_STORE: 'store.backend',
  HUSH_NTF_FSYNC: 'store.fsync',
  HUSH_NTF_DATABASE_URL: 'store.databaseUrl',
  HUSH_NTF_DATABASE_SCHEMA: 'store.schema',
  ...providerEnv('HUSH_NTF_'),
  HUSH_NTF_GATEWAY_URL: 'gateway.url',
  HUSH_NTF_GATEWAY_KEY: 'gateway.key',
  HUSH_NTF_GATEWAY_CA_FILE: 'gateway.caFile',
  HUSH_NTF_PING_INTERVAL_SECONDS: 'liveness.pingIntervalSeconds',
  HUSH_NTF_PING_TIMEOUT_SECONDS: 'liveness.pingTimeoutSeconds',
  HUSH_NTF_IDLE_TIMEOUT_SECONDS: 'liveness.idleTimeoutSeconds',
};

export const ntfFiles = (dir: string) => ({
  config: path.join(dir, 'ntf.json'),
  identity: path.join(dir, 'identity.key'),
  serviceKey: path.join(dir, 'service.key'),
  store: path.join(dir, 'store'),
});

export const loadNtfConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) =>
  loadConfig(ntfConfigSchema, ntfFiles(dir).config, NTF_ENV, env);
