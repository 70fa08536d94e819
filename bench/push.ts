// Push-provider benchmark: our clients side by side with the well-known ones,
// in one run, against the same local test server (127.0.0.1 only).
//
//   APNs      raw node:http2 (the ceiling) vs our ApnsProvider vs @parse/node-apn,
//             one HTTP/2 connection each, 100 and 500 pushes in flight, the same
//             ~2.9 KB message body (bench/push-apns-client-child.ts says exactly).
//             Targets: ours ≥ 0.95 × raw at the same concurrency, ≥ 1.15 × node-apn.
//   Web Push  our WebPushProvider vs web-push's sendNotification, 50 sends in flight,
//             the same plaintext (bench/push-webpush-client-child.ts). Target ≥ 3×.
//
// Processes (2 cores): the test server in one child, each measured client in a
// fresh child of its own (one core each). Each client is a closed loop;
// pushes/s = successes completed in MEASURE_MS after WARMUP_MS. ROUNDS rounds,
// each running every client once in a rotated order (noise hits all alike);
// figures are medians over the rounds, ratios are of those medians (the
// per-round figures are in the notes). Any answer but a success (200 APNs, 201
// Web Push), at the client or in the server's own counts, fails the section.
// Other processes on the machine (a test run) are waited out, and a run they
// disturbed anyway is repeated, within a time budget; the table shows their
// CPU. About 4 minutes.
//
// Knobs for diagnosis (none is needed for the figures):
//   BENCH_PUSH_CPU_PROF=DIR   CPU profiles of the server and every client in DIR/<process>/
//   BENCH_PUSH_ONLY=apns|webpush
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  BENCH_DIR,
  Children,
  median,
  nextMessage,
  ROOT,
  round,
  runChild,
  stop,
  table,
  waitForQuiet,
  writeResults,
  type ClosedLoopResult,
  type SectionResult,
} from './lib.ts';
import { PUSH_DATA_SIZE } from '../src/push/device.ts';
import { apnsBody } from '../src/push/apns/payload.ts';
import type { ApnsClient, ApnsClientSpec } from './push-apns-client-child.ts';
import type { WebPushClient, WebPushClientSpec } from './push-webpush-client-child.ts';

const TOPIC = 'chat.hush.bench';
const ROUNDS = 5;
const WARMUP_MS = 1000;
const MEASURE_MS = 3000;
const APNS_CONCURRENCY = [100, 500];
const APNS_CLIENTS: readonly ApnsClient[] = ['raw', 'ours', 'node-apn'];
const WEBPUSH_CONCURRENCY = 50;
const WEBPUSH_CLIENTS: readonly WebPushClient[] = ['ours', 'web-push'];
/** A client run: process start, connect, warm-up, window, drain; well under this. */
const RUN_TIMEOUT_MS = 30_000;

const ONLY = process.env.BENCH_PUSH_ONLY;
const fmt = (x: number) => round(x).toLocaleString('en');

/** Node arguments for a bench child: tsx, and a CPU profile into DIR/<what>/ with BENCH_PUSH_CPU_PROF. */
function nodeArgs(file: string, what: string, ...args: string[]): string[] {
  const dir = process.env.BENCH_PUSH_CPU_PROF;
  return [...(dir ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(dir, what)] : []), '--import', 'tsx', path.join(BENCH_DIR, file), ...args];
}

interface ServerChild {
  proc: ChildProcess;
  counts(): Promise<{ accepted: number; rejected: number }>;
}

/** A test server child speaking the IPC protocol of push-*-server-child.ts; resolves with its 'ready' message. */
async function startServer<Ready>(children: Children, file: string, what: string): Promise<{ server: ServerChild; ready: Ready }> {
  const proc = children.spawn(process.execPath, nodeArgs(file, what, TOPIC), { ipc: true });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout?.on('data', () => {});
  const ready = await nextMessage<Ready>(proc, 'ready', 30_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${err}`);
  });
  const counts = async () => {
    const reply = nextMessage<{ accepted: number; rejected: number }>(proc, 'counts', 10_000);
    proc.send({ t: 'counts' });
    return reply;
  };
  return { server: { proc, counts }, ready };
}

/** CPU other processes used during a run (% of one core): what neither the client nor the server did. */
const othersPct = (r: ClosedLoopResult) =>
  r.machineCpuPct === undefined || r.peerCpuPct === undefined ? 0 : Math.max(0, r.machineCpuPct - r.cpuPct - r.peerCpuPct);

/**
 * Other processes (a test run) share the 2 cores: a run starts once the machine is quiet, and a
 * run disturbed anyway (others over DISTURBED_PCT of a core) is repeated; waiting beyond the
 * first look and repeated runs share one time budget, so the section stays bounded.
 */
const DISTURBED_PCT = 25;
const MAX_REPEATS = 2;
const EXTRA_BUDGET_MS = 30_000;
const disturbance = { extraMs: 0, repeated: 0, keptDisturbed: [] as string[] };
const QUIET_LOOK_MS = 500; // waitForQuiet's sample

async function whenQuiet(): Promise<void> {
  const left = EXTRA_BUDGET_MS - disturbance.extraMs;
  const t = performance.now();
  await waitForQuiet(DISTURBED_PCT, Math.max(0, left));
  disturbance.extraMs += Math.max(0, performance.now() - t - QUIET_LOOK_MS);
}

/**
 * Runs one client child (a closed loop printing a ClosedLoopResult) and checks that every
 * request it made and every answer the server gave meanwhile was a success.
 */
async function measureOnce(children: Children, server: ServerChild, file: string, what: string, specFile: string): Promise<ClosedLoopResult> {
  const before = await server.counts();
  const out = await runChild(children, process.execPath, nodeArgs(file, what, specFile), RUN_TIMEOUT_MS);
  const after = await server.counts();
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as ClosedLoopResult;
  const rejected = after.rejected - before.rejected;
  if (r.errors > 0 || rejected > 0 || r.unfinished > 0)
    throw new Error(`${what}: ${r.errors} failed, ${rejected} rejected by the server, ${r.unfinished} unfinished; first: ${r.firstError ?? '-'}`);
  // the client's successes (and its first, untimed push) are the server's 200s, no more
  if (after.accepted - before.accepted !== r.ok + 1)
    throw new Error(`${what}: client counted ${r.ok + 1} delivered, server accepted ${after.accepted - before.accepted}`);
  return r;
}

async function measure(children: Children, server: ServerChild, file: string, what: string, spec: object, dir: string): Promise<ClosedLoopResult> {
  const specFile = path.join(dir, `${what}.json`);
  fs.writeFileSync(specFile, JSON.stringify(spec));
  for (let attempt = 0; ; attempt++) {
    await whenQuiet();
    const t = performance.now();
    const r = await measureOnce(children, server, file, what, specFile);
    if (othersPct(r) <= DISTURBED_PCT) return r;
    if (attempt === MAX_REPEATS || disturbance.extraMs >= EXTRA_BUDGET_MS) {
      disturbance.keptDisturbed.push(`${what}: others ${round(othersPct(r))}%`);
      return r;
    }
    disturbance.repeated++;
    disturbance.extraMs += performance.now() - t;
  }
}

/** Client CPU per success (all its threads: GC and TLS included), µs. */
const usPerPush = (r: ClosedLoopResult) => (r.cpuPct * 10_000) / r.perS;

/** Rotates `xs` by `k`: round k starts with a different client. */
const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

const med = (xs: ClosedLoopResult[], f: (r: ClosedLoopResult) => number | undefined) => {
  const v = xs.map(f).filter((x): x is number => x !== undefined);
  return v.length ? median(v) : NaN;
};

/** Runs of each client at each concurrency, in round order: runs.get(client)!.get(concurrency)![round]. */
type Runs<C extends string> = Map<C, Map<number, ClosedLoopResult[]>>;

/** ROUNDS rounds; in each, every concurrency, and at each every client once, in a rotated order. */
async function rounds<C extends string>(
  children: Children,
  server: ServerChild,
  dir: string,
  part: string,
  clients: readonly C[],
  concurrencies: readonly number[],
  childFile: string,
  specOf: (client: C, concurrency: number) => object,
): Promise<Runs<C>> {
  const runs: Runs<C> = new Map(clients.map((c) => [c, new Map(concurrencies.map((n) => [n, [] as ClosedLoopResult[]]))]));
  for (let k = 0; k < ROUNDS; k++)
    for (const n of concurrencies)
      for (const client of rotate(clients, k))
        runs.get(client)!.get(n)!.push(await measure(children, server, childFile, `${part}-${client}-${n}`, specOf(client, n), dir));
  return runs;
}

/**
 * Table rows and notes of one comparison: `ours` against each other client at each concurrency.
 * Figures: <part>_<client>_per_s_at_<n> (medians), <part>_ours_vs_<client>_at_<n> (ratio of medians).
 */
function report<C extends string>(part: string, runs: Runs<C>, ours: C, label: (c: C) => string, key: (c: C) => string, figures: Record<string, number>) {
  const rows: (string | number)[][] = [];
  const perRound: Record<string, unknown> = {};
  const cpu: Record<string, unknown> = {};
  const concurrencies = [...runs.get(ours)!.keys()];
  for (const n of concurrencies) {
    const mine = median(runs.get(ours)!.get(n)!.map((r) => r.perS));
    for (const [c, byN] of runs) {
      const rs = byN.get(n)!;
      const m = median(rs.map((r) => r.perS));
      figures[`${part}_${key(c)}_per_s_at_${n}`] = round(m);
      if (c !== ours) figures[`${part}_ours_vs_${key(c)}_at_${n}`] = round(mine / m, 3);
      rows.push([
        `${label(c)}, ${n} in flight`,
        fmt(m),
        rs.map((r) => fmt(r.perS)).join(' / '),
        c === ours ? '' : round(mine / m, 3),
        round(med(rs, (r) => r.cpuPct)),
        round(med(rs, usPerPush)),
        round(med(rs, (r) => r.peerCpuPct)),
        round(med(rs, othersPct)),
      ]);
      cpu[`${c}@${n}`] = {
        clientPct: round(med(rs, (r) => r.cpuPct)),
        clientUsPerPush: round(med(rs, usPerPush)),
        serverPct: round(med(rs, (r) => r.peerCpuPct)),
        othersPct: round(med(rs, othersPct)),
      };
    }
    perRound[`at_${n}`] = Array.from({ length: ROUNDS }, (_, i) =>
      Object.fromEntries([...runs].map(([c, byN]) => [c, round(byN.get(n)![i]!.perS)])),
    );
  }
  const text = table(['client', 'per second', `rounds (${ROUNDS})`, 'ours ÷ this', 'client CPU %', 'client µs/push', 'server CPU %', 'others CPU %'], rows);
  return { text, notes: { perRound, cpuMedian: cpu } };
}

const APNS_BODY_BYTES = Buffer.byteLength(apnsBody({ kind: 'message', data: new Uint8Array(PUSH_DATA_SIZE) }));

/** One provider's comparison: its test server in a child, every client in rounds, the table and notes. */
interface Comparison<Ready, C extends string> {
  part: 'apns' | 'webpush';
  serverChild: string;
  clientChild: string;
  clients: readonly C[];
  concurrencies: readonly number[];
  spec: (ready: Ready, client: C, concurrency: number) => object;
  label: (c: C) => string;
  key: (c: C) => string;
  /** What is measured, and the target. */
  what: string;
  target: string;
  notes: { clients: string; request: string; server: string };
}

async function comparePart<Ready, C extends string>(children: Children, dir: string, figures: Record<string, number>, o: Comparison<Ready, C>) {
  const { server, ready } = await startServer<Ready>(children, o.serverChild, `${o.part}-server`);
  const t0 = performance.now();
  const runs = await rounds(children, server, dir, o.part, o.clients, o.concurrencies, o.clientChild, (client, concurrency) => ({
    ...o.spec(ready, client, concurrency),
    client,
    concurrency,
    warmupMs: WARMUP_MS,
    measureMs: MEASURE_MS,
    serverPid: server.proc.pid!,
  }));
  await stop(server.proc);
  const r = report(o.part, runs, 'ours' as C, o.label, o.key, figures);
  console.log(`${o.what}, ${MEASURE_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up, median of ${ROUNDS} interleaved rounds (${o.target})`);
  console.log(r.text + '\n');
  return { ...o.notes, ...r.notes, seconds: round((performance.now() - t0) / 1000, 1) };
}

const apnsPart = (children: Children, dir: string, figures: Record<string, number>) =>
  comparePart<Omit<ApnsClientSpec, 'client' | 'topic' | 'concurrency' | 'warmupMs' | 'measureMs' | 'serverPid'>, ApnsClient>(children, dir, figures, {
    part: 'apns',
    serverChild: 'push-apns-server-child.ts',
    clientChild: 'push-apns-client-child.ts',
    clients: APNS_CLIENTS,
    concurrencies: APNS_CONCURRENCY,
    spec: (ready) => ({ ...ready, topic: TOPIC }),
    label: (c) => (c === 'raw' ? 'raw node:http2' : c === 'ours' ? 'ours (ApnsProvider)' : '@parse/node-apn'),
    key: (c) => (c === 'raw' ? 'raw_http2' : c === 'ours' ? 'ours' : 'node_apn'),
    what: `APNs: pushes/s over one HTTP/2 connection, ${fmt(APNS_BODY_BYTES)}-byte message bodies`,
    target: 'targets: ours ≥ 0.95 × raw, ≥ 1.15 × node-apn',
    notes: {
      clients:
        'raw: node:http2, every request prepared beforehand (the ceiling); ours: ApnsProvider {connections: 1, maxConcurrentStreams: 1000}; ' +
        '@parse/node-apn 8: Provider (one Client = one HTTP/2 session, no stream cap of its own; defaults otherwise), a new Notification per push',
      request: `POST /3/device/<one of 1024 tokens>, kind 'message' headers and provider token, the ${APNS_BODY_BYTES}-byte JSON body of a real message push`,
      server: 'ApnsTestServer in its own process: record off, maxConcurrentStreams 1000, connection window 1000 × 5120 bytes (its defaults)',
    },
  });

const webPushPart = (children: Children, dir: string, figures: Record<string, number>) =>
  comparePart<Pick<WebPushClientSpec, 'url' | 'ca' | 'vapid' | 'subscriptions'>, WebPushClient>(children, dir, figures, {
    part: 'webpush',
    serverChild: 'push-webpush-server-child.ts',
    clientChild: 'push-webpush-client-child.ts',
    clients: WEBPUSH_CLIENTS,
    concurrencies: [WEBPUSH_CONCURRENCY],
    spec: (ready) => ready,
    label: (c) => (c === 'ours' ? 'ours (WebPushProvider)' : 'web-push'),
    key: (c) => (c === 'ours' ? 'ours' : 'web_push'),
    what: `Web Push: pushes/s, ${PUSH_DATA_SIZE}-byte plaintext (aes128gcm, VAPID), test service offering HTTP/2 and HTTP/1.1`,
    target: 'target: ours ≥ 3 × web-push',
    notes: {
      clients:
        `ours: WebPushProvider {maxSockets: ${WEBPUSH_CONCURRENCY}}, which finds h2 offered and uses one HTTP/2 connection; web-push 3 (HTTP/1.1 only): sendNotification with vapidDetails, TTL/urgency/topic as ours, ` +
        `agent: https.Agent {ca, keepAlive: true, maxSockets: ${WEBPUSH_CONCURRENCY}}`,
      request: `a message push: ${PUSH_DATA_SIZE} random bytes of plaintext, aes128gcm, VAPID (subscriptions locked to its key), to 64 subscriptions in turn`,
      server: 'WebPushTestServer in its own process: HTTP/2 and HTTP/1.1 over TLS by ALPN, record off, decrypt off (every header, the VAPID JWT and the aes128gcm header still checked)',
    },
  });

export async function runPushBench(): Promise<SectionResult> {
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-push-'));
  const figures: Record<string, number> = {};
  const notes: Record<string, unknown> = {};
  const failures: string[] = [];
  const t0 = performance.now();
  // each part on its own: one failing still leaves the other's figures
  const part = async (name: string, f: () => Promise<Record<string, unknown>>) => {
    try {
      notes[name] = await f();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      failures.push(`${name}: ${msg}`);
      notes[name] = { failed: msg };
      console.error(`${name}: FAILED: ${msg}`);
    } finally {
      await children.killAll();
    }
  };
  try {
    if (ONLY !== 'webpush') await part('apns', () => apnsPart(children, dir, figures));
    if (ONLY !== 'apns') await part('webpush', () => webPushPart(children, dir, figures));
  } finally {
    await children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const kept = disturbance.keptDisturbed;
  if (kept.length > 0)
    console.log(
      `WARNING: other processes used over ${DISTURBED_PCT}% of a core during ${kept.length} run(s) even after repeats ` +
        `(${kept.slice(0, 4).join(', ')}${kept.length > 4 ? ', …' : ''}; all in the notes): those figures are lower than this machine gives alone`,
    );
  console.log(`push section: ${round((performance.now() - t0) / 1000, 1)} s`);
  const result: SectionResult = {
    figures,
    notes: {
      processes: 'test server: one child process; each measured client: a fresh child process; all on 127.0.0.1',
      measurement: `closed loop; ${MEASURE_MS} ms window after ${WARMUP_MS} ms warm-up; median of ${ROUNDS} rounds, clients rotated each round`,
      otherProcesses: {
        rule:
          `a run starts when other processes use < ${DISTURBED_PCT}% of a core; one they used more of during its window is repeated ` +
          `(≤ ${MAX_REPEATS}×; extra waiting and repeats ≤ ${EXTRA_BUDGET_MS / 1000} s in all)`,
        extraS: round(disturbance.extraMs / 1000, 1),
        repeatedRuns: disturbance.repeated,
        keptDisturbed: disturbance.keptDisturbed,
      },
      ...notes,
    },
  };
  if (failures.length > 0) {
    // the figures measured are still written; the section fails
    writeResults('push', result);
    throw new Error(failures.join('; '));
  }
  return result;
}

export async function run(): Promise<void> {
  const r = await runPushBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('push', r))}`);
}
