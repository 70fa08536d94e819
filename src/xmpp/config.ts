// XMPP app server configuration: <dir>/xmpp.json, overridden by HUSH_XMPP_* variables.
import path from 'node:path';
import { z } from 'zod';
import { providerEnv, providerSchemas } from '../push/config.ts';
import { boolSchema, loadConfig, portSchema, positiveSchema, type EnvMap } from '../server/config.ts';

/** One XMPP server the app server is a component of (its XEP-0114 listener). */
const serverSchema = z
  .object({
    /** xmpp://host:port of the server's component port. */
    service: z.string().regex(/^xmpp:\/\/[^/\s]+:\d+$/, 'xmpp://host:port'),
    /** The component's domain on that server (Prosody: Component "push.example.com"). */
    domain: z.string().min(1),
    /** The component secret set on that server. */
    password: z.string().min(8),
  })
  .strict();

export const xmppConfigSchema = z
  .object({
    servers: z.array(serverSchema).default([]),
    ...providerSchemas,
    store: z.object({ fsync: boolSchema.default(false) }).strict().prefault({}),
    /** Registrations at most: a stranger on a served server may register. */
    maxRegistrations: positiveSchema.default(1_000_000),
    /** Pushes per node: at once, and regained per minute. */
    pushesPerNode: z.object({ burst: positiveSchema.default(10), perMinute: positiveSchema.default(60) }).strict().prefault({}),
    /** New registrations per XMPP server (its users' domain): at once, and regained per minute. */
    registrationsPerServer: z.object({ burst: positiveSchema.default(1000), perMinute: positiveSchema.default(100) }).strict().prefault({}),
    metrics: z
      .object({ host: z.string().min(1).default('127.0.0.1'), port: portSchema.default(9467) })
      .strict()
      .prefault({}),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type XmppConfig = z.infer<typeof xmppConfigSchema>;

export const XMPP_ENV: EnvMap = {
  HUSH_XMPP_METRICS_HOST: 'metrics.host',
  HUSH_XMPP_METRICS_PORT: 'metrics.port',
  HUSH_XMPP_FSYNC: 'store.fsync',
  HUSH_LOG_LEVEL: 'logLevel',
  ...providerEnv('HUSH_XMPP_'),
};

export const xmppFiles = (dir: string) => ({ config: path.join(dir, 'xmpp.json'), store: path.join(dir, 'store') });

export const loadXmppConfig = (dir: string, env: NodeJS.ProcessEnv = process.env) => loadConfig(xmppConfigSchema, xmppFiles(dir).config, XMPP_ENV, env);
