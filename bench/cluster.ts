// Notification-server cluster benchmark (`npm run bench -- cluster`). Everything on 127.0.0.1:
//   relays                three processes (bin/hush.js relay start; journal, defaults but the
//                         queue quota: nobody reads the sustained runs' messages)
//   notification servers  one to three processes (bin/hush.js ntf start, store.backend postgres,
//                         so each is a cluster member, with the shipped lease 10 s / renewal 2 s)
//                         on one fresh schema, dropped at the end; shared identity.key and service.key
//   APNs test server      in THIS process, as in bench/ntf.ts: the push router opens every push
//   SEND driver           bench/ntf-sender-child.ts for the sustained runs; the failover load is
//                         paced from this process (bench/cluster-failover.ts)
// The devices: 1,500 for the sustained runs and 150 for failover, each a token registered and
// verified, one queue at relay i mod 3 and its subscription (bench/cluster-rig.ts).
//
//   1. pushes_per_s_{1,2,3}: the driver keeps WINDOW devices with a SEND waiting for its push
//      (closed loop: one instance cannot keep up); pushes the APNs test server accepted per
//      second, median of WINDOWS windows after a warm-up; with one instance, then a second and a
//      third started (each run once the relays are spread: one holder each, linked)
//   2. pg_round_trips_per_notification_{1,2,3}: over those windows, Δ Σ hush_ntf_db_queries_total
//      (every purpose, every instance) ÷ Δ Σ hush_ntf_notifications_received_total
//   3. failover_s: three instances, FAILOVER_RATE SENDs/s over the failover queues; kill -9 of
//      the instance holding relay 0 (its lease's owner ends with :<port>); kill → the first push
//      of a relay-0 message sent after the kill. FAILOVER_RUNS runs, the killed instance started
//      again and the relays spread again in between; median and each
//   4. failover_lost: relay-0 messages the relay acknowledged whose wake-up never came (read
//      back after each run: those after the newest one a push carried), summed over the runs
// Bounded: fixed windows, every wait with a timeout; every process killed at the end, even on
// error (a process that dies on its own fails the section). About 3 minutes.
//   BENCH_PG_URL   default postgres://postgres@127.0.0.1:5432/test
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { Children, median, metricSum, percentile, ROOT, round, sleep, table, waitForQuiet, writeResults, type SectionResult } from './lib.ts';
import { Cluster, INSTANCES, makeDevices, PG_URL, postgresPids, RELAYS, type Device } from './cluster-rig.ts';
import { Failover, FAILOVER_RATE, FAILOVER_TARGET_S, type FailoverRun } from './cluster-failover.ts';
import { collectGarbage, cpuPct, cpuSnap, fmt, hex, hrMs, ms, TOPIC, type Rig } from './ntf-rig.ts';
import { key, PushRouter } from './ntf-router.ts';
import { startRun, startSender } from './ntf-sends.ts';

const DEVICES = 1500;
const WINDOW = 1200;
const WARMUP_MS = 3000;
const WINDOWS = 3;
const WINDOW_MS = 4000;
const FAILOVER_DEVICES = 150;
const FAILOVER_RUNS = 3;

const RECEIVED = 'hush_ntf_notifications_received_total';
const DB_QUERIES = 'hush_ntf_db_queries_total';

interface Sustained {
  instances: number;
  pushesPerS: number;
  windowsPerS: number[];
  receivedPerS: number;
  pgRoundTripsPerNotification: number;
  cpu: Record<string, number | undefined>;
  latencyP50Ms: number;
  latencyP99Ms: number;
  missing: number;
  sendErrors: number;
}

/** The router learns the sustained devices (queue index = device index), whose pushes it reports to the driver. */
function route(router: PushRouter, devices: Device[]): void {
  devices.forEach((d, index) => {
    const q = { index, sndId: d.q.sndId, rcvNtfDhSecret: d.q.ntf!.rcvNtfDhSecret };
    router.tokens.set(d.tokenHex, { secret: d.secret, queues: new Map([[key(d.q.ntf!.notifierId), q]]) });
  });
  router.lastNonce = new Array<string>(devices.length).fill('');
}

/** Figures 1 and 2 with the instances running now. */
async function sustained(cluster: Cluster, router: PushRouter, sender: ChildProcess): Promise<Sustained> {
  await cluster.balanced();
  const running = cluster.running();
  const procs: Record<string, number> = { bench: process.pid, sender: sender.pid! };
  for (const x of running) procs[x.name] = x.pid;
  cluster.relays.forEach((r, i) => (procs[`relay${i}`] = r.pid));
  // a backend that ends within the window drops out (its CPU counts as other)
  for (const pid of postgresPids()) procs[`pg${pid}`] = pid;
  const snap = async () => {
    const cpu = cpuSnap(procs);
    const pushes = router.messagePushes;
    const texts = await Promise.all(running.map((x) => x.metrics()));
    const sum = (name: string) => texts.reduce((s, t) => s + metricSum(t, name), 0);
    return { ...cpu, pushes, received: sum(RECEIVED), queries: sum(DB_QUERIES) };
  };
  collectGarbage();
  const result = startRun(sender, { mode: 'window', window: WINDOW }, WARMUP_MS, WINDOWS * WINDOW_MS);
  await sleep(WARMUP_MS);
  const snaps = [await snap()];
  for (let k = 0; k < WINDOWS; k++) {
    await sleep(snaps[0]!.t + (k + 1) * WINDOW_MS - hrMs());
    snaps.push(await snap());
  }
  const r = await result;
  cluster.check();
  const a = snaps[0]!;
  const b = snaps.at(-1)!;
  const windowsPerS = snaps.slice(1).map((s, k) => ((s.pushes - snaps[k]!.pushes) * 1000) / (s.t - snaps[k]!.t));
  const l = r.latencies;
  return {
    instances: running.length,
    pushesPerS: median(windowsPerS),
    windowsPerS: windowsPerS.map((x) => round(x)),
    receivedPerS: ((b.received - a.received) * 1000) / (b.t - a.t),
    pgRoundTripsPerNotification: (b.queries - a.queries) / Math.max(1, b.received - a.received),
    cpu: cpuPct(a, b),
    latencyP50Ms: ms(percentile(l, 50)),
    latencyP99Ms: ms(percentile(l, 99)),
    missing: r.missing,
    sendErrors: r.errors,
  };
}

/** CPU % of one core: the instances each, the relays and PostgreSQL's processes summed. */
function cpuGroups(c: Record<string, number | undefined>): Record<string, number | undefined> {
  const sum = (prefix: string) => round(Object.entries(c).reduce((s, [k, v]) => s + (k.startsWith(prefix) ? (v ?? 0) : 0), 0));
  const ntf = Object.fromEntries(Object.entries(c).filter(([k]) => k.startsWith('ntf')));
  return { ...ntf, relays: sum('relay'), sender: c.sender, bench: c.bench, postgres: sum('pg'), other: c.other };
}

function cpuColumns(c: Record<string, number | undefined>): string[] {
  const g = cpuGroups(c);
  const ntf = Object.keys(g)
    .filter((k) => k.startsWith('ntf'))
    .map((k) => g[k] ?? '?')
    .join(' + ');
  return [ntf, ...['relays', 'sender', 'bench', 'postgres', 'other'].map((k) => String(g[k] ?? '?'))];
}

function printSustained(rows: Sustained[]): void {
  const one = rows[0]!.pushesPerS;
  console.log(
    `1./2. Sustained pushes with 1, 2 and 3 instances: ${fmt(DEVICES)} devices (one queue each, ${DEVICES / RELAYS} per relay), ` +
      `${fmt(WINDOW)} with a SEND waiting for its push (closed loop); pushes accepted at the APNs test server, median of ${WINDOWS} × ${WINDOW_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up`,
  );
  console.log(
    table(
      ['instances', 'pushes/s', 'vs 1', 'NMSG/s', 'PG round trips/NMSG', 'p50 ms', 'CPU %: ntf (each)', 'relays', 'sender', 'bench+APNs', 'PostgreSQL', 'other'],
      rows.map((r) => [
        r.instances,
        fmt(r.pushesPerS),
        round(r.pushesPerS / one, 3),
        fmt(r.receivedPerS),
        round(r.pgRoundTripsPerNotification, 3),
        r.latencyP50Ms,
        ...cpuColumns(r.cpu),
      ]),
    ),
  );
  console.log(
    `note: ${os.cpus().length} cores shared by every process (instances, relays, driver, APNs test server, PostgreSQL): little gain is possible here;\n` +
      '      the ratios show what coordination costs (leases, replicas reading each other\'s writes), not how far the cluster scales\n',
  );
}

const show = (x: number | null) => (x === null ? 'never' : String(x));

/** Median with a run that never failed over counted as the slowest; null if that is the median. */
function nullMedian(xs: (number | null)[]): number | null {
  const m = median(xs.map((x) => x ?? Infinity));
  return Number.isFinite(m) ? round(m, 2) : null;
}

function printFailover(runs: FailoverRun[]): { failoverS: number | null; lost: number } {
  const failoverS = nullMedian(runs.map((r) => r.failoverS));
  const lost = runs.reduce((s, r) => s + r.lost, 0);
  console.log(
    `3./4. Failover: 3 instances, ${FAILOVER_RATE} SENDs/s over ${FAILOVER_DEVICES} other devices (${FAILOVER_DEVICES / RELAYS} per relay); ` +
      'kill -9 of the instance holding relay 0; lease 10 s, renewal 2 s (shipped defaults)',
  );
  console.log(
    table(
      ['run', 'killed', 'lease moved s (polled)', 'kill → push of a later SEND s', 'relay 0: lost / acknowledged', 'other relays: lost', 'SEND errors'],
      runs.map((r, i) => [i + 1, r.victim, show(r.leaseMovedS), show(r.failoverS), `${r.lost} / ${r.acknowledged}`, r.otherRelaysLost, r.sendErrors]),
    ) + '\n',
  );
  console.log(
    table(
      ['figure', 'result', 'target'],
      [
        [`failover s (median of ${runs.length}; each)`, `${show(failoverS)} (${runs.map((r) => show(r.failoverS)).join(' ')})`, `≤ ${FAILOVER_TARGET_S}`],
        [`failover lost (${runs.length} runs)`, lost, '0'],
      ],
    ),
  );
  return { failoverS, lost };
}

export async function runClusterBench(): Promise<SectionResult> {
  const t0 = performance.now();
  const quiet = await waitForQuiet(20, 30_000);
  const load = os.loadavg().map((x) => round(x, 2));
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-cluster-'));
  const apns = await ApnsTestServer.start({ topics: [TOPIC], record: false });
  const rig: Rig = { children: new Children(), base, apns, teamKey: apns.keys.create(), router: new PushRouter(apns) };
  const cluster = new Cluster(rig);
  let failover: Failover | undefined;
  const rows: Sustained[] = [];
  const runs: FailoverRun[] = [];
  let setupS = 0;
  try {
    await cluster.init();
    const [first, ...others] = cluster.instances;
    await first!.start();
    const devices = await makeDevices(cluster, first!, rig, DEVICES, DEVICES);
    const fDevices = await makeDevices(cluster, first!, rig, FAILOVER_DEVICES, DEVICES + FAILOVER_DEVICES);
    route(rig.router, devices);
    const sender = await startSender(rig.children, rig.router, {
      addresses: cluster.relays.map((r) => r.address),
      sndIds: devices.map((d) => hex(d.q.sndId)),
      relayOf: devices.map((d) => d.relay),
      perToken: 1,
    });
    setupS = round((performance.now() - t0) / 1000, 1);

    rows.push(await sustained(cluster, rig.router, sender));
    for (const x of others) {
      await x.start();
      rows.push(await sustained(cluster, rig.router, sender));
    }
    printSustained(rows);

    failover = new Failover(cluster, apns, fDevices);
    await failover.connect();
    for (let k = 0; k < FAILOVER_RUNS; k++) {
      await cluster.balanced();
      const { result, victim } = await failover.run();
      runs.push(result);
      if (k < FAILOVER_RUNS - 1) await victim.start();
    }
  } finally {
    failover?.close();
    await cluster.close(); // every process, the SEND driver too
    await apns.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
  const f = printFailover(runs);
  const sectionS = round((performance.now() - t0) / 1000, 1);
  console.log(`\ncluster section: ${sectionS} s`);

  const by = (n: number) => rows.find((r) => r.instances === n)!;
  const failoverValues = runs.map((r) => r.failoverS);
  return {
    figures: {
      pushes_per_s_1: round(by(1).pushesPerS),
      pushes_per_s_2: round(by(2).pushesPerS),
      pushes_per_s_3: round(by(3).pushesPerS),
      pushes_ratio_2_to_1: round(by(2).pushesPerS / by(1).pushesPerS, 3),
      pushes_ratio_3_to_1: round(by(3).pushesPerS / by(1).pushesPerS, 3),
      pg_round_trips_per_notification_1: round(by(1).pgRoundTripsPerNotification, 3),
      pg_round_trips_per_notification_2: round(by(2).pgRoundTripsPerNotification, 3),
      pg_round_trips_per_notification_3: round(by(3).pgRoundTripsPerNotification, 3),
      failover_s: f.failoverS,
      failover_s_max: failoverValues.some((x) => x === null) ? null : Math.max(...(failoverValues as number[])),
      failover_lost: f.lost,
    },
    notes: {
      processes:
        `relays: ${RELAYS} processes (bin/hush.js relay start, journal, defaults, queue quota 1,000,000); notification servers: ${INSTANCES} processes ` +
        '(bin/hush.js ntf start, PostgreSQL store: cluster members, lease 10 s / renewal 2 s as shipped, apns → APNs test server), one fresh schema dropped after; ' +
        'APNs test server in the benchmark process; SEND driver (sustained runs) in a child process; failover load from the benchmark process',
      postgres: PG_URL,
      devices: DEVICES,
      window: WINDOW,
      windows: `${WINDOWS} × ${WINDOW_MS} ms after ${WARMUP_MS} ms warm-up`,
      sustained: rows.map(({ cpu, ...r }) => ({ ...r, cpuPct: cpuGroups(cpu), pushesPerS: round(r.pushesPerS), receivedPerS: round(r.receivedPerS), pgRoundTripsPerNotification: round(r.pgRoundTripsPerNotification, 3) })),
      router: { badPushes: rig.router.badPushes, badMeta: rig.router.badMeta },
      failover: { devices: FAILOVER_DEVICES, sendsPerS: FAILOVER_RATE, targetS: FAILOVER_TARGET_S, runs, failoverS: failoverValues },
      setupS,
      sectionS,
      machineQuietAtStart: quiet ?? null,
      loadAverageAtStart: load,
    },
  };
}

export async function run(): Promise<void> {
  const r = await runClusterBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('cluster', r))}`);
}
