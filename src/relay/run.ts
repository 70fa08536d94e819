// `hush relay init|start|repair`: creates a relay's identity and config, runs it, repairs its journal.
import { nodeCrypto } from '../node/crypto.ts';
import { connectionLimitsOf } from '../server/connection-limits.ts';
import { creationPolicy } from '../server/creation.ts';
import { readKeyFile } from '../server/identity.ts';
import { initServer } from '../server/init.ts';
import { listenerOf, startLogger, startWithOps, type Running } from '../server/start.ts';
import { loadRelayConfig, relayFiles } from './config.ts';
import { RelayServer } from './server.ts';
import { openJournalQueueStore, repairRelayJournal } from './store/journal.ts';

export interface InitOptions {
  dir: string;
  host?: string;
  port?: number;
}

/** Creates the identity key and a config file; returns the address clients will use. */
export function initRelay(o: InitOptions): string {
  const files = relayFiles(o.dir);
  return initServer({
    dir: o.dir,
    configFile: files.config,
    identityFile: files.identity,
    initialConfig: { host: o.host ?? '127.0.0.1', port: o.port ?? 5223 },
    load: () => loadRelayConfig(o.dir),
  });
}

export interface RunningRelay extends Running<RelayServer> {
  address: string;
}

export async function startRelay(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<RunningRelay> {
  const c = loadRelayConfig(dir, env);
  const files = relayFiles(dir);
  const log = startLogger('relay', dir, files.identity, c.logLevel);
  // MB × 2^20 by multiplication: `<< 20` is 32-bit and wraps to ≤ 0 from 2048 MB on.
  const { store, journal } = openJournalQueueStore({
    dir: files.store,
    fsync: c.store.fsync,
    compactMinBytes: c.store.compactMinMB * 1024 * 1024,
    repairCommand: `hush relay repair --dir ${dir}`,
  });
  if (journal.truncatedBytes > 0) log.warn({ event: 'journal_tail_truncated', bytes: journal.truncatedBytes });
  const server = new RelayServer({
    identity: readKeyFile(files.identity),
    crypto: nodeCrypto,
    store,
    ...listenerOf(c),
    limits: {
      queueQuota: c.limits.queueQuota,
      maxMessageBytes: c.limits.maxMessageBytes,
      messageTtlMs: c.limits.messageTtlHours * 3600_000,
      ...connectionLimitsOf(c.limits, c.limits.idleTimeoutSeconds),
    },
    creation: creationPolicy(c.creation),
    log,
  });
  const running = await startWithOps(server, c.metrics, () => ({ connections: server.connections, ...store.counts() }));
  log.info({ event: 'ops_started', port: running.metricsPort });
  return { ...running, address: server.address };
}

/** `hush relay repair`: the relay must be stopped. */
export const repairRelay = (dir: string) => repairRelayJournal(relayFiles(dir).store);
