// Figure 4 of the notification-server benchmark (bench/ntf.ts): 1,000,000 subscriptions. The
// stores are pre-populated by bench/ntf-populate-child.ts, then `ntf start` is timed until every
// subscription is ACTIVE, once on the journal and once on PostgreSQL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { ntfFiles } from '../src/ntf/config.ts';
import type { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { readKeyFile } from '../src/server/identity.ts';
import { type Children, metric, metricsText, round, runChild, sleep, stop, table } from './lib.ts';
import {
  crypto,
  fmt,
  hex,
  hrMs,
  initNtfDir,
  initRelayDir,
  NTF_ACTIVE,
  spawnServer,
  startServer,
  tsxArgs,
  type Report,
  type Rig,
  type TeamKey,
} from './ntf-rig.ts';

/** BENCH_NTF_BIG_TOKENS: fewer tokens for a quick try (figure 4 then is not the 1M figure). */
const BIG_TOKENS = Number(process.env.BENCH_NTF_BIG_TOKENS ?? 100_000);
const BIG_SUBS_PER_TOKEN = 10;
const BIG_SUBS = BIG_TOKENS * BIG_SUBS_PER_TOKEN;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const PG_SCHEMA = 'hush_bench_ntf';

const NTF_RELAYS = 'hush_ntf_relay_connections';

function rss(pid: number): { rssMB: number; hwmMB: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMB: round(kb('VmRSS') / 1024, 1), hwmMB: round(kb('VmHWM') / 1024, 1) };
}

/** Populates one store (relay | journal | postgres) as the spec says; resolves with the time it took. */
async function populate(children: Children, mode: string, specFile: string): Promise<{ ms: number }> {
  const out = await runChild(children, process.execPath, tsxArgs('ntf-populate-child.ts', mode, specFile), 120_000).catch((e: Error) => {
    throw new Error(`populate ${mode}: ${e.message}`);
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { ms: number };
}

interface BigResult {
  relayStartMs: number;
  relayRssMB: number;
  populateMs: Record<string, number>;
  journalMB: number;
  journal: RestartResult;
  postgres: RestartResult | { error: string };
}

async function bigRestart(children: Children, apns: ApnsTestServer, teamKey: TeamKey): Promise<BigResult> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-ntf-big-'));
  const relayDir = path.join(base, 'relay');
  const ntfDir = path.join(base, 'ntf');
  try {
    await initNtfDir(children, ntfDir, apns, teamKey);
    await initRelayDir(children, relayDir);
    const service = readKeyFile(ntfFiles(ntfDir).serviceKey, 'x25519');
    const pool = Array.from({ length: 1024 }, () => crypto.x25519KeyPair()).map((k) => [hex(k.publicKey), hex(k.privateKey)]);
    const spec = {
      seed: hex(crypto.randomBytes(32)),
      tokens: BIG_TOKENS,
      subsPerToken: BIG_SUBS_PER_TOKEN,
      pool,
      serviceId: hex(crypto.sha256(service.publicKey)),
      relayStoreDir: path.join(relayDir, 'store'),
      ntfStoreDir: ntfFiles(ntfDir).store,
      relayAddress: '',
      pgUrl: PG_URL,
      pgSchema: PG_SCHEMA,
    };
    const specFile = path.join(base, 'spec.json');
    fs.writeFileSync(specFile, JSON.stringify(spec));
    const relayPop = await populate(children, 'relay', specFile);
    const relayStart = performance.now();
    const relay = await startServer(children, 'relay', relayDir, { HUSH_RELAY_PORT: '0', HUSH_RELAY_METRICS_PORT: '0' }, 90_000);
    const relayStartMs = Math.round(performance.now() - relayStart);
    const relayRssMB = rss(relay.pid).rssMB;
    fs.writeFileSync(specFile, JSON.stringify({ ...spec, relayAddress: relay.address }));
    const journalPop = await populate(children, 'journal', specFile);
    const populateMs: Record<string, number> = { relayJournal: relayPop.ms, ntfJournal: journalPop.ms };
    const journalMB = round(fs.statSync(path.join(ntfFiles(ntfDir).store, 'ntf.journal')).size / 2 ** 20, 1);

    const journal = await restartRun(children, ntfDir, 'journal');
    let postgres: BigResult['postgres'];
    try {
      await dropSchema();
      populateMs.postgres = (await populate(children, 'postgres', specFile)).ms;
      postgres = await restartRun(children, ntfDir, 'postgres');
    } catch (e) {
      // The journal figure stands without PostgreSQL.
      postgres = { error: e instanceof Error ? e.message : String(e) };
    }
    await stop(relay.proc);
    return { relayStartMs, relayRssMB, populateMs, journalMB, journal, postgres };
  } finally {
    await children.killAll();
    await dropSchema().catch(() => {});
    fs.rmSync(base, { recursive: true, force: true });
  }
}

interface RestartResult {
  startToListeningMs: number;
  startToRelayNsubsMs: number;
  startToAllActiveMs: number;
  /** Until both: /metrics shows every subscription ACTIVE with the relay connected, and NSUBS was answered. */
  allActiveMs: number;
  relayNsubsCount: number;
  rssMB: number;
  hwmMB: number;
}

/** `ntf start` on a populated store: spawn → every subscription ACTIVE; then its RSS. Stops it again. */
async function restartRun(children: Children, ntfDir: string, backend: 'journal' | 'postgres'): Promise<RestartResult> {
  const env: Record<string, string> = { HUSH_NTF_PORT: '0', HUSH_NTF_METRICS_PORT: '0', HUSH_LOG_LEVEL: 'info' };
  if (backend === 'postgres')
    Object.assign(env, { HUSH_NTF_STORE: 'postgres', HUSH_NTF_DATABASE_URL: PG_URL, HUSH_NTF_DATABASE_SCHEMA: PG_SCHEMA });
  const t0 = hrMs();
  const p = spawnServer(children, 'ntf', `ntf-${backend}`, ntfDir, env);
  try {
    let stdout = '';
    let stderr = '';
    let listening: number | undefined;
    let nsubs: number | undefined;
    let services: number | undefined;
    let metricsPort: number | undefined;
    p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout?.on('data', (d: Buffer) => {
      const t = hrMs();
      stdout += d.toString();
      const m = /metrics port: (\d+)/.exec(stdout);
      if (m && listening === undefined) {
        listening = t;
        metricsPort = Number(m[1]);
      }
      // Logged once the relay answered NSUBS (src/ntf/subscriber.ts), with the count it covers.
      const c = /"event":"relay_connected","services":(\d+)/.exec(stdout);
      if (c && nsubs === undefined) {
        nsubs = t;
        services = Number(c[1]);
      }
      if (stdout.length > 1 << 16) stdout = stdout.slice(-4096);
    });
    let allActive: number | undefined;
    let active = 0;
    const deadline = t0 + 120_000;
    while (allActive === undefined || nsubs === undefined) {
      if (p.exitCode !== null) throw new Error(`ntf (${backend}) exited: ${stderr}${stdout.slice(-2000)}`);
      if (hrMs() > deadline) throw new Error(`ntf (${backend}): not all ACTIVE within 120 s (ACTIVE ${active})`);
      if (metricsPort !== undefined && allActive === undefined) {
        try {
          const text = await metricsText(metricsPort);
          const t = hrMs();
          active = metric(text, NTF_ACTIVE);
          if (active === BIG_SUBS && metric(text, NTF_RELAYS) === 1) allActive = t;
        } catch {}
      }
      await sleep(50);
    }
    await sleep(3000); // settle, then RSS
    return {
      startToListeningMs: Math.round(listening! - t0),
      startToRelayNsubsMs: Math.round(nsubs - t0),
      startToAllActiveMs: Math.round(allActive - t0),
      allActiveMs: Math.round(Math.max(allActive, nsubs) - t0),
      relayNsubsCount: services!,
      ...rss(p.pid!),
    };
  } finally {
    await stop(p, 30_000);
  }
}

async function dropSchema(): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Figure 4: restarts on 1M subscriptions (BIG_SUBS), journal and PostgreSQL. */
export async function bigPhase({ children, apns, teamKey }: Rig, report: Report): Promise<void> {
  const big = await bigRestart(children, apns, teamKey);
  const sub = BIG_SUBS === 1_000_000 ? 'subs_1m' : `subs_${BIG_SUBS}`;
  report.figures[`${sub}_journal_all_active_s`] = round(big.journal.allActiveMs / 1000, 2);
  report.figures[`${sub}_journal_rss_mb`] = big.journal.rssMB;
  if (!('error' in big.postgres)) {
    report.figures[`${sub}_postgres_all_active_s`] = round(big.postgres.allActiveMs / 1000, 2);
    report.figures[`${sub}_postgres_rss_mb`] = big.postgres.rssMB;
  }
  report.notes.subs1m = { ...big, tokens: BIG_TOKENS, subscriptionsPerToken: BIG_SUBS_PER_TOKEN, pgSchema: `${PG_SCHEMA} (dropped after)` };
  console.log(
    `4. ${fmt(BIG_SUBS)} subscriptions (${fmt(BIG_TOKENS)} tokens × ${BIG_SUBS_PER_TOKEN}), stores pre-populated; ntf start → every subscription ACTIVE ` +
      `(/metrics, relay connected, NSUBS answered) (target ≤ 20 s, ≤ 1 GiB)`,
  );
  console.log(
    table(
      ['store', 'listening s', 'NSUBS answered s', 'all ACTIVE s', 'RSS MB', 'peak RSS MB', 'NSUBS count'],
      (['journal', 'postgres'] as const).map((b) => {
        const r = big[b];
        if ('error' in r) return [b, 'FAILED', '', '', '', '', r.error.slice(0, 80)];
        return [
          b,
          round(r.startToListeningMs / 1000, 2),
          round(r.startToRelayNsubsMs / 1000, 2),
          round(r.allActiveMs / 1000, 2),
          r.rssMB,
          r.hwmMB,
          fmt(r.relayNsubsCount),
        ];
      }),
    ),
  );
  console.log(
    `relay: ${fmt(BIG_SUBS)} queues, started in ${round(big.relayStartMs / 1000, 1)} s, RSS ${big.relayRssMB} MB (target ≤ 15 s, ≤ 1 GiB); ` +
      `populate ms: ${Object.entries(big.populateMs).map(([k, v]) => `${k} ${v}`).join(', ')}; journal ${big.journalMB} MB`,
  );
}
