// `hush gateway init|add-server|start`: a push gateway's key and config, the
// notification servers it serves, and running it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { nodeCrypto } from '../node/crypto.ts';
import { toBase64Url } from '../core/encoding.ts';
import { createProviders } from '../push/config.ts';
import { ConfigError } from '../server/config.ts';
import { createKeyFile, readKeyFile } from '../server/identity.ts';
import { readTls, startLogger, startWithOps, type Running } from '../server/start.ts';
import { gatewayFiles, loadGatewayConfig, serverAccountSchema } from './config.ts';
import { GatewayServer, keyHash } from './server.ts';

/** Creates the seal key and a config file; returns the seal key (b64url) apps seal device tokens to. */
export function initGateway(o: { dir: string; host?: string; port?: number }): string {
  const files = gatewayFiles(o.dir);
  if (fs.existsSync(files.sealKey)) throw new Error(`${files.sealKey} exists: already initialized`);
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(files.config))
    fs.writeFileSync(files.config, JSON.stringify({ host: o.host ?? '127.0.0.1', port: o.port ?? 5225, servers: [] }, null, 2) + '\n');
  loadGatewayConfig(o.dir); // a bad setting fails before a key exists, so init can be run again
  return toBase64Url(createKeyFile(files.sealKey, 'x25519').publicKey);
}

/**
 * Authorizes a notification server: a new random key, stored only as its hash.
 * Returns the key, to put in that server's ntf.json (gateway.key); it is not shown again.
 */
export function addServer(dir: string, account: { name: string; ratePerSecond?: number; burst?: number; dailyQuota?: number }): string {
  const files = gatewayFiles(dir);
  const raw = JSON.parse(fs.readFileSync(files.config, 'utf8')) as { servers?: unknown[] };
  const servers = (raw.servers ?? []) as Array<{ name?: unknown }>;
  if (servers.some((s) => s.name === account.name)) throw new ConfigError(`a server named ${account.name} exists`);
  const key = `hgw_${randomBytes(32).toString('base64url')}`;
  servers.push(serverAccountSchema.parse({ ...account, keyHash: keyHash(key) }));
  raw.servers = servers;
  const tmp = `${files.config}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(raw, null, 2) + '\n');
  fs.renameSync(tmp, files.config);
  loadGatewayConfig(dir);
  return key;
}

export interface RunningGateway extends Running<GatewayServer> {
  url: string;
  sealKey: string;
}

export async function startGateway(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<RunningGateway> {
  const c = loadGatewayConfig(dir, env);
  const files = gatewayFiles(dir);
  const log = startLogger('gateway', dir, files.sealKey, c.logLevel);
  const providers = createProviders(c, log);
  if (providers.length === 0) log.warn({ event: 'no_push_provider', hint: 'configure apns, fcm or webpush in gateway.json' });
  if (c.servers.length === 0) log.warn({ event: 'no_servers', hint: 'authorize a notification server with `hush gateway add-server`' });
  const server = new GatewayServer({
    host: c.host,
    port: c.port,
    ...readTls(c.tls),
    sealKey: readKeyFile(files.sealKey, 'x25519'),
    crypto: nodeCrypto,
    providers,
    servers: c.servers,
    maxInFlight: c.maxInFlight,
    maxConnectionsPerAddress: c.maxConnectionsPerAddress,
    idleTimeoutMs: c.idleTimeoutSeconds * 1000,
    log,
  });
  const running = await startWithOps(server, c.metrics, () => ({ providers: server.info.providers, inFlight: server.pushesInFlight }));
  return { ...running, url: server.url, sealKey: server.info.sealKey };
}
