// `hush ntf init|start|repair`: creates a notification server's keys and config, runs it, repairs its journal.
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { nodeCrypto } from '../node/crypto.ts';
import type { Logger } from 'pino';
import { GatewayProvider } from '../push/gateway/provider.ts';
import { createProviders } from '../push/config.ts';
import type { PushProvider } from '../push/provider.ts';
import { connectionLimitsOf } from '../server/connection-limits.ts';
import { readKeyFile } from '../server/identity.ts';
import { initServer } from '../server/init.ts';
import { listenerOf, startLogger, startWithOps, type Running } from '../server/start.ts';
import { loadNtfConfig, ntfCreation, ntfFiles, type NtfConfig } from './config.ts';
import { NtfServer } from './server.ts';
import { openJournalNtfStore, repairNtfJournal } from './store/journal.ts';
import type { NtfStore } from './store/store.ts';
import { NtfMetrics } from './metrics.ts';
import type { ClusterMember } from './cluster/member.ts';
import { openClusterMember } from './cluster/open.ts';
import { REAL_TIMERS } from './timers.ts';

/** Creates the identity and service keys and a config file; returns the server's address. */
export function initNtf(o: { dir: string; host?: string; port?: number }): string {
  const files = ntfFiles(o.dir);
  return initServer({
    dir: o.dir,
    configFile: files.config,
    identityFile: files.identity,
    keyFiles: [[files.serviceKey, 'x25519']],
    initialConfig: { host: o.host ?? '127.0.0.1', port: o.port ?? 5224 },
    load: () => loadNtfConfig(o.dir),
  });
}

/** The journal store, or the PostgreSQL store with this server's membership of the cluster on that database. */
async function openStore(c: NtfConfig, dir: string, log: Logger, metrics: NtfMetrics): Promise<{ store: NtfStore; cluster?: ClusterMember }> {
  if (c.store.backend !== 'postgres')
    return {
      store: openJournalNtfStore(ntfFiles(dir).store, {
        fsync: c.store.fsync,
        compactMinBytes: c.store.compactMinMB * 1024 * 1024,
        repairCommand: `hush ntf repair --dir ${dir}`,
      }).store,
    };
  // Port 0 (any free port) names no listener: such an instance gets a name of its own, not kept across restarts.
  const id = c.cluster.instanceId ?? `${os.hostname()}:${c.port || `0-${randomBytes(4).toString('hex')}`}`;
  const { store, member } = await openClusterMember({
    url: c.store.databaseUrl!,
    schema: c.store.schema,
    id,
    logger: log,
    metrics,
    timers: REAL_TIMERS,
    leaseMs: c.cluster.leaseSeconds * 1000,
    renewMs: c.cluster.renewSeconds * 1000,
  });
  log.info({ event: 'cluster_member', instance: id });
  return { store, cluster: member };
}

function providers(c: NtfConfig, log: Logger): PushProvider[] {
  if (!c.gateway) return createProviders(c, log);
  const g = c.gateway;
  return [new GatewayProvider({ url: g.url, key: g.key, connections: g.connections, log, ...(g.caFile ? { ca: fs.readFileSync(g.caFile) } : {}) })];
}

/** `hush ntf repair`: the server must be stopped. */
export const repairNtf = (dir: string) => repairNtfJournal(ntfFiles(dir).store);

export interface RunningNtf extends Running<NtfServer> {
  address: string;
}

/** Runs the server in `dir`; `o.providers` replaces the configured ones (the local stack's test servers). */
export async function startNtf(dir: string, env: NodeJS.ProcessEnv = process.env, o: { providers?: PushProvider[] } = {}): Promise<RunningNtf> {
  const c = loadNtfConfig(dir, env);
  const files = ntfFiles(dir);
  const log = startLogger('ntf', dir, files.identity, c.logLevel);
  const list = o.providers ?? providers(c, log);
  if (list.length === 0) log.warn({ event: 'no_push_provider', hint: 'configure apns, fcm, webpush or gateway in ntf.json' });
  const metrics = new NtfMetrics();
  const { store, cluster } = await openStore(c, dir, log, metrics);
  const server = new NtfServer({
    identity: readKeyFile(files.identity),
    serviceKey: readKeyFile(files.serviceKey, 'x25519'),
    crypto: nodeCrypto,
    store,
    metrics,
    ...(cluster ? { cluster } : {}),
    providers: list,
    relays: c.relays,
    ...listenerOf(c),
    log,
    dispatch: c.dispatch,
    cronIntervalMs: c.cronIntervalSeconds * 1000,
    creation: ntfCreation(c.creation),
    subscriber: {
      keepalive: { intervalMs: c.liveness.pingIntervalSeconds * 1000, timeoutMs: c.liveness.pingTimeoutSeconds * 1000 },
      maxBackoffMs: c.relays.maxBackoffSeconds * 1000,
    },
    limits: connectionLimitsOf(c.limits, c.liveness.idleTimeoutSeconds),
    linkDownLimitMs: c.liveness.linkDownLimitSeconds * 1000,
  });
  const running = await startWithOps(server, c.metrics, () => ({ connections: server.connections, relays: server.subscriber.linkStates().up }));
  return { ...running, address: server.address };
}
