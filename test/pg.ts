// The PostgreSQL tests' database: HUSH_TEST_DATABASE_URL, or the local
// server. Outside CI a test file skips (saying why) when it is unreachable;
// under CI=true it runs, and fails.
import pg from 'pg';

export const PG_URL = process.env.HUSH_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be reached; undefined when it can. */
export async function pgDown(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  try {
    await c.connect();
    return undefined;
  } catch (e) {
    return `PostgreSQL unreachable at ${PG_URL}: ${(e as Error).message || String(e)}`;
  } finally {
    await c.end().catch(() => {});
  }
}

/** A test's `skip`: the reason outside CI when PostgreSQL is down, else false. */
export async function pgSkip(): Promise<string | false> {
  const down = await pgDown();
  return down && process.env.CI !== 'true' ? `${down} (set HUSH_TEST_DATABASE_URL; under CI=true this fails)` : false;
}
