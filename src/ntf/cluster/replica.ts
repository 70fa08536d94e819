// A cluster member's view of what the others write (docs/ntf.md §9).
// Every flush NOTIFYs the keys of the token and subscription rows it wrote;
// a member LISTENs, reads those rows again and makes its memory hold them —
// except rows it has a change of its own queued or being written: those are
// read again once its write has committed (the database then holds both
// changes, or the later one of the same column).
// catchUp() is the read barrier before commands: a NOTIFY to itself comes back
// after every notification committed before it (PostgreSQL delivers them in
// commit order), and resolves once those have been applied. A lost LISTEN
// connection is reopened and every row read again, since what was notified
// meanwhile is gone.
import pg from 'pg';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { parseChanges, readAllEntities, readEntities, type PostgresLog } from '../store/postgres.ts';
import type { MemoryNtfStore } from '../store/memory.ts';
import type { SubRecord } from '../store/store.ts';
import type { Timers } from '../timers.ts';

export interface ReplicaOptions {
  url: string;
  schema: string;
  /** This member's ID: its own notifications are skipped. */
  origin: string;
  /** Reads rows (the store's pool is the log's). */
  pool: pg.Pool;
  logger: Logger;
  /** A subscription another member created or deleted (also by deleting its token). */
  onSub(event: 'added' | 'removed', sub: SubRecord): void;
  timers: Timers;
  /** Counts reads of rows (round trips). */
  queries?(n: number): void;
  /** A catch-up not back within catchUpTimeoutMs: the commands waiting for it ran on what memory held. */
  late?(): void;
  /** A catch-up not back by then resolves anyway (late); default 5 s. */
  catchUpTimeoutMs?: number;
}

export const changesChannel = (schema: string) => `${schema}_changes`;
/** A member's short name in NOTIFY payloads and its catch-up channel: a hash of its ID (a channel name has at most 63 bytes). */
export const changeOrigin = (id: string) => createHash('sha256').update(id).digest('hex').slice(0, 16);

export class Replica {
  private client: pg.Client | undefined;
  private readonly syncChannel: string;
  /** Applying notifications, one batch at a time, in arrival order; held until attach(). */
  private work: Promise<void>;
  private attached!: () => void;
  private store: MemoryNtfStore | undefined;
  private log: PostgresLog | undefined;
  private tokens = new Set<string>();
  private subs = new Set<string>();
  private syncs = new Map<string, () => void>();
  /** Callers of the next catch-up, not sent yet. */
  private waiting: { promise: Promise<void>; resolve: () => void } | undefined;
  /** A catch-up is on its way. */
  private syncing = false;
  /** Catch-ups sent. */
  catchUps = 0;
  private readonly laterTokens = new Set<string>();
  private readonly laterSubs = new Set<string>();
  private laterScheduled = false;
  /** The last catch-up NOTIFY sent on the LISTEN connection. */
  private sending: Promise<unknown> = Promise.resolve();
  private closed = false;
  private retryTimer: unknown;
  /** When the LISTEN connection was lost (ms); undefined while it is up. */
  downSince: number | undefined;

  constructor(private readonly o: ReplicaOptions) {
    this.syncChannel = `${o.schema}_sync_${o.origin}`;
    this.work = new Promise((r) => (this.attached = r));
  }

  /**
   * The store is loaded: changes notified since start() are applied to it now.
   * Listening starts before the load, so nothing committed between the load's
   * snapshot and the LISTEN is missed (what both hold is read again, harmlessly).
   */
  attach(store: MemoryNtfStore, log: PostgresLog): void {
    this.store = store;
    this.log = log;
    this.attached();
  }

  async start(): Promise<void> {
    // Named, so an operator sees which member each LISTEN connection is (pg_stat_activity).
    const client = new pg.Client({ connectionString: this.o.url, connectionTimeoutMillis: 10_000, application_name: `hush-ntf-listen-${this.o.origin}` });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (n) => this.notified(n.channel, n.payload ?? ''));
    await client.connect();
    await client.query(`LISTEN ${pg.escapeIdentifier(changesChannel(this.o.schema))}`);
    await client.query(`LISTEN ${pg.escapeIdentifier(this.syncChannel)}`);
    this.client = client;
  }

  /**
   * Resolves once every change other members committed before the call is in
   * memory. One catch-up at a time: calls made meanwhile share the next, so a
   * flood of commands costs the database one round trip per round trip.
   */
  catchUp(): Promise<void> {
    if (!this.client) return Promise.resolve(); // lost: served as memory holds it, and health says so
    if (!this.waiting) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.waiting = { promise, resolve };
      // Calls in this turn share it too.
      if (!this.syncing) queueMicrotask(() => this.sendSync());
    }
    return this.waiting.promise;
  }

  private sendSync(): void {
    const batch = this.waiting;
    if (!batch || this.syncing) return;
    this.waiting = undefined;
    const client = this.client;
    if (!client) return batch.resolve();
    this.syncing = true;
    const id = String(++this.catchUps);
    let finished = false;
    const done = () => {
      if (finished) return; // by the timeout, then by the notification
      finished = true;
      this.o.timers.clear(timer);
      this.syncs.delete(id);
      this.syncing = false;
      batch.resolve();
      this.sendSync();
    };
    const timer = this.o.timers.set(() => {
      this.o.late?.();
      done();
    }, this.o.catchUpTimeoutMs ?? 5000);
    this.syncs.set(id, done);
    this.o.queries?.(1);
    // One query at a time on a client (pg queues them, but that is deprecated).
    this.sending = this.sending.then(() => client.query('SELECT pg_notify($1, $2)', [this.syncChannel, id])).catch(() => {});
  }

  private notified(channel: string, payload: string): void {
    if (channel === this.syncChannel) {
      // after the rows notified before it are applied
      const done = this.syncs.get(payload);
      if (done) this.work = this.work.then(done);
      return;
    }
    const c = parseChanges(payload);
    if (c.origin === this.o.origin) return; // memory has them already
    for (const id of c.tokens) this.tokens.add(id);
    for (const id of c.subs) this.subs.add(id);
    this.work = this.work.then(() => this.applyQueued());
  }

  /** Reads the rows notified so far and makes memory hold them. */
  private async applyQueued(): Promise<void> {
    const tokenIds = [...this.tokens];
    const subIds = [...this.subs];
    this.tokens = new Set();
    this.subs = new Set();
    if (tokenIds.length + subIds.length === 0) return;
    let rows;
    try {
      rows = await readEntities(this.o.pool, this.o.schema, tokenIds, subIds);
      this.o.queries?.(4); // BEGIN, the subscriptions, their tokens, COMMIT
    } catch (err) {
      // Read again in a second (with whatever is notified meanwhile): nothing may wait for a next notification that never comes.
      for (const id of tokenIds) this.tokens.add(id);
      for (const id of subIds) this.subs.add(id);
      this.o.logger.warn({ event: 'replica_read_failed', err: String(err) });
      if (!this.closed) this.o.timers.set(() => (this.work = this.work.then(() => this.applyQueued())), 1000);
      return;
    }
    const tokens = new Map(rows.tokens.map((t) => [t.tokenId, t]));
    const subs = new Map(rows.subs.map((s) => [s.subId, s]));
    // Tokens first: a new subscription needs its token.
    for (const id of new Set([...tokenIds, ...tokens.keys()])) this.syncToken(id, tokens.get(id));
    for (const id of subIds) this.syncSub(id, subs.get(id));
  }

  private syncToken(id: string, t: Parameters<MemoryNtfStore['syncToken']>[1]): void {
    if (this.log!.writing('t', id)) return this.later('t', id);
    for (const s of this.store!.syncToken(id, t)) this.o.onSub('removed', s);
  }

  private syncSub(id: string, s: SubRecord | undefined): void {
    if (this.log!.writing('s', id)) return this.later('s', id);
    const before = this.store!.sub(id);
    const event = this.store!.syncSub(id, s);
    if (event === 'removed') this.o.onSub('removed', before!);
    else if (event === 'added') this.o.onSub('added', this.store!.sub(id)!);
  }

  /** A row this member is writing too: read again once its write has committed. */
  private later(kind: 't' | 's', id: string): void {
    (kind === 't' ? this.laterTokens : this.laterSubs).add(id);
    if (this.laterScheduled) return;
    this.laterScheduled = true;
    const again = () => {
      this.laterScheduled = false;
      if (this.closed) return;
      for (const x of this.laterTokens) this.tokens.add(x);
      for (const x of this.laterSubs) this.subs.add(x);
      this.laterTokens.clear();
      this.laterSubs.clear();
      this.work = this.work.then(() => this.applyQueued());
    };
    this.log!.flush().then(again, () => this.o.timers.set(again, 1000));
  }

  private lost(client: pg.Client): void {
    if (client !== this.client) return;
    this.client = undefined;
    this.downSince ??= Date.now();
    client.end().catch(() => {});
    for (const done of [...this.syncs.values()]) done(); // nobody waits on a dead connection
    if (this.closed) return;
    this.o.logger.warn({ event: 'replica_disconnected' });
    this.reconnect(1000);
  }

  private reconnect(ms: number): void {
    this.retryTimer = this.o.timers.set(() => {
      this.retryTimer = undefined;
      this.work = this.work.then(async () => {
        try {
          await this.start();
          await this.resync();
          this.downSince = undefined;
          this.o.logger.info({ event: 'replica_reconnected' });
        } catch (err) {
          this.client?.end().catch(() => {});
          this.client = undefined;
          if (!this.closed) this.reconnect(Math.min(ms * 2, 10_000));
        }
      });
    }, ms);
  }

  /** Every row read again: what was notified while the connection was down is lost. */
  private async resync(): Promise<void> {
    const store = this.store!;
    const tokens = new Set<string>();
    const subs = new Set<string>();
    await readAllEntities(
      this.o.pool,
      this.o.schema,
      (t) => {
        tokens.add(t.tokenId);
        this.syncToken(t.tokenId, t);
      },
      (s) => {
        subs.add(s.subId);
        this.syncSub(s.subId, s);
      },
    );
    for (const id of [...store.subIds()]) if (!subs.has(id)) this.syncSub(id, undefined);
    for (const id of [...store.tokenIds()]) if (!tokens.has(id)) this.syncToken(id, undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) this.o.timers.clear(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    for (const done of [...this.syncs.values()]) done();
    await c?.end().catch(() => {});
  }
}
