// Notification-server benchmark. Everything on 127.0.0.1:
//   relay                 a real process: bin/hush.js relay start (journal store, fsync off)
//   notification server   a real process: bin/hush.js ntf start (journal store, fsync off; for
//                         figure 4 also PostgreSQL), its `apns` section pointing at…
//   APNs test server      src/push/stand-ins/apns-server.ts in THIS process (HTTP/2 over TLS,
//                         JWT verified), which also opens every push it accepts
//   SEND driver           bench/ntf-sender-child.ts, a child process talking to this one over IPC
//   raw HTTP/2 client     bench/ntf-h2-child.ts, a child process
// Times are CLOCK_MONOTONIC (process.hrtime), one clock for every process of the machine.
//
//   5. Registrations: 20 device connections register tokens concurrently (16 each in
//      flight): TNEW, the verification push arrives at the APNs test server, the device
//      opens it (openPush) for the code, TVFY → OK. Device keys are made beforehand.
//   1. SEND → push latency: the registered tokens subscribe 3 queues each at the relay
//      (NEW with notifier keys → SNEW); the SEND driver sends with notify at 1,000 and
//      5,000/s over those queues, recipients offline. Latency = arrival of the push
//      carrying that NMSG at the APNs test server − SEND call. A token never has two
//      SENDs waiting for their push, so every push is matched to exactly one SEND.
//   2. Sustained notifications/s: the SEND driver keeps a window of tokens with a SEND
//      waiting for its push (one per token: each push is a distinct token's, nothing
//      coalesces); pushes/s the APNs test server accepted, NMSGs/s the server received.
//   3. Raw HTTP/2: the request the notification server sent (a captured push: headers,
//      provider token, body), repeated with as many streams in flight as the server's
//      dispatcher allows, against the same APNs test server: the ceiling.
//   4. 1,000,000 subscriptions: stores pre-populated through their APIs (relay journal
//      with the notifier credentials NSUB'd by the server's service; the server's
//      journal / PostgreSQL schema with 100,000 ACTIVE tokens × 10 ACTIVE subscriptions);
//      then `ntf start`: time from spawning the process until /metrics shows every
//      subscription ACTIVE, the relay connected and the relay's NSUBS answer logged;
//      then its RSS.
// Bounded: fixed durations, drain timeouts; children are killed at the end, even on error.
// A full run takes about 3½ minutes (figure 4: ~2, most of it populating the stores).
// The phases: bench/ntf-stack.ts (the stack, 5), ntf-sends.ts (1, 2, 3), ntf-big.ts (4); what
// they share: ntf-rig.ts, and ntf-router.ts (the pushes the APNs test server accepts).
//
// Knobs for diagnosis (none is needed for the figures):
//   BENCH_NTF_ONLY=stack|big          figures 1, 2, 3, 5 only, or figure 4 only
//   BENCH_NTF_BIG_TOKENS=N            figure 4 with N tokens × 10 (not the 1M figure then)
//   BENCH_NTF_CPU_PROF=DIR            CPU profiles of the relay and notification server in DIR/<what>/,
//                                     and the measurement windows (profile clock) in DIR/phases.json
//   BENCH_NTF_NODE_FLAGS='--trace-gc' node flags for those processes; their stdout goes to DIR
//   BENCH_NTF_DUMP_DIR=DIR            every measured SEND's (time, latency, queue) from the SEND driver
//   BENCH_NTF_CONCURRENCY, BENCH_NTF_APNS_CONNECTIONS, BENCH_NTF_APNS_WINDOW   see ntf-rig.ts
//   BENCH_PG_URL                      default postgres://postgres@127.0.0.1:5432/test
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { Children, machineBusyMs, ROOT, round, sleep, writeResults, type SectionResult } from './lib.ts';
import { bigPhase } from './ntf-big.ts';
import { APNS_CONNECTIONS, APNS_WINDOW, CONCURRENCY, Report, TOPIC, type Rig } from './ntf-rig.ts';
import { PushRouter } from './ntf-router.ts';
import { latencyPhase, rawHttp2Phase, SendDriver, sustainedPhase } from './ntf-sends.ts';
import { registrationPhase, startStack, subscribe } from './ntf-stack.ts';

/** BENCH_NTF_ONLY=stack (figures 1, 2, 3, 5) or big (figure 4): part of the section, for a quick try. */
const ONLY = process.env.BENCH_NTF_ONLY;

/**
 * Waits (at most `maxMs`) for a second in which the machine is at most `pct`% busy: others' work
 * skews every figure. Returns how busy it was (printed and noted), unlike lib's waitForQuiet.
 */
async function quietMachine(pct: number, maxMs: number): Promise<number | undefined> {
  const deadline = performance.now() + maxMs;
  let busy: number | undefined;
  while (performance.now() < deadline) {
    const a = machineBusyMs();
    const t = performance.now();
    await sleep(1000);
    const b = machineBusyMs();
    if (a === undefined || b === undefined) return undefined;
    busy = ((b - a) / (performance.now() - t)) * 100;
    if (busy <= pct) return busy;
  }
  return busy;
}

/** How the machine was when the section started. */
interface Start {
  busy: number | undefined;
  waitedS: number;
  load: number[];
}

async function quietStart(t0: number): Promise<Start> {
  const busy = await quietMachine(20, 60_000);
  const waitedS = round((performance.now() - t0) / 1000, 1);
  return { busy, waitedS, load: os.loadavg().map((x) => round(x, 2)) };
}

function printSetting(start: Start): void {
  console.log(
    [
      `relay: process (hush relay start, journal, fsync off); notification server: process (hush ntf start, journal, fsync off,`,
      `  apns → the APNs test server, ${APNS_CONNECTIONS || 1} HTTP/2 connection(s), dispatch concurrency ${CONCURRENCY});`,
      `APNs test server (HTTP/2 + TLS, JWT checked) in the benchmark process, which also opens every push it accepts;`,
      `SEND driver and raw HTTP/2 client: child processes; ${os.cpus().length} cores shared by all; load average at start ${start.load.join(' ')}` +
        (start.busy === undefined ? '' : `, machine ${round(start.busy)}% busy after waiting ${start.waitedS} s for a quiet second`),
      '',
    ].join('\n'),
  );
}

/** Figures 5, 1, 2 and 3, in that order, on one relay and notification server. */
async function stackPhases(rig: Rig, report: Report): Promise<void> {
  const stack = await startStack(rig);
  try {
    const registered = await registrationPhase(stack, rig.router, report);
    const queues = await subscribe(stack, rig.router, registered, report);
    const driver = await SendDriver.start(rig.children, stack, rig.router, queues);
    await latencyPhase(driver, report);
    const flood = await sustainedPhase(driver, rig.router, report);
    await stack.stop(rig.children);
    await rawHttp2Phase(rig, flood, report);
  } finally {
    stack.closeClients();
  }
}

function warnIfDisturbed(report: Report): void {
  const busiest = Math.max(0, ...report.otherCpu);
  if (busiest > 25)
    console.log(`\nWARNING: other processes used up to ${round(busiest)}% CPU during the measurements: the figures are lower than this machine gives alone`);
}

function sectionNotes(start: Start, report: Report): Record<string, unknown> {
  return {
    processes:
      'relay: process (bin/hush.js relay start, journal store, fsync off, queue quota 1,000,000); notification server: process ' +
      `(bin/hush.js ntf start, journal store, fsync off, apns → APNs test server with its CA, ${APNS_CONNECTIONS || 1} HTTP/2 connection(s)); ` +
      'APNs test server in the benchmark process; SEND driver and raw HTTP/2 client in child processes',
    clock: 'CLOCK_MONOTONIC (process.hrtime) in every process',
    dispatchConcurrency: CONCURRENCY,
    apnsTestServerWindow: APNS_WINDOW
      ? `connection receive window opened to ${APNS_WINDOW} bytes (BENCH_NTF_APNS_WINDOW)`
      : "the test server's default connection receive window (maxConcurrentStreams × 5,120 bytes)",
    ...(ONLY ? { only: ONLY } : {}),
    ...report.notes,
    loadAverageAtStart: start.load,
    machineBusyPctAtStart: start.busy === undefined ? null : round(start.busy),
    otherProcessesCpuPctMax: report.otherCpu.length > 0 ? round(Math.max(...report.otherCpu)) : null,
  };
}

export async function runNtfBench(): Promise<SectionResult> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-ntf-'));
  const t0 = performance.now();
  const start = await quietStart(t0);
  const apns = await ApnsTestServer.start({ topics: [TOPIC], ...(APNS_WINDOW ? { connectionWindowSize: APNS_WINDOW } : {}) });
  const rig: Rig = { children: new Children(), base, apns, teamKey: apns.keys.create(), router: new PushRouter(apns) };
  const report = new Report();
  try {
    printSetting(start);
    if (ONLY !== 'big') await stackPhases(rig, report);
    if (ONLY !== 'stack') await bigPhase(rig, report);
    warnIfDisturbed(report);
    console.log(`\nntf section: ${round((performance.now() - t0) / 1000, 1)} s`);
  } finally {
    await rig.children.killAll();
    await apns.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
  return { figures: report.figures, notes: sectionNotes(start, report) };
}

export async function run(): Promise<void> {
  const r = await runNtfBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('ntf', r))}`);
}
