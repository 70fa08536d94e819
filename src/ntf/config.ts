// Notification server configuration: <dir>/ntf.json, overridden by HUSH_NTF_* variables.
import path from 'node:path';
import { z } from 'zod';
import { isAddressRule } from '../server/address-guard.ts';
import { boolSchema, journalStoreFields, listenerEnv, listenerSchema, loadConfig, positiveSchema as positive, type EnvMap } from '../server/config.ts';
import { providerEnv, providerSchemas } from '../push/config.ts';
import { DEFAULT_KEEPALIVE } from '../core/client.ts';
import { connectionLimitFields, connectionLimitsEnv, DEFAULT_IDLE_TIMEOUT_MS } from '../server/connection-limits.ts';
import { creationEnv, creationPolicy, creationSchema } from '../server/creation.ts';
import { DEFAULT_DISPATCH } from './dispatch.ts';
import { DEFAULT_NTF_CREATION as CREATION, type NtfCreation } from './creation.ts';
import { DEFAULT_LINK_DOWN_LIMIT_MS } from './server.ts';
import { DEFAULT_LEASE_MS, DEFAULT_RENEW_MS } from './cluster/leases.ts';

const PROVIDER_KEYS = Object.keys(providerSchemas) as Array<keyof typeof providerSchemas>;

/** Host names, addresses or CIDR blocks: a JSON array, or from the env a comma-separated list. */
const addressRules = z
  .preprocess(
    (v) => (typeof v === 'string' ? v.split(',').map((r) => r.trim()).filter(Boolean) : v),
    z.array(z.string()).superRefine((rules, ctx) => {
      const bad = rules.filter((r) => !isAddressRule(r));
      if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `not a host name, address or CIDR block: ${bad.join(', ')}` });
    }),
  )
  .default([]);

/** Relays on this machine only: for the local stack, tests and benches. */
export const LOCAL_RELAYS = { allow: ['127.0.0.1'] };

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
    /** Several instances on one PostgreSQL database (docs/ntf-cluster.md): relay leases and this member's name. */
    cluster: z
      .object({
        /** This member's name in the leases; default host name:port (stable across restarts, unique per listener). */
        instanceId: z.string().min(1).max(200).optional(),
        leaseSeconds: positive.default(DEFAULT_LEASE_MS / 1000),
        renewSeconds: positive.default(DEFAULT_RENEW_MS / 1000),
      })
      .strict()
      .prefault({})
      .refine((c) => c.renewSeconds * 2 < c.leaseSeconds, { message: 'renewSeconds must be under half of leaseSeconds' }),
    /** Client connections: caps, handshake timeout, outbound buffer (the idle timeout is liveness.idleTimeoutSeconds). */
    limits: z.object(connectionLimitFields).strict().prefault({}),
    /** Which relay addresses SNEW may name and the server dials (src/server/address-guard.ts); the reconnect delay's cap. */
    relays: z
      .object({
        allowPrivate: boolSchema.default(false),
        allow: addressRules,
        deny: addressRules,
        maxBackoffSeconds: positive.default(30),
      })
      .strict()
      .prefault({}),
    /** Relay links: PING after this much quiet, closed after the timeout more; clients idle this long are closed. */
    liveness: z
      .object({
        pingIntervalSeconds: positive.default(DEFAULT_KEEPALIVE.intervalMs / 1000),
        pingTimeoutSeconds: positive.default(DEFAULT_KEEPALIVE.timeoutMs / 1000),
        idleTimeoutSeconds: positive.default(DEFAULT_IDLE_TIMEOUT_MS / 1000),
        /** /healthz answers 503 while a relay link with ACTIVE subscriptions is down longer than this. */
        linkDownLimitSeconds: positive.default(DEFAULT_LINK_DOWN_LIMIT_MS / 1000),
      })
      .strict()
      .prefault({}),
    /**
     * TNEW: password and rates as the relay's NEW (src/server/creation.ts); SNEW's
     * rates and cap per token; verification pushes per device token; how long
     * tokens that are not ACTIVE are kept (src/ntf/creation.ts).
     */
    creation: creationSchema(CREATION.tokens)
      .unwrap()
      .extend({
        subscriptions: creationSchema(CREATION.subscriptions)
          .unwrap()
          .omit({ password: true })
          .extend({ maxPerToken: positive.default(CREATION.maxSubscriptionsPerToken) })
          .prefault({}),
        verificationPushesBurst: positive.default(CREATION.verificationPushes.burst),
        verificationPushesPerHour: positive.default(CREATION.verificationPushes.perMinute * 60),
        unverifiedTokenHours: positive.default(CREATION.unverifiedTokenMs / 3_600_000),
        inactiveTokenDays: positive.default(CREATION.inactiveTokenMs / 86_400_000),
      })
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
  HUSH_NTF_INSTANCE_ID: 'cluster.instanceId',
  HUSH_NTF_LEASE_SECONDS: 'cluster.leaseSeconds',
  HUSH_NTF_LEASE_RENEW_SECONDS: 'cluster.renewSeconds',
  ...providerEnv('HUSH_NTF_'),
  HUSH_NTF_GATEWAY_URL: 'gateway.url',
  HUSH_NTF_GATEWAY_KEY: 'gateway.key',
  HUSH_NTF_GATEWAY_CA_FILE: 'gateway.caFile',
  HUSH_NTF_PING_INTERVAL_SECONDS: 'liveness.pingIntervalSeconds',
  HUSH_NTF_PING_TIMEOUT_SECONDS: 'liveness.pingTimeoutSeconds',
  HUSH_NTF_IDLE_TIMEOUT_SECONDS: 'liveness.idleTimeoutSeconds',
  ...connectionLimitsEnv('HUSH_NTF_'),
  ...creationEnv('HUSH_NTF_'),
  HUSH_NTF_MAX_SUBSCRIPTIONS_PER_TOKEN: 'creation.subscriptions.maxPerToken',
  HUSH_NTF_UNVERIFIED_TOKEN_HOURS: 'creation.unverifiedTokenHours',
  HUSH_NTF_INACTIVE_TOKEN_DAYS: 'creation.inactiveTokenDays',
  HUSH_NTF_RELAYS_ALLOW_PRIVATE: 'relays.allowPrivate',
  HUSH_NTF_RELAYS_ALLOW: 'relays.allow',
  HUSH_NTF_RELAYS_DENY: 'relays.deny',
  HUSH_NTF_RELAYS_MAX_BACKOFF_SECONDS: 'relays.maxBackoffSeconds',
};

const PLENTY = 1_000_000;
/** A `creation` section with the limits out of the way: benches making thousands of tokens from loopback. */
export const NO_CREATION_LIMITS = {
  perConnectionBurst: PLENTY,
  perConnectionPerHour: PLENTY,
  perAddressBurst: PLENTY,
  perAddressPerHour: PLENTY,
  subscriptions: { perConnectionBurst: PLENTY, perConnectionPerHour: PLENTY, perAddressBurst: PLENTY, perAddressPerHour: PLENTY, maxPerToken: PLENTY },
  verificationPushesBurst: PLENTY,
  verificationPushesPerHour: PLENTY,
};

/** The server's creation limits from the `creation` section. */
export function ntfCreation(c: NtfConfig['creation']): NtfCreation {
  return {
    tokens: creationPolicy(c),
    subscriptions: creationPolicy(c.subscriptions),
    maxSubscriptionsPerToken: c.subscriptions.maxPerToken,
    verificationPushes: { burst: c.verificationPushesBurst, perMinute: c.verificationPushesPerHour / 60 },
    unverifiedTokenMs: c.unverifiedTokenHours * 3_600_000,
    inactiveTokenMs: c.inactiveTokenDays * 86_400_000,
  };
}

export const ntfFiles = (dir: string) => ({
  config: path.join(dir, 'ntf.json'),
  identity: path.join(dir, 'identity.key'),
  serviceKey: path.join(dir, 'service.key'),
  store: path.join(dir, 'store'),
});

export const loadNtfConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) =>
  loadConfig(ntfConfigSchema, ntfFiles(dir).config, NTF_ENV, env);
