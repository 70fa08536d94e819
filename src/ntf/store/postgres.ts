// The NTF store in PostgreSQL, write-behind like the journal: the state lives in
// a MemoryNtfStore that answers every read; the database is where it survives.
//
// Open: run the migrations (under an advisory lock, in one transaction), then
// stream tokens, subscriptions and last notifications into memory through
// `store.load()`, in one REPEATABLE READ snapshot, page by page with a cursor.
//
// Write: `PostgresLog.append(r)` only marks what the record touched (a token,
// a subscription, a (token, subscription) notification) and what it deleted.
// `flush()` writes all of it in ONE transaction, as batched statements over
// unnest() arrays, and resolves after COMMIT. What it writes for a touched key
// is the memory store's state of that key at the moment the flush starts, which
// is the state after every record appended until then: so later records win by
// construction, and however many records touched a row, it is written once.
// Order inside the transaction: deletes first (tokens, then subscriptions: the
// foreign keys cascade to subscriptions and last notifications, as the memory
// store does), then new tokens, changed tokens, new subscriptions, status
// changes, last notifications (stale ones deleted, new ones upserted in arrival
// order), and
// the `pushed` flags of the tokens whose flags changed (a push accepted, the
// token left ACTIVE). Several instances may write one database
// (docs/ntf-cluster.md): a change only updates rows that exist, a row whose
// token or subscription another instance deleted is not written, and with
// `changes` set the transaction NOTIFYs the keys of the tokens and
// subscriptions it wrote, for the other instances to read again.
// Flushes run one at a time; a flush called while one runs waits for it and
// then writes whatever is queued by then (flush calls made while one is waiting
// share it). A failed flush rolls back and puts its keys back in the queue: the
// next flush writes them again (every statement is idempotent, so a COMMIT whose
// outcome was lost to a broken connection is safe to repeat).
import pg from 'pg';
import type { CustomTypesConfig, PoolClient } from 'pg';
import { latin1, latin1Bytes } from '../../core/encoding.ts';
import type { RecordLog } from '../../server/journal.ts';
import { isTokenStatusName, type TokenStatus } from '../protocol.ts';
import { isInvalidReason, isProvider } from '../../push/device.ts';
import { LAST_PER_TOKEN, MemoryNtfStore } from './memory.ts';
import { NTF_MIGRATIONS } from './migrations.ts';
import type { NtfRecord } from './records.ts';
import { isStoredSubStatus, type NtfStore, type SubRecord, type TokenRecord } from './store.ts';

export interface PostgresNtfStoreOptions {
  /** postgres://user:password@host:port/database (HUSH_NTF_DATABASE_URL). */
  url: string;
  /** Schema of the tables; created if missing. Default `hush_ntf`. */
  schema?: string;
  /** Rows fetched per page while loading. */
  pageSize?: number;
  /** Rows per statement while flushing (one transaction holds many statements). */
  batchRows?: number;
  /** Connections kept (flushes use one at a time). */
  poolSize?: number;
  /** Give up connecting after this long (pg's own default is to wait forever). */
  connectTimeoutMs?: number;
  /** Load the last notifications too (default); a cluster member loads them per relay it takes (loadRelayNotifications). */
  notifications?: boolean;
  /** NOTIFY the keys each flush wrote on this channel, as `origin` (a cluster member). */
  changes?: ChangeChannel;
}

export interface ChangeChannel {
  channel: string;
  origin: string;
  /** The relays whose last notifications this instance holds (those it took over): the only ones it deletes. */
  relays(): Iterable<string>;
  /** Counts the round trips of each write. */
  queries?(n: number): void;
}

export interface PostgresLoadStats {
  tokens: number;
  subscriptions: number;
  lastNotifications: number;
  ms: number;
}

export const DEFAULT_NTF_SCHEMA = 'hush_ntf';

function checkSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`bad schema name ${JSON.stringify(schema)}: want [a-z_][a-z0-9_]*`);
  return schema;
}

/** Opens the store: migrate, load everything into memory, attach the log. */
export async function openPostgresNtfStore(
  opts: PostgresNtfStoreOptions,
): Promise<{ store: MemoryNtfStore; log: PostgresLog; loaded: PostgresLoadStats }> {
  const schema = checkSchema(opts.schema ?? DEFAULT_NTF_SCHEMA);
  const pool = newPool(opts.url, opts.poolSize ?? 2, opts.connectTimeoutMs);
  try {
    await migrate(pool, schema);
    const store = new MemoryNtfStore();
    const loaded = await loadNtfState(pool, schema, store, opts.pageSize ?? 50_000, opts.notifications ?? true);
    const log = new PostgresLog(pool, schema, store, opts.batchRows ?? 10_000, opts.changes);
    store.attach(log);
    return { store, log, loaded };
  } catch (e) {
    await pool.end().catch(() => {});
    throw e;
  }
}

/**
 * A pool whose broken idle connections are dropped (the next query opens
 * another), giving up connecting after `connectTimeoutMs` and a query after
 * `queryTimeoutMs`: a connection the network silently dropped must not hold a
 * flush, or a lease round, for ever.
 */
export function newPool(url: string, max: number, connectTimeoutMs = 10_000, queryTimeoutMs = 60_000): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: connectTimeoutMs, query_timeout: queryTimeoutMs });
  pool.on('error', () => {});
  return pool;
}

// ---- migrations ----

/** Applies the migrations the schema lacks; concurrent callers wait on one advisory lock. */
export async function migrate(pool: pg.Pool, schema: string, migrations: readonly string[] = NTF_MIGRATIONS): Promise<number[]> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    await c.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`hush_ntf_migrations:${schema}`]);
    // Created only when missing: a role that owns the schema need not be allowed to create one.
    const exists = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (exists.rowCount === 0) await c.query(`CREATE SCHEMA ${s}`);
    await c.query(`SET LOCAL search_path TO ${s}`);
    await c.query(`CREATE TABLE IF NOT EXISTS migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await c.query<{ version: number }>('SELECT version FROM migrations')).rows.map((r) => r.version));
    const newest = Math.max(0, ...done);
    if (newest > migrations.length) {
      throw new Error(`schema ${schema} is at version ${newest}, newer than this server knows (${migrations.length})`);
    }
    const applied: number[] = [];
    for (let v = 1; v <= migrations.length; v++) {
      if (done.has(v)) continue;
      await c.query(migrations[v - 1]!);
      await c.query('INSERT INTO migrations (version) VALUES ($1)', [v]);
      applied.push(v);
    }
    await c.query('COMMIT');
    return applied;
  } catch (e) {
    broken = e as Error;
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release(broken);
  }
}

// ---- load ----

type Parser = (value: string) => unknown;
const typesWith = (overrides: Record<number, Parser>): CustomTypesConfig => ({
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    overrides[oid] ?? (pg.types.getTypeParser as (o: number, f?: string) => Parser)(oid, format)) as CustomTypesConfig['getTypeParser'],
});
const BYTEA = 17;
const INT8 = 20;
/** bytea arrives as '\x' + hex. */
const hexBytes = (v: string) => {
  const b = Buffer.from(v.slice(2), 'hex');
  return new Uint8Array(b.buffer, b.byteOffset, b.length); // a plain Uint8Array, like every other backend's
};
const bytesTypes = typesWith({ [BYTEA]: hexBytes, [INT8]: Number });
// IDs and keys are latin1 strings in memory (one char per byte).
const latin1Types = typesWith({ [BYTEA]: (v) => latin1(hexBytes(v)), [INT8]: Number });

/** A column's value if it is one of an enum's names; a row that is not stops the load. */
function checked<T extends string>(value: unknown, is: (v: string) => v is T, what: string): T {
  if (typeof value === 'string' && is(value)) return value;
  throw new Error(`NTF store: bad ${what} in the database: ${JSON.stringify(value)}`);
}

function tokenStatus(status: unknown, reason: unknown): TokenStatus {
  const name = checked(status, isTokenStatusName, 'token status');
  return name === 'INVALID' ? { status: name, reason: checked(reason, isInvalidReason, 'invalid reason') } : { status: name };
}

const TOKEN_COLUMNS = `token_id, provider, device_token, tkn_auth_key, tkn_dh_key, srv_dh_key, tkn_dh_secret,
  status, invalid_reason, code, cron_minutes, cron_next_at, status_at, verified`;
const SUB_COLUMNS = 'sub_id, token_id, relay, notifier_id, ntf_auth_key, status';
const LAST_COLUMNS = 'l.token_id, l.sub_id, l.nonce, l.sealed_meta, l.ts, l.pushed';

/** A `tokens` row (TOKEN_COLUMNS, bytesTypes). */
const tokenOfRow = (r: unknown[]): TokenRecord => ({
  tokenId: latin1(r[0] as Uint8Array),
  device: { provider: checked(r[1], isProvider, 'provider'), token: r[2] as Uint8Array },
  tknAuthKey: r[3] as Uint8Array,
  tknDhKey: r[4] as Uint8Array,
  srvDhKey: r[5] as Uint8Array,
  tknDhSecret: r[6] as Uint8Array,
  status: tokenStatus(r[7], r[8]),
  code: r[9] as Uint8Array,
  cronMinutes: r[10] as number,
  cronNextAt: r[11] as number,
  statusAt: r[12] as number,
  verified: r[13] as boolean,
});

/** A `subscriptions` row (SUB_COLUMNS, latin1Types). */
const subOfRow = (r: unknown[]): SubRecord => ({
  subId: r[0] as string,
  tokenId: r[1] as string,
  relay: r[2] as string,
  notifierId: r[3] as string,
  ntfAuthKey: r[4] as string,
  status: checked(r[5], isStoredSubStatus, 'subscription status'),
});

type Loadable = NtfStore & { load(r: NtfRecord): void };

/** A `last_notifications` row (LAST_COLUMNS, bytesTypes) into the store: kept, and settled if pushed. */
function loadLast(store: Loadable, r: unknown[]): void {
  const tokenId = latin1(r[0] as Uint8Array);
  const subId = latin1(r[1] as Uint8Array);
  const nonce = r[2] as Uint8Array;
  store.load({ t: 'LAST', tokenId, n: { subId, nonce, sealedMeta: r[3] as Uint8Array, ts: r[4] as number } });
  if (r[5]) store.load({ t: 'SENT', tokenId, sent: [{ subId, nonce }] });
}

/** Streams every row into the store (the last notifications only with `notifications`), in one snapshot. */
export async function loadNtfState(pool: pg.Pool, schema: string, store: Loadable, pageSize = 50_000, notifications = true): Promise<PostgresLoadStats> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  pageSize = Math.max(1, Math.floor(pageSize));
  const started = performance.now();
  return inSnapshot(pool, async (c) => {
    const tokens = await each(c, `SELECT ${TOKEN_COLUMNS} FROM ${s}.tokens`, bytesTypes, pageSize, (r) =>
      store.load({ t: 'TNEW', token: tokenOfRow(r) }),
    );
    const subscriptions = await each(c, `SELECT ${SUB_COLUMNS} FROM ${s}.subscriptions`, latin1Types, pageSize, (r) =>
      store.load({ t: 'SNEW', sub: subOfRow(r) }),
    );
    // In arrival order: the memory store keeps each token's in that order.
    const lastNotifications = notifications
      ? await each(c, `SELECT ${LAST_COLUMNS} FROM ${s}.last_notifications l ORDER BY seq`, bytesTypes, pageSize, (r) => loadLast(store, r))
      : 0;
    return { tokens, subscriptions, lastNotifications, ms: Math.round(performance.now() - started) };
  });
}

/** Loads the last notifications of the subscriptions at `relay` (a cluster member taking the relay over); returns how many. */
export async function loadRelayNotifications(pool: pg.Pool, schema: string, store: Loadable, relay: string): Promise<number> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  const rows = await pool.query<unknown[]>({
    text: `SELECT ${LAST_COLUMNS} FROM ${s}.last_notifications l JOIN ${s}.subscriptions USING (sub_id) WHERE relay = $1 ORDER BY l.seq`,
    values: [relay],
    rowMode: 'array',
    types: bytesTypes,
  });
  for (const r of rows.rows) loadLast(store, r);
  return rows.rows.length;
}

/** The stored rows of these tokens and subscriptions (what another instance wrote); absent ones are deleted. */
export async function readEntities(
  pool: pg.Pool,
  schema: string,
  tokenIds: string[],
  subIds: string[],
): Promise<{ tokens: TokenRecord[]; subs: SubRecord[] }> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  return inSnapshot(pool, async (c) => {
    const subs = subIds.length === 0 ? [] : (
      await c.query<unknown[]>({ text: `SELECT ${SUB_COLUMNS} FROM ${s}.subscriptions WHERE sub_id = ANY($1::bytea[])`, values: [subIds.map(latin1Bytes)], rowMode: 'array', types: latin1Types })
    ).rows.map(subOfRow);
    // A subscription's token too: it may be new to the reader.
    const ids = [...new Set([...tokenIds, ...subs.map((x) => x.tokenId)])];
    const tokens = ids.length === 0 ? [] : (
      await c.query<unknown[]>({ text: `SELECT ${TOKEN_COLUMNS} FROM ${s}.tokens WHERE token_id = ANY($1::bytea[])`, values: [ids.map(latin1Bytes)], rowMode: 'array', types: bytesTypes })
    ).rows.map(tokenOfRow);
    return { tokens, subs };
  });
}

/** Streams every token, then every subscription, in one snapshot (a cluster member catching up after a lost connection). */
export async function readAllEntities(
  pool: pg.Pool,
  schema: string,
  onToken: (t: TokenRecord) => void,
  onSub: (s: SubRecord) => void,
  pageSize = 50_000,
): Promise<void> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  await inSnapshot(pool, async (c) => {
    await each(c, `SELECT ${TOKEN_COLUMNS} FROM ${s}.tokens`, bytesTypes, pageSize, (r) => onToken(tokenOfRow(r)));
    await each(c, `SELECT ${SUB_COLUMNS} FROM ${s}.subscriptions`, latin1Types, pageSize, (r) => onSub(subOfRow(r)));
  });
}

/** Whether a subscription to this notifier at this relay is stored (by any instance). */
export async function subscriptionStored(pool: pg.Pool, schema: string, relay: string, notifierId: string): Promise<boolean> {
  const s = pg.escapeIdentifier(checkSchema(schema));
  const r = await pool.query(`SELECT 1 FROM ${s}.subscriptions WHERE relay = $1 AND notifier_id = $2`, [relay, latin1Bytes(notifierId)]);
  return (r.rowCount ?? 0) > 0;
}

/** Runs `work` in one read-only REPEATABLE READ transaction. */
async function inSnapshot<T>(pool: pg.Pool, work: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const result = await work(c);
    await c.query('COMMIT');
    return result;
  } catch (e) {
    broken = e as Error;
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release(broken);
  }
}

/** Runs `sql` through a cursor, `pageSize` rows a fetch; the next page is fetched while this one is applied. */
async function each(c: PoolClient, sql: string, types: CustomTypesConfig, pageSize: number, row: (r: unknown[]) => void): Promise<number> {
  await c.query(`DECLARE ntf_load NO SCROLL CURSOR FOR ${sql}`);
  const fetch = () => c.query<unknown[]>({ text: `FETCH ${pageSize} FROM ntf_load`, rowMode: 'array', types });
  let n = 0;
  let next = fetch();
  for (;;) {
    const page = await next;
    const more = page.rows.length === pageSize;
    if (more) {
      next = fetch();
      next.catch(() => {}); // awaited on the next turn; an error thrown below must not leave it unhandled
    }
    for (const r of page.rows) row(r);
    n += page.rows.length;
    if (!more) break;
  }
  await c.query('CLOSE ntf_load');
  return n;
}

// ---- the write-behind log ----

/** What the log reads back at flush time: the memory store. */
export type NtfStateView = Pick<NtfStore, 'token' | 'sub' | 'lastNotifications'>;

/** The keys records touched since the last flush. */
class Pending {
  readonly tokensDeleted = new Set<string>();
  readonly tokensCreated = new Set<string>();
  /**
   * Changed tokens by the columns that changed, each written on its own: two
   * instances changing different columns of one token at once both stay.
   */
  readonly tokensStatus = new Set<string>();
  readonly tokensDevice = new Set<string>();
  readonly tokensCode = new Set<string>();
  readonly tokensCron = new Set<string>();
  /**
   * The status each changed token had before this window's first change
   * (null: after a reset by a new device token or code, any).
   */
  readonly statusBase = new Map<string, TokenStatus['status'] | null>();
  readonly subsDeleted = new Set<string>();
  readonly subsCreated = new Set<string>();
  readonly subsStatus = new Set<string>();
  /** tokenId → subIds with a new last notification */
  readonly last = new Map<string, Set<string>>();
  /** tokenId → subIds whose `pushed` flag changed; undefined: all of the token's (it left ACTIVE) */
  readonly pushed = new Map<string, Set<string> | undefined>();
  records = 0;

  add(r: NtfRecord): void {
    this.records++;
    switch (r.t) {
      case 'TNEW':
        this.tokensCreated.add(r.token.tokenId);
        return;
      case 'TSTAT':
      case 'TDEV':
      case 'TCODE':
        // leaving ACTIVE ends pending notifications
        if (r.t !== 'TSTAT' || r.status.status !== 'ACTIVE') this.pushed.set(r.tokenId, undefined);
        this.tokensStatus.add(r.tokenId);
        if (r.t !== 'TSTAT') this.statusBase.set(r.tokenId, null);
        else if (!this.statusBase.has(r.tokenId)) this.statusBase.set(r.tokenId, r.from ?? null);
        if (r.t === 'TDEV') this.tokensDevice.add(r.tokenId);
        if (r.t !== 'TSTAT') this.tokensCode.add(r.tokenId);
        return;
      case 'TCRN':
        this.tokensCron.add(r.tokenId);
        return;
      case 'TDEL':
        this.tokensDeleted.add(r.tokenId);
        return;
      case 'SNEW':
        this.subsCreated.add(r.sub.subId);
        return;
      case 'SSTAT':
        this.subsStatus.add(r.subId);
        return;
      case 'SDEL':
        this.subsDeleted.add(r.subId);
        return;
      case 'LAST': {
        let subs = this.last.get(r.tokenId);
        if (!subs) this.last.set(r.tokenId, (subs = new Set()));
        subs.add(r.n.subId);
        return;
      }
      case 'SENT':
        this.addPushed(r.tokenId, r.sent.map((x) => x.subId));
        return;
    }
  }

  /** Adds the keys of an earlier (failed) flush. */
  merge(earlier: Pending): void {
    for (const k of ['tokensDeleted', 'tokensCreated', 'tokensStatus', 'tokensDevice', 'tokensCode', 'tokensCron', 'subsDeleted', 'subsCreated', 'subsStatus'] as const) {
      for (const id of earlier[k]) this[k].add(id);
    }
    // The earlier window's base is the older one; a reset in either stays a reset.
    for (const [tokenId, base] of earlier.statusBase)
      this.statusBase.set(tokenId, this.statusBase.get(tokenId) === null ? null : base);
    for (const [tokenId, subs] of earlier.last) {
      const mine = this.last.get(tokenId);
      if (!mine) this.last.set(tokenId, subs);
      else for (const s of subs) mine.add(s);
    }
    for (const [tokenId, subs] of earlier.pushed) this.addPushed(tokenId, subs);
    this.records += earlier.records;
  }

  private get tokenSets(): Set<string>[] {
    return [this.tokensCreated, this.tokensStatus, this.tokensDevice, this.tokensCode, this.tokensCron, this.tokensDeleted];
  }

  private get subSets(): Set<string>[] {
    return [this.subsCreated, this.subsStatus, this.subsDeleted];
  }

  /** A token (`t`) or subscription (`s`) row this holds a change of. */
  touches(kind: 't' | 's', id: string): boolean {
    return (kind === 't' ? this.tokenSets : this.subSets).some((set) => set.has(id));
  }

  /** The keys of the token and subscription rows written: `t` or `s` + the ID in base64. */
  changedKeys(): string[] {
    const keys: string[] = [];
    for (const id of new Set(this.tokenSets.flatMap((set) => [...set]))) keys.push(changeKey('t', id));
    for (const id of new Set(this.subSets.flatMap((set) => [...set]))) keys.push(changeKey('s', id));
    return keys;
  }

  private addPushed(tokenId: string, subIds: Iterable<string> | undefined): void {
    if (this.pushed.has(tokenId) && this.pushed.get(tokenId) === undefined) return; // all already
    if (subIds === undefined) return void this.pushed.set(tokenId, undefined);
    let mine = this.pushed.get(tokenId);
    if (!mine) this.pushed.set(tokenId, (mine = new Set()));
    for (const s of subIds) mine.add(s);
  }
}

interface Statement {
  text: string;
  values: unknown[];
}

/** Column arrays for one statement kind, cut into statements of at most `max` rows. */
class Columns {
  private cols: unknown[][];
  readonly out: Statement[] = [];
  constructor(
    private readonly text: string,
    private readonly width: number,
    private readonly max: number,
  ) {
    this.cols = Array.from({ length: width }, () => []);
  }
  push(...row: unknown[]): void {
    for (let i = 0; i < this.width; i++) this.cols[i]!.push(row[i]);
    if (this.cols[0]!.length >= this.max) this.cut();
  }
  cut(): Statement[] {
    if (this.cols[0]!.length > 0) {
      this.out.push({ text: this.text, values: this.cols });
      this.cols = Array.from({ length: this.width }, () => []);
    }
    return this.out;
  }
}

export class PostgresLog implements RecordLog<NtfRecord> {
  private pending = new Pending();
  /** What the running write holds. */
  private inFlight: Pending | undefined;
  /** The end of the chain of flushes. */
  private tail: Promise<void> = Promise.resolve();
  /** A flush queued behind a running one, not started yet: later callers share it. */
  private waiting: Promise<void> | undefined;
  private closed = false;
  /** Why the last write failed, while its records (merged back) wait for a flush that commits them. */
  private writeFailure: string | undefined;
  private readonly sql: Record<
    'delTokens' | 'delSubs' | 'upsertTokens' | 'tokenStatus' | 'tokenDevice' | 'tokenCode' | 'tokenCron' | 'insertSubs' | 'subStatus' | 'delLast' | 'upsertLast' | 'pushed' | 'notify',
    string
  >;

  constructor(
    private readonly pool: pg.Pool,
    schema: string,
    private readonly state: NtfStateView,
    private readonly batchRows = 10_000,
    private readonly changes?: ChangeChannel,
  ) {
    const s = pg.escapeIdentifier(checkSchema(schema));
    this.sql = {
      delTokens: `DELETE FROM ${s}.tokens WHERE token_id = ANY($1::bytea[])`,
      delSubs: `DELETE FROM ${s}.subscriptions WHERE sub_id = ANY($1::bytea[])`,
      upsertTokens: `
        INSERT INTO ${s}.tokens (token_id, provider, device_token, tkn_auth_key, tkn_dh_key, srv_dh_key, tkn_dh_secret,
                                 status, invalid_reason, code, cron_minutes, cron_next_at, status_at, verified)
        SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[],
                             $8::text[], $9::text[], $10::bytea[], $11::int[], $12::bigint[], $13::bigint[], $14::boolean[])
        ON CONFLICT (token_id) DO UPDATE SET
          provider = EXCLUDED.provider, device_token = EXCLUDED.device_token, tkn_auth_key = EXCLUDED.tkn_auth_key,
          tkn_dh_key = EXCLUDED.tkn_dh_key, srv_dh_key = EXCLUDED.srv_dh_key, tkn_dh_secret = EXCLUDED.tkn_dh_secret,
          status = EXCLUDED.status, invalid_reason = EXCLUDED.invalid_reason, code = EXCLUDED.code,
          cron_minutes = EXCLUDED.cron_minutes, cron_next_at = EXCLUDED.cron_next_at,
          status_at = EXCLUDED.status_at, verified = EXCLUDED.verified`,
      // Only the columns that changed; a token another instance deleted is not brought back.
      // The last write wins, but CONFIRMED only over the status it replaced (base): the dispatcher
      // confirms a token it saw REGISTERED, and another server may have made it ACTIVE since.
      tokenStatus: `
        UPDATE ${s}.tokens t SET status = u.status, invalid_reason = u.invalid_reason, status_at = u.status_at, verified = u.verified
        FROM unnest($1::bytea[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::text[])
             AS u (token_id, status, invalid_reason, status_at, verified, base)
        WHERE t.token_id = u.token_id AND (u.status <> 'CONFIRMED' OR u.base IS NULL OR t.status = u.base)`,
      tokenDevice: `
        UPDATE ${s}.tokens t SET provider = u.provider, device_token = u.device_token
        FROM unnest($1::bytea[], $2::text[], $3::bytea[]) AS u (token_id, provider, device_token) WHERE t.token_id = u.token_id`,
      tokenCode: `
        UPDATE ${s}.tokens t SET code = u.code FROM unnest($1::bytea[], $2::bytea[]) AS u (token_id, code) WHERE t.token_id = u.token_id`,
      tokenCron: `
        UPDATE ${s}.tokens t SET cron_minutes = u.cron_minutes, cron_next_at = u.cron_next_at
        FROM unnest($1::bytea[], $2::int[], $3::bigint[]) AS u (token_id, cron_minutes, cron_next_at) WHERE t.token_id = u.token_id`,
      // Not for a token another instance deleted; the first of two instances to subscribe one notifier wins.
      insertSubs: `
        INSERT INTO ${s}.subscriptions (sub_id, token_id, relay, notifier_id, ntf_auth_key, status)
        SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bytea[], $5::bytea[], $6::text[])
                      AS u (sub_id, token_id, relay, notifier_id, ntf_auth_key, status)
        WHERE EXISTS (SELECT 1 FROM ${s}.tokens t WHERE t.token_id = u.token_id)
        ON CONFLICT DO NOTHING`,
      subStatus: `
        UPDATE ${s}.subscriptions s SET status = u.status
        FROM unnest($1::bytea[], $2::text[]) AS u (sub_id, status) WHERE s.sub_id = u.sub_id`,
      // seq is drawn in arrival order (output expressions are evaluated after ORDER BY).
      // Every notification of these tokens that memory no longer holds (pushed out by newer ones), of
      // the relays whose notifications it holds ($4; null: all, for a single instance).
      delLast: `
        DELETE FROM ${s}.last_notifications
        WHERE token_id = ANY($1::bytea[])
          AND (token_id, sub_id) NOT IN (SELECT * FROM unnest($2::bytea[], $3::bytea[]))
          AND ($4::text[] IS NULL OR sub_id IN (SELECT sub_id FROM ${s}.subscriptions WHERE relay = ANY($4::text[])))`,
      upsertLast: `
        INSERT INTO ${s}.last_notifications (token_id, sub_id, nonce, sealed_meta, ts, pushed, seq)
        SELECT u.token_id, u.sub_id, u.nonce, u.sealed_meta, u.ts, u.pushed, nextval('${s}.last_notifications_seq')
        FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::boolean[]) WITH ORDINALITY
             AS u (token_id, sub_id, nonce, sealed_meta, ts, pushed, ord)
        WHERE EXISTS (SELECT 1 FROM ${s}.subscriptions s WHERE s.sub_id = u.sub_id AND s.token_id = u.token_id)
        ORDER BY u.ord
        ON CONFLICT (token_id, sub_id) DO UPDATE SET
          nonce = EXCLUDED.nonce, sealed_meta = EXCLUDED.sealed_meta, ts = EXCLUDED.ts, pushed = EXCLUDED.pushed, seq = EXCLUDED.seq`,
      // Only the notification this instance holds: another may have kept a newer one since.
      pushed: `
        UPDATE ${s}.last_notifications l SET pushed = u.pushed
        FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::boolean[]) AS u (token_id, sub_id, nonce, pushed)
        WHERE l.token_id = u.token_id AND l.sub_id = u.sub_id AND l.nonce = u.nonce AND l.pushed IS DISTINCT FROM u.pushed`,
      notify: `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`,
    };
  }

  /** Records appended and not yet committed. */
  get queued(): number {
    return this.pending.records;
  }

  append(r: NtfRecord): void {
    this.pending.add(r);
  }

  /** A change of this token (`t`) or subscription (`s`) row is queued or being written: memory is ahead of the database there. */
  writing(kind: 't' | 's', id: string): boolean {
    return this.pending.touches(kind, id) || (this.inFlight?.touches(kind, id) ?? false);
  }

  /** Resolves once every record appended before the call is committed. */
  flush(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('NTF store: flush after close'));
    if (this.waiting) return this.waiting;
    const p = this.tail.then(() => {
      this.waiting = undefined;
      return this.write();
    });
    this.waiting = p;
    this.tail = p.catch(() => {});
    return p;
  }

  /**
   * Memory is ahead of the database: a write failed and its records wait for
   * the next flush. Unlike a journal's, this clears once a later write commits
   * them (a database that came back).
   */
  failure(): string | undefined {
    return this.writeFailure;
  }

  /** Flushes, then closes the connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.pool.end();
    }
  }

  /** Closes the connections without writing what is queued (a crash, or giving up after a fatal error). */
  async discard(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending = new Pending();
    await this.tail;
    await this.pool.end();
  }

  private async write(): Promise<void> {
    const p = this.pending;
    if (p.records === 0) return;
    this.pending = new Pending();
    this.inFlight = p;
    // Built now, synchronously: the memory state matches exactly the records taken.
    const statements = this.statements(p);
    let c: PoolClient | undefined;
    let broken: Error | undefined;
    try {
      c = await this.pool.connect();
      await c.query('BEGIN');
      for (const st of statements) await c.query(st.text, st.values);
      await c.query('COMMIT');
      this.changes?.queries?.(statements.length + 2);
      this.writeFailure = undefined; // what the failed write held was merged into this one
    } catch (e) {
      broken = e as Error;
      if (c) await c.query('ROLLBACK').catch(() => {});
      this.pending.merge(p); // written again by the next flush
      this.writeFailure = `PostgreSQL write failed: ${e instanceof Error ? e.message : String(e)}`;
      throw e;
    } finally {
      this.inFlight = undefined;
      c?.release(broken);
    }
  }

  private statements(p: Pending): Statement[] {
    const max = this.batchRows;
    const delTokens = new Columns(this.sql.delTokens, 1, max);
    const delSubs = new Columns(this.sql.delSubs, 1, max);
    const newTokens = new Columns(this.sql.upsertTokens, 14, max);
    const statusCols = new Columns(this.sql.tokenStatus, 6, max);
    const deviceCols = new Columns(this.sql.tokenDevice, 3, max);
    const codeCols = new Columns(this.sql.tokenCode, 2, max);
    const cronCols = new Columns(this.sql.tokenCron, 3, max);
    const subs = new Columns(this.sql.insertSubs, 6, max);
    const statuses = new Columns(this.sql.subStatus, 2, max);
    const lastUpserts = new Columns(this.sql.upsertLast, 6, max);
    const pushed = new Columns(this.sql.pushed, 4, max);

    for (const id of p.tokensDeleted) delTokens.push(latin1Bytes(id));
    for (const id of p.subsDeleted) delSubs.push(latin1Bytes(id));
    for (const id of p.tokensCreated) {
      const t = this.state.token(id);
      if (t) newTokens.push(...tokenRow(t));
    }
    const changed = (ids: Set<string>, cols: Columns, row: (t: TokenRecord) => unknown[]) => {
      for (const id of ids) {
        if (p.tokensCreated.has(id)) continue; // written whole above
        const t = this.state.token(id);
        if (t) cols.push(latin1Bytes(id), ...row(t));
      }
    };
    changed(p.tokensStatus, statusCols, (t) => [
      t.status.status,
      t.status.status === 'INVALID' ? t.status.reason : null,
      t.statusAt,
      t.verified,
      p.statusBase.get(t.tokenId) ?? null,
    ]);
    changed(p.tokensDevice, deviceCols, (t) => [t.device.provider, t.device.token]);
    changed(p.tokensCode, codeCols, (t) => [t.code]);
    changed(p.tokensCron, cronCols, (t) => [t.cronMinutes, t.cronNextAt]);
    for (const id of p.subsCreated) {
      const s = this.state.sub(id);
      if (s) subs.push(...subRow(s));
    }
    for (const id of p.subsStatus) {
      if (p.subsCreated.has(id)) continue; // written whole above
      const s = this.state.sub(id);
      if (s) statuses.push(latin1Bytes(id), s.status);
    }
    // Last notifications: per touched token, keep exactly what memory keeps.
    const lastDeletes: Statement[] = [];
    const relays = this.changes ? [...this.changes.relays()] : null;
    let tokenIds: Uint8Array[] = [];
    let keepT: Uint8Array[] = [];
    let keepS: Uint8Array[] = [];
    const cutDeletes = () => {
      if (tokenIds.length > 0) lastDeletes.push({ text: this.sql.delLast, values: [tokenIds, keepT, keepS, relays] });
      tokenIds = [];
      keepT = [];
      keepS = [];
    };
    for (const [tokenId, touched] of p.last) {
      const tid = latin1Bytes(tokenId);
      tokenIds.push(tid);
      for (const n of this.state.lastNotifications(tokenId, LAST_PER_TOKEN)) {
        const sid = latin1Bytes(n.subId);
        keepT.push(tid);
        keepS.push(sid);
        if (touched.has(n.subId)) lastUpserts.push(tid, sid, n.nonce, n.sealedMeta, n.ts, n.pushed);
      }
      if (keepT.length >= max) cutDeletes();
    }
    cutDeletes();
    // Flags of rows not upserted above.
    for (const [tokenId, subs] of p.pushed) {
      const tid = latin1Bytes(tokenId);
      const upserted = p.last.get(tokenId);
      for (const n of this.state.lastNotifications(tokenId, LAST_PER_TOKEN))
        if ((subs === undefined || subs.has(n.subId)) && !upserted?.has(n.subId)) pushed.push(tid, latin1Bytes(n.subId), n.nonce, n.pushed);
    }
    const notify = this.changes ? this.notifications(p) : [];
    return [
      ...delTokens.cut(),
      ...delSubs.cut(),
      ...newTokens.cut(),
      ...statusCols.cut(),
      ...deviceCols.cut(),
      ...codeCols.cut(),
      ...cronCols.cut(),
      ...subs.cut(),
      ...statuses.cut(),
      ...lastDeletes,
      ...lastUpserts.cut(),
      ...pushed.cut(),
      ...notify,
    ];
  }

  /** NOTIFY payloads (under PostgreSQL's 8000 bytes) naming every token and subscription row written. */
  private notifications(p: Pending): Statement[] {
    const { channel, origin } = this.changes!;
    const payloads: string[] = [];
    let cur = origin;
    for (const key of p.changedKeys()) {
      if (cur.length + 1 + key.length > MAX_PAYLOAD) {
        payloads.push(cur);
        cur = origin;
      }
      cur += ` ${key}`;
    }
    if (cur !== origin) payloads.push(cur);
    return payloads.length === 0 ? [] : [{ text: this.sql.notify, values: [channel, payloads] }];
  }
}

/** Bytes of a NOTIFY payload (PostgreSQL's limit is 8000). */
const MAX_PAYLOAD = 7900;

/** A changed row's key in a NOTIFY payload: its kind and ID. */
export const changeKey = (kind: 't' | 's', id: string) => kind + Buffer.from(id, 'latin1').toString('base64');

/** The keys of a NOTIFY payload: who wrote them, then each token's and subscription's ID. */
export function parseChanges(payload: string): { origin: string; tokens: string[]; subs: string[] } {
  const [origin = '', ...keys] = payload.split(' ');
  const tokens: string[] = [];
  const subs: string[] = [];
  for (const k of keys) (k[0] === 't' ? tokens : subs).push(Buffer.from(k.slice(1), 'base64').toString('latin1'));
  return { origin, tokens, subs };
}

function tokenRow(t: TokenRecord): unknown[] {
  return [
    latin1Bytes(t.tokenId),
    t.device.provider,
    t.device.token,
    t.tknAuthKey,
    t.tknDhKey,
    t.srvDhKey,
    t.tknDhSecret,
    t.status.status,
    t.status.status === 'INVALID' ? t.status.reason : null,
    t.code,
    t.cronMinutes,
    t.cronNextAt,
    t.statusAt,
    t.verified,
  ];
}

const subRow = (s: SubRecord): unknown[] => [latin1Bytes(s.subId), latin1Bytes(s.tokenId), s.relay, latin1Bytes(s.notifierId), latin1Bytes(s.ntfAuthKey), s.status];

