// Opening a cluster member: the PostgreSQL store, loaded without the last
// notifications (those come per relay, as its lease is taken) and NOTIFYing
// what it writes, and the membership on its own connections.
import type { Logger } from 'pino';
import type { NtfMetrics } from '../metrics.ts';
import type { MemoryNtfStore } from '../store/memory.ts';
import { newPool, openPostgresNtfStore } from '../store/postgres.ts';
import type { Timers } from '../timers.ts';
import { ClusterMember } from './member.ts';
import { changeOrigin, changesChannel, Replica } from './replica.ts';

/** A lease round's statements time out sooner (leases.ts); this bounds the rest (reads, loading a relay's notifications). */
const CLUSTER_QUERY_TIMEOUT_MS = 30_000;

export interface ClusterMemberConfig {
  url: string;
  schema: string;
  /** This member's name in the leases: stable across its restarts, unique in the cluster. */
  id: string;
  logger: Logger;
  metrics: NtfMetrics;
  timers: Timers;
  leaseMs?: number;
  renewMs?: number;
}

export async function openClusterMember(c: ClusterMemberConfig): Promise<{ store: MemoryNtfStore; member: ClusterMember }> {
  let member: ClusterMember | undefined;
  const pool = newPool(c.url, 2, undefined, CLUSTER_QUERY_TIMEOUT_MS);
  // Listening before the load: what is committed meanwhile is applied after it.
  const replica = new Replica({
    ...c,
    origin: changeOrigin(c.id),
    pool,
    queries: (n) => c.metrics.dbQueries.inc({ purpose: 'replica' }, n),
    late: () => c.metrics.catchUpsLate.inc(),
    onSub: (event, sub) => member?.subChanged(event, sub),
  });
  let opened;
  try {
    await replica.start();
    opened = await openPostgresNtfStore({
      url: c.url,
      schema: c.schema,
      notifications: false,
      changes: {
        channel: changesChannel(c.schema),
        origin: changeOrigin(c.id),
        relays: () => member?.leases.relays() ?? [],
        queries: (n) => c.metrics.dbQueries.inc({ purpose: 'flush' }, n),
      },
    });
  } catch (e) {
    await replica.close();
    await pool.end();
    throw e;
  }
  const { store, log } = opened;
  replica.attach(store, log);
  member = new ClusterMember({ ...c, store, log, pool, replica });
  return { store, member };
}
