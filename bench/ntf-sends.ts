// The SEND runs of the notification-server benchmark (bench/ntf.ts): figure 1 (SEND → push
// latency at paced rates), figure 2 (sustained pushes, a window of tokens waiting), and
// figure 3 (raw HTTP/2, the ceiling), through the SEND driver bench/ntf-sender-child.ts.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type Children, metric, metricsText, nextMessage, percentile, round, sleep, table, TEST_CA_FILE, waitForLine } from './lib.ts';
import type { SenderInit, SenderResult } from './ntf-sender-child.ts';
import {
  collectGarbage,
  CONCURRENCY,
  cpuPct,
  cpuSnap,
  fmt,
  hex,
  ms,
  pctStr,
  phase,
  tsxArgs,
  type Report,
  type Rig,
} from './ntf-rig.ts';
import type { PushRouter, SubQueue } from './ntf-router.ts';
import { type Stack, SUB_TOKENS, SUBS_PER_TOKEN } from './ntf-stack.ts';

const RATES = [1000, 5000];
const LAT_WARMUP_MS = 500;
const LAT_MEASURE_MS = 5000;
const DRAIN_MS = 10_000;

const FLOOD_WINDOW = 1500;
const FLOOD_WARMUP_MS = 1000;
const FLOOD_MEASURE_MS = 5000;

const H2_STREAMS = CONCURRENCY;
const H2_WARMUP_MS = 1000;
const H2_MEASURE_MS = 5000;

const NTF_RECEIVED = 'hush_ntf_notifications_received_total';

/** Cumulative histogram buckets (le → count) of one series. */
function buckets(text: string, name: string, label: string): Map<string, number> {
  const m = new Map<string, number>();
  const re = new RegExp(`^${name}\\{le="([^"]+)",${label}\\} (\\S+)$`, 'gm');
  for (const x of text.matchAll(re)) m.set(x[1]!, Number(x[2]));
  return m;
}

/** Share of the window's observations above each bucket bound: the provider time's tail. */
function tail(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const total = (b.get('+Inf') ?? 0) - (a.get('+Inf') ?? 0);
  const out: Record<string, number> = {};
  for (const [le, n] of b) if (le !== '+Inf' && Number(le) >= 0.005) out[`over_${Number(le) * 1000}ms`] = total > 0 ? round(1 - (n - (a.get(le) ?? 0)) / total, 3) : 0;
  return out;
}

export type Run = { mode: 'paced'; rate: number } | { mode: 'window'; window: number };

export interface RunResult {
  r: SenderResult;
  pushesPerS: number;
  receivedPerS: number;
  cpu: Record<string, number | undefined>;
  benchLoopP99: number;
  /** Mean time the APNs provider took per push (request → answer, its queue included), from the server's histogram. */
  providerMeanMs: number;
  providerTail: Record<string, number>;
  /** Pushes waiting in the dispatcher at the end of the window. */
  dispatchQueued: number;
}

/** The SEND driver (bench/ntf-sender-child.ts), a child process connected to its relays; the router reports pushes to it. */
export async function startSender(children: Children, router: PushRouter, init: Omit<SenderInit, 't'>): Promise<ChildProcess> {
  const proc = children.spawn(process.execPath, tsxArgs('ntf-sender-child.ts'), { ipc: true });
  proc.stdout?.on('data', () => {});
  proc.stderr?.on('data', (d: Buffer) => process.stderr.write(`[ntf-sender-child.ts] ${d}`));
  router.sender = proc;
  const ready = nextMessage(proc, 'ready', 30_000);
  proc.send({ t: 'init', ...init });
  await ready;
  return proc;
}

/** Starts one run of the driver; resolves with its result once the run and its drain are over. */
export function startRun(proc: ChildProcess, run: Run, warmupMs: number, measureMs: number): Promise<SenderResult> {
  const result = nextMessage<SenderResult>(proc, 'result', warmupMs + measureMs + DRAIN_MS + 30_000);
  // Awaited after the measurement: a driver that dies meanwhile rejects there, where the section's
  // finally kills its processes, not as an unhandled rejection that ends the run and orphans them.
  result.catch(() => {});
  proc.send({ t: 'run', ...run, warmupMs, measureMs, drainMs: DRAIN_MS });
  return result;
}

/** The SEND driver over one relay's queues, and the notification server's metrics over its runs. */
export class SendDriver {
  private constructor(
    private readonly proc: ChildProcess,
    private readonly stack: Stack,
    private readonly router: PushRouter,
  ) {}

  static async start(children: Children, stack: Stack, router: PushRouter, queues: SubQueue[]): Promise<SendDriver> {
    const proc = await startSender(children, router, { addresses: [stack.relay.address], sndIds: queues.map((q) => hex(q.sndId)), perToken: SUBS_PER_TOKEN });
    stack.sender = proc;
    stack.procs.sender = proc.pid!;
    return new SendDriver(proc, stack, router);
  }

  /** One run of the driver; the server's metrics and the processes' CPU over its measurement window. */
  async run(run: Run, warmupMs: number, measureMs: number): Promise<RunResult> {
    const { stack, router } = this;
    const snap = async () => {
      const text = await metricsText(stack.ntf.metricsPort);
      return {
        ...cpuSnap(stack.procs),
        pushes: router.messagePushes,
        received: metric(text, NTF_RECEIVED),
        pushSecondsSum: metric(text, 'hush_ntf_push_seconds_sum{provider="apns"}'),
        pushSecondsCount: metric(text, 'hush_ntf_push_seconds_count{provider="apns"}'),
        queued: metric(text, 'hush_ntf_push_queue_length{provider="apns"}'),
        buckets: buckets(text, 'hush_ntf_push_seconds_bucket', 'provider="apns"'),
      };
    };
    collectGarbage();
    const loop = monitorEventLoopDelay({ resolution: 1 });
    const result = startRun(this.proc, run, warmupMs, measureMs);
    await sleep(warmupMs);
    loop.enable();
    const a = await snap();
    await sleep(measureMs);
    const b = await snap();
    loop.disable();
    phase(run.mode === 'paced' ? `paced-${run.rate}` : 'window', a.t, b.t);
    const r = await result;
    const s = (b.t - a.t) / 1000;
    return {
      r,
      pushesPerS: (b.pushes - a.pushes) / s,
      receivedPerS: (b.received - a.received) / s,
      cpu: cpuPct(a, b),
      benchLoopP99: loop.percentile(99) / 1e6,
      providerMeanMs: ((b.pushSecondsSum - a.pushSecondsSum) * 1000) / Math.max(1, b.pushSecondsCount - a.pushSecondsCount),
      providerTail: tail(a.buckets, b.buckets),
      dispatchQueued: b.queued,
    };
  }
}

// ---- 1. latency ----

/** One paced run: its figures go to `figures`; returns its table row and notes. */
function latencyAt(rate: number, x: RunResult, figures: Record<string, number>) {
  const l = x.r.latencies;
  const p50 = ms(percentile(l, 50));
  const p99 = ms(percentile(l, 99));
  const max = ms(l.at(-1) ?? NaN);
  const sentPerS = (x.r.sentInWindow * 1000) / LAT_MEASURE_MS;
  figures[`send_push_p50_ms_at_${rate}`] = p50;
  figures[`send_push_p99_ms_at_${rate}`] = p99;
  figures[`send_push_max_ms_at_${rate}`] = max;
  figures[`send_push_achieved_per_s_at_${rate}`] = round(sentPerS);
  figures[`send_push_missing_at_${rate}`] = x.r.missing;
  const row = [`${fmt(rate)}/s`, fmt(sentPerS), l.length, p50, p99, max, x.r.skipped, x.r.missing, pctStr(x.cpu)];
  const notes = {
    sent: x.r.sent,
    sentInWindow: x.r.sentInWindow,
    skippedBecauseEveryTokenWaited: x.r.skipped,
    matched: x.r.completed,
    missingAfterDrain: x.r.missing,
    unexpected: x.r.unexpected,
    sendErrors: x.r.errors,
    ...(x.r.firstError ? { firstSendError: x.r.firstError } : {}),
    latencyPercentilesMs: Object.fromEntries([50, 75, 90, 95, 98, 99, 99.9].map((q) => [`p${q}`, ms(percentile(l, q))])),
    ntfNmsgPerS: round(x.receivedPerS),
    pushesPerS: round(x.pushesPerS),
    cpuPct: x.cpu,
    providerMeanMs: ms(x.providerMeanMs),
    providerTimeShareOver: x.providerTail,
    dispatchQueuedAtEnd: x.dispatchQueued,
    senderLoopDelayP99Ms: ms(x.r.loopDelayP99Ms),
    benchLoopDelayP99Ms: ms(x.benchLoopP99),
  };
  return { row, notes };
}

/** Figure 1: SEND with notify paced at each of RATES. */
export async function latencyPhase(driver: SendDriver, report: Report): Promise<void> {
  const rows: (string | number)[][] = [];
  const notes: Record<string, unknown> = {};
  for (const rate of RATES) {
    const x = await driver.run({ mode: 'paced', rate }, LAT_WARMUP_MS, LAT_MEASURE_MS);
    report.noteOther(x.cpu);
    const at = latencyAt(rate, x, report.figures);
    rows.push(at.row);
    notes[`at_${rate}`] = at.notes;
  }
  report.notes.latency = notes;
  console.log(
    `1. SEND → push latency: SEND with notify paced over ${SUB_TOKENS} tokens × ${SUBS_PER_TOKEN} queues, recipients offline, ` +
      `${LAT_MEASURE_MS / 1000} s after ${LAT_WARMUP_MS / 1000} s warm-up; latency = push at the APNs test server − SEND call (target p99 ≤ 25 ms at 1,000/s)`,
  );
  console.log(table(['offered', 'sent/s', 'samples', 'p50 ms', 'p99 ms', 'max ms', 'skipped', 'missing', 'CPU (% of one core)'], rows) + '\n');
}

// ---- 2. sustained ----

/** Figure 2: FLOOD_WINDOW tokens with a SEND waiting for its push; printed with figure 3. */
export async function sustainedPhase(driver: SendDriver, router: PushRouter, report: Report): Promise<RunResult> {
  const flood = await driver.run({ mode: 'window', window: FLOOD_WINDOW }, FLOOD_WARMUP_MS, FLOOD_MEASURE_MS);
  report.noteOther(flood.cpu);
  report.figures.sustained_pushes_per_s = round(flood.pushesPerS);
  report.figures.sustained_nmsg_per_s = round(flood.receivedPerS);
  report.figures.sustained_matched_per_s = round((flood.r.completedInWindow * 1000) / FLOOD_MEASURE_MS);
  report.notes.sustained = {
    window: `${FLOOD_WINDOW} tokens with a SEND waiting for its push (one per token); ${FLOOD_MEASURE_MS} ms after ${FLOOD_WARMUP_MS} ms warm-up`,
    cpuPct: flood.cpu,
    providerMeanMs: ms(flood.providerMeanMs),
    providerTimeShareOver: flood.providerTail,
    dispatchQueuedAtEnd: flood.dispatchQueued,
    benchLoopDelayP99Ms: ms(flood.benchLoopP99),
    sent: flood.r.sent,
    matched: flood.r.completed,
    missingAfterDrain: flood.r.missing,
    unexpected: flood.r.unexpected,
    sendErrors: flood.r.errors,
    latencyP50Ms: ms(percentile(flood.r.latencies, 50)),
    latencyP99Ms: ms(percentile(flood.r.latencies, 99)),
    badPushes: router.badPushes,
    badMeta: router.badMeta,
    unknownPushes: router.unknown,
  };
  return flood;
}

// ---- 3. raw HTTP/2 ----

/** The raw client's pushes/s at the APNs test server, and the processes' CPU. */
interface RawResult {
  perS: number;
  cpu: Record<string, number | undefined>;
  /** What the client itself counted (its last line of output). */
  client: { ok: number; failed: number; perS: number };
  bodyBytes: number;
}

async function rawHttp2({ children, base, apns, router }: Rig): Promise<RawResult> {
  const sample = router.sample;
  if (!sample) throw new Error('no message push captured');
  const spec = path.join(base, 'h2.json');
  fs.writeFileSync(
    spec,
    JSON.stringify({
      url: apns.url,
      caFile: TEST_CA_FILE,
      path: `/3/device/${sample.token}`,
      headers: sample.headers,
      authorization: `bearer ${sample.jwt.token}`,
      body: sample.body,
      streams: H2_STREAMS,
      durationMs: H2_WARMUP_MS + H2_MEASURE_MS,
    }),
  );
  router.matching = false;
  collectGarbage();
  const h2 = children.spawn(process.execPath, tsxArgs('ntf-h2-child.ts', spec));
  let out = '';
  h2.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((r) => h2.once('exit', r));
  await waitForLine(h2, /started/, 20_000);
  const procs = { h2client: h2.pid!, bench: process.pid };
  await sleep(H2_WARMUP_MS);
  const a = { ...cpuSnap(procs), pushes: router.messagePushes };
  await sleep(H2_MEASURE_MS);
  const b = { ...cpuSnap(procs), pushes: router.messagePushes };
  const code = await Promise.race([exit, sleep(20_000).then(() => 'timeout')]);
  if (code !== 0) throw new Error(`raw HTTP/2 client failed (${code})`);
  return {
    perS: ((b.pushes - a.pushes) * 1000) / (b.t - a.t),
    cpu: cpuPct(a, b),
    client: JSON.parse(out.trim().split('\n').at(-1)!) as RawResult['client'],
    bodyBytes: Buffer.byteLength(sample.body),
  };
}

/** Figure 3: the captured push repeated by a raw node:http2 client, once the stack is stopped; prints figures 2 and 3. */
export async function rawHttp2Phase(rig: Rig, flood: RunResult, report: Report): Promise<void> {
  const raw = await rawHttp2(rig);
  const { figures } = report;
  report.noteOther(raw.cpu);
  figures.raw_http2_requests_per_s = round(raw.perS);
  figures.sustained_vs_raw = round(flood.pushesPerS / raw.perS, 3);
  report.notes.rawHttp2 = {
    client: `node:http2, own process, 1 connection, ${H2_STREAMS} streams in flight, the captured push (${raw.bodyBytes}-byte body, same headers and provider token)`,
    counted: 'pushes the APNs test server accepted, as for the notification server',
    clientCountedPerS: round(raw.client.perS),
    failed: raw.client.failed,
    cpuPct: raw.cpu,
  };
  console.log(
    `2./3. Sustained pushes vs raw HTTP/2 against the same APNs test server (${FLOOD_MEASURE_MS / 1000} s each after warm-up; target sustained ≥ 0.6 × raw)`,
  );
  console.log(
    table(
      ['', 'per second', 'vs raw', 'CPU (% of one core)'],
      [
        ['NMSG received by the server', fmt(flood.receivedPerS), '', pctStr(flood.cpu)],
        ['pushes accepted (distinct tokens)', fmt(flood.pushesPerS), String(figures.sustained_vs_raw), ''],
        [`raw node:http2, ${H2_STREAMS} streams`, fmt(raw.perS), '1', pctStr(raw.cpu)],
      ],
    ),
  );
  const { router } = rig;
  console.log(
    `sustained run: window ${FLOOD_WINDOW} tokens, SEND→push p50 ${ms(percentile(flood.r.latencies, 50))} ms, p99 ${ms(percentile(flood.r.latencies, 99))} ms; ` +
      `missing ${flood.r.missing}, bad pushes ${router.badPushes}, bad meta ${router.badMeta}\n`,
  );
}
