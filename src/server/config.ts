// Config loading shared by every Hush server: a JSON file, then environment
// overrides, then one zod validation whose errors name the setting and where it came from.
import fs from 'node:fs';
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** env variable → dotted path in the config object. */
export type EnvMap = Record<string, string>;

export function loadConfig<S extends z.ZodType>(
  schema: S,
  file: string,
  envMap: EnvMap,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> {
  let raw: Record<string, unknown> = {};
  if (fs.existsSync(file)) {
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${file}: must be a JSON object`);
  }
  const sources = new Map<string, string>();
  for (const [name, path] of Object.entries(envMap)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setPath(raw, path, value);
    sources.set(path, name);
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => {
    const path = i.path.join('.');
    const from = sources.get(path) ? `env ${sources.get(path)}` : file;
    return `  ${path || '(root)'}: ${i.message} (from ${from})`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== 'object' || o[p] === null) o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  o[parts.at(-1)!] = value;
}

// Schema pieces every server's config shares.
export const portSchema = z.coerce.number().int().min(0).max(65535);
export const positiveSchema = z.coerce.number().int().positive();
/** A count where 0 means "no limit". */
export const nonNegativeSchema = z.coerce.number().int().min(0);
/** A boolean, also from the env strings "true" and "false". */
export const boolSchema = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

/** host, port, publicHost, tls, proxyProtocol, metrics and logLevel, with this server's default ports. */
export function listenerSchema(defaultPort: number, defaultMetricsPort: number) {
  return {
    host: z.string().min(1).default('127.0.0.1'),
    port: portSchema.default(defaultPort),
    /** Host name clients use, put into the printed address. */
    publicHost: z.string().min(1).optional(),
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
    /** Every connection starts with a PROXY protocol header (behind HAProxy's send-proxy / send-proxy-v2). */
    proxyProtocol: boolSchema.default(false),
    metrics: z
      .object({ host: z.string().min(1).default('127.0.0.1'), port: portSchema.default(defaultMetricsPort) })
      .strict()
      .prefault({}),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  };
}

/**
 * The variables of listenerSchema's settings: `prefix` + HOST, PORT, PUBLIC_HOST,
 * TLS_CERT, TLS_KEY, PROXY_PROTOCOL, METRICS_HOST, METRICS_PORT, and
 * HUSH_LOG_LEVEL. Without `publicHost` no PUBLIC_HOST (a server that prints no
 * address), without `proxyProtocol` no PROXY_PROTOCOL (one that does not read it).
 */
export function listenerEnv(prefix: string, { publicHost = true, proxyProtocol = true } = {}): EnvMap {
  return {
    [`${prefix}HOST`]: 'host',
    [`${prefix}PORT`]: 'port',
    ...(publicHost ? { [`${prefix}PUBLIC_HOST`]: 'publicHost' } : {}),
    [`${prefix}TLS_CERT`]: 'tls.cert',
    [`${prefix}TLS_KEY`]: 'tls.key',
    ...(proxyProtocol ? { [`${prefix}PROXY_PROTOCOL`]: 'proxyProtocol' } : {}),
    [`${prefix}METRICS_HOST`]: 'metrics.host',
    [`${prefix}METRICS_PORT`]: 'metrics.port',
    HUSH_LOG_LEVEL: 'logLevel',
  };
}

/** The journal store's settings (the relay's, the NTF server's with backend journal). */
export const journalStoreFields = {
  fsync: boolSchema.default(false),
  compactMinMB: positiveSchema.default(64),
};
