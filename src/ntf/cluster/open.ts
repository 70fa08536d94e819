// Opening a cluster member: the PostgreSQL store, loaded without the last
// notifications (those come per relay, as its lease is taken) and NOTIFYing
// what it writes, and the membership on its own connections.
import type { Logger } from 'pino';
import type { NtfMetrics } from '../metrics.ts';
import type { MemoryNtfStore } from '../store/memory.ts';
import { newPool, openPostgresNtfStore } from '../store/postgres.ts';
import type { Timers } from '../timers.ts';
import { ClusterMember } from './member.ts';
import { changeOrigin, changesChannel } from './replica.ts';

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
  const { store, log } = await openPostgresNtfStore({
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
  member = new ClusterMember({ ...c, store, log, pool: newPool(c.url, 2) });
  return { store, member };
}
