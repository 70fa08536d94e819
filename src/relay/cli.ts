// `hush relay init|start`: creates a relay's identity and config, and runs it.
import fs from 'node:fs';
import { formatAddress, fingerprintOf } from '../core/address.ts';
import { nodeCrypto } from '../core/crypto/node.ts';
import { ConfigError } from '../server/config.ts';
import { createIdentity, readIdentity } from '../server/identity.ts';
import { createLogger } from '../server/log.ts';
import { startOps } from '../server/ops.ts';
import { loadRelayConfig, relayFiles } from './config.ts';
import { RelayServer } from './server.ts';
import { JournalQueueStore } from './store/journal.ts';

export interface InitOptions {
  dir: string;
  host?: string;
  port?: number;
}

/** Creates the identity key and a config file; returns the address clients will use. */
export function initRelay(o: InitOptions): string {
  const files = relayFiles(o.dir);
  if (fs.existsSync(files.identity)) throw new Error(`${files.identity} exists: this relay is already initialized`);
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(files.config)) {
    const config = { host: o.host ?? '127.0.0.1', port: o.port ?? 5223 };
    fs.writeFileSync(files.config, JSON.stringify(config, null, 2) + '\n');
  }
  const c = loadRelayConfig(o.dir); // before the key exists: a bad setting leaves init repeatable
  const identity = createIdentity(files.identity);
  return formatAddress({
    fingerprint: fingerprintOf(nodeCrypto, identity.publicKey),
    host: c.publicHost ?? c.host,
    port: c.port,
    tls: c.tls !== undefined,
  });
}

export interface RunningRelay {
  server: RelayServer;
  address: string;
  metricsPort: number;
  stop(): Promise<void>;
}

export async function startRelay(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<RunningRelay> {
  const c = loadRelayConfig(dir, env);
  const files = relayFiles(dir);
  if (!fs.existsSync(files.identity)) throw new ConfigError(`${files.identity} not found: run \`hush relay init --dir ${dir}\` first`);
  const log = createLogger('relay', c.logLevel);
  // MB × 2^20 by multiplication: `<< 20` is 32-bit and wraps to ≤ 0 from 2048 MB on.
  const store = JournalQueueStore.open({ dir: files.store, fsync: c.store.fsync, compactMinBytes: c.store.compactMinMB * 1024 * 1024 });
  if (store.truncatedBytes > 0) log.warn({ event: 'journal_tail_truncated', bytes: store.truncatedBytes });
  const server = new RelayServer({
    identity: readIdentity(files.identity),
    crypto: nodeCrypto,
    store,
    host: c.host,
    port: c.port,
    ...(c.publicHost ? { publicHost: c.publicHost } : {}),
    ...(c.tls ? { tls: { cert: fs.readFileSync(c.tls.cert), key: fs.readFileSync(c.tls.key) } } : {}),
    limits: {
      queueQuota: c.limits.queueQuota,
      maxMessageBytes: c.limits.maxMessageBytes,
      messageTtlMs: c.limits.messageTtlHours * 3600_000,
      maxConnections: c.limits.maxConnections,
      maxPending: c.limits.maxPending,
    },
    log,
  });
  await server.start();
  const ops = await startOps(server.metrics.registry, c.metrics.host, c.metrics.port, () => ({
    ok: true,
    connections: server.connections,
    ...store.counts(),
  }));
  log.info({ event: 'ops_started', port: ops.port });
  return {
    server,
    address: server.address,
    metricsPort: ops.port,
    async stop() {
      await ops.close();
      await server.stop();
    },
  };
}
