// Relay benchmark. A real relay process (bin/hush.js relay start, journal
// store, node:crypto) on 127.0.0.1; the clients run in this process with
// node:crypto too. The machine's cores are shared by relay and clients.
//   1. SEND→MSG throughput with 1, 10 and 100 queues: one sender connection
//      keeps a window of messages in flight per queue, one recipient connection
//      SUBs every queue and ACKs each MSG as it arrives (the relay sends a
//      queue's next message only after the ACK). Messages received per second
//      over a fixed window after a warm-up; median of 3 runs.
//   2. SEND→NMSG latency at 1,000 SENDs/s with notify, spread over 100 queues
//      whose notifier credentials one notifier connection has NSUB'd; the
//      recipients are offline, the case notifications exist for. Latency is
//      NMSG arrival − SEND call, on this process' clock; NMSGs are matched to
//      SENDs in order per queue and their meta opened with openMeta. The
//      benchmark process' own event-loop delay and GC pauses are reported
//      beside it, since they are part of every latency it measures.
//   3. Peer: a plain `ws` echo server (child process) with 16,384-byte binary
//      frames, the relay's block size, pipelined by one client: the raw block
//      rate the relay's block rate is compared with.
// Bounded: every phase has a fixed duration and a drain timeout; the whole
// section takes about a minute. Children are killed at the end, even on error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import WebSocket from 'ws';
import { nodeCrypto } from '../src/node/crypto.ts';
import type { WebSocketFactory } from '../src/core/client.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { openMessage, openMeta, RelayClient, type RelayEvent } from '../src/relay/client.ts';
import { RELAY_BLOCK_SIZE } from '../src/relay/protocol.ts';
import {
  BENCH_DIR,
  Children,
  median,
  percentile,
  machineBusyMs,
  processCpuMs,
  HUSH,
  ROOT,
  runChild,
  round,
  selfCpuMs,
  sleep,
  table,
  waitForLine,
  writeResults,
  type SectionResult,
} from './lib.ts';
import { newQueue, type Queue as BenchQueue } from '../test/helpers.ts';

const crypto = nodeCrypto;
export const BODY_BYTES = 256;
const RUNS = 3;
const WARMUP_MS = 500;
const MEASURE_MS = 3000;
const DRAIN_TIMEOUT_MS = 10_000;
/** Messages in flight (sent, not yet received) across all queues, and at least this many per queue. */
const WINDOW_TOTAL = 1024;
const WINDOW_MIN_PER_QUEUE = 8;
const QUEUE_COUNTS = [1, 10, 100];

const NTF_RATE = 1000;
const NTF_QUEUES = 100;
const NTF_WARMUP_MS = 500;
const NTF_MEASURE_MS = 5000;

const ECHO_WINDOW = 32;

const key = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

// ---- the relay process ----

export interface RelayProcess {
  address: string;
  pid: number;
}

/** Benchmarks make thousands of queues from loopback: the relay's NEW limits (relay.json `creation`) out of their way. */
export const NO_CREATION_LIMITS_ENV = {
  HUSH_RELAY_CREATION_PER_CONNECTION_BURST: '1000000000',
  HUSH_RELAY_CREATION_PER_CONNECTION_PER_HOUR: '1000000000',
  HUSH_RELAY_CREATION_PER_ADDRESS_BURST: '1000000000',
  HUSH_RELAY_CREATION_PER_ADDRESS_PER_HOUR: '1000000000',
};

/** `env` adds settings (e.g. HUSH_RELAY_FSYNC) to the relay's environment. */
export async function startRelayProcess(children: Children, dir: string, env: Record<string, string> = {}): Promise<RelayProcess> {
  // The port in relay.json is overridden below: HUSH_RELAY_PORT=0 takes a free one.
  const init = children.spawn(process.execPath, [HUSH, 'relay', 'init', '--dir', dir]);
  await waitForLine(init, /address: /);
  await new Promise((r) => (init.exitCode === null ? init.once('exit', r) : r(null)));
  const relayEnv = {
    ...process.env,
    HUSH_RELAY_PORT: '0',
    HUSH_RELAY_METRICS_PORT: '0',
    HUSH_RELAY_QUEUE_QUOTA: '1000000',
    HUSH_LOG_LEVEL: 'warn',
    ...NO_CREATION_LIMITS_ENV,
    ...env,
  };
  // For profiling: BENCH_RELAY_CPU_PROF=DIR writes a V8 CPU profile of the relay into DIR when it
  // stops; BENCH_RELAY_NODE_FLAGS adds node flags (e.g. --trace-gc) and shows the relay's stdout.
  const prof = process.env.BENCH_RELAY_CPU_PROF;
  const extra = process.env.BENCH_RELAY_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [];
  const flags = [...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(prof)] : []), ...extra];
  const relay = children.spawn(process.execPath, [...flags, HUSH, 'relay', 'start', '--dir', dir], { env: relayEnv });
  relay.stderr?.on('data', (d: Buffer) => process.stderr.write(`[relay] ${d}`));
  const m = await waitForLine(relay, /relay address: (\S+)/);
  if (extra.length > 0) relay.stdout?.on('data', (d: Buffer) => process.stdout.write(`[relay] ${d}`));
  return { address: m[1]!, pid: relay.pid! };
}

// ---- clients ----

export interface FrameCounter {
  in: number;
  out: number;
}

/** nodeWebSocket, counting the frames (blocks) each way. */
function countingWebSocket(c: FrameCounter): WebSocketFactory {
  const base = nodeWebSocket();
  return (url) => {
    const ws = base(url);
    const send = ws.send.bind(ws);
    ws.send = (d) => {
      c.out++;
      send(d);
    };
    (ws as unknown as WebSocket).on('message', () => c.in++);
    return ws;
  };
}

export const connect = (address: string, counter: FrameCounter, onEvent?: (e: RelayEvent) => void) =>
  RelayClient.connect(address, {
    webSocket: countingWebSocket(counter),
    crypto,
    timeoutMs: 30_000,
    ...(onEvent ? { onEvent } : {}),
  });

/** The tests' queue maker: keys from the client's suite (here node:crypto). */
export { newQueue, type BenchQueue };

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

interface Snapshot {
  t: number;
  received: number;
  frames: number;
  relayCpu: number | undefined;
  selfCpu: number;
  machineCpu: number | undefined;
}

/** CPU % (of one core) used by everything but the relay and this process between two snapshots. */
function otherCpuPct(a: Snapshot, b: Snapshot): number | undefined {
  if (a.machineCpu === undefined || b.machineCpu === undefined || a.relayCpu === undefined || b.relayCpu === undefined)
    return undefined;
  const other = b.machineCpu - a.machineCpu - (b.relayCpu - a.relayCpu) - (b.selfCpu - a.selfCpu);
  return Math.max(0, (other / (b.t - a.t)) * 100);
}

// ---- 1. SEND→MSG throughput ----

interface ThroughputRun {
  msgsPerS: number;
  framesPerS: number;
  relayCpuPct: number | undefined;
  clientCpuPct: number;
  /** CPU other processes on the machine used meanwhile: the cores are not the benchmark's alone. */
  otherCpuPct: number | undefined;
  errors: number;
}

export async function throughputRun(relay: RelayProcess, nq: number): Promise<ThroughputRun> {
  const counter: FrameCounter = { in: 0, out: 0 };
  const window = Math.max(WINDOW_MIN_PER_QUEUE, Math.ceil(WINDOW_TOTAL / nq));
  const body = crypto.randomBytes(BODY_BYTES);
  type Q = BenchQueue & { inFlight: number };
  const byRcvId = new Map<string, Q>();
  let received = 0;
  let errors = 0;
  let running = false;
  let closing = false;
  let firstError: unknown;
  const fail = (e: unknown) => {
    if (closing) return;
    errors++;
    firstError ??= e;
  };

  const rcv = await connect(relay.address, counter, (e) => {
    if (e.type !== 'MSG') return;
    const q = byRcvId.get(key(e.entityId));
    if (!q) return fail(new Error('MSG for an unknown queue'));
    const m = openMessage(crypto, q.rcvDhSecret, e);
    if (!m || m.body.length !== BODY_BYTES) fail(new Error('MSG did not open'));
    received++;
    q.inFlight--;
    rcv.ack(q.rcvId, q.rcvAuth.privateKey, e.msgId).catch(fail);
    topUp(q);
  });
  const snd = await connect(relay.address, counter);
  const topUp = (q: Q) => {
    while (running && q.inFlight < window) {
      q.inFlight++;
      snd.send(q.sndId, body).catch((e) => {
        q.inFlight--;
        fail(e);
      });
    }
  };
  try {
    const queues: Q[] = [];
    for (const q of await Promise.all(Array.from({ length: nq }, () => newQueue(rcv, false)))) {
      const bq = { ...q, inFlight: 0 };
      queues.push(bq);
      byRcvId.set(key(q.rcvId), bq);
    }
    await Promise.all(queues.map((q) => rcv.subscribe(q.rcvId, q.rcvAuth.privateKey)));

    const snap = (): Snapshot => ({
      t: performance.now(),
      received,
      frames: counter.in + counter.out,
      relayCpu: processCpuMs(relay.pid),
      selfCpu: selfCpuMs(),
      machineCpu: machineBusyMs(),
    });
    running = true;
    for (const q of queues) topUp(q);
    await sleep(WARMUP_MS);
    const a = snap();
    await sleep(MEASURE_MS);
    const b = snap();
    running = false;
    if (!(await waitUntil(() => queues.every((q) => q.inFlight === 0), DRAIN_TIMEOUT_MS)))
      throw new Error(`messages still in flight ${DRAIN_TIMEOUT_MS} ms after the senders stopped`);
    if (firstError) throw firstError;
    const s = (b.t - a.t) / 1000;
    return {
      msgsPerS: (b.received - a.received) / s,
      framesPerS: (b.frames - a.frames) / s,
      relayCpuPct: a.relayCpu !== undefined && b.relayCpu !== undefined ? (b.relayCpu - a.relayCpu) / (b.t - a.t) * 100 : undefined,
      clientCpuPct: ((b.selfCpu - a.selfCpu) / (b.t - a.t)) * 100,
      otherCpuPct: otherCpuPct(a, b),
      errors,
    };
  } finally {
    closing = true;
    running = false;
    rcv.close();
    snd.close();
  }
}

// ---- 2. SEND→NMSG latency at a fixed rate ----

interface LatencyRun {
  nmsg: number[];
  sent: number;
  missing: number;
  relayCpuPct: number | undefined;
  otherCpuPct: number | undefined;
  /** The benchmark process' own hiccups while measuring: event-loop delay and GC pauses (ms). */
  clientLoopDelayP99: number;
  clientLoopDelayMax: number;
  clientGcPauses: number;
  clientGcMaxMs: number;
}

/**
 * The push case: recipients are offline (that is what notifications are for),
 * so nobody SUBs; messages wait in their queues while the notifier gets NMSGs.
 */
export async function latencyRun(relay: RelayProcess): Promise<LatencyRun> {
  const counter: FrameCounter = { in: 0, out: 0 };
  const body = crypto.randomBytes(BODY_BYTES);
  type Issue = { t: number; measured: boolean };
  type Q = BenchQueue & { ntfFifo: Issue[] };
  const byNotifierId = new Map<string, Q>();
  const nmsgLat: number[] = [];
  let closing = false;
  let firstError: unknown;
  const fail = (e: unknown) => {
    if (!closing) firstError ??= e;
  };

  const ntf = await connect(relay.address, counter, (e) => {
    if (e.type !== 'NMSG') return;
    const t = performance.now();
    const q = byNotifierId.get(key(e.entityId));
    if (!q) return fail(new Error('NMSG for an unknown notifier'));
    // NMSGs of a queue come in the order of its SENDs.
    const issue = q.ntfFifo.shift();
    if (issue?.measured) nmsgLat.push(t - issue.t);
    if (!openMeta(crypto, q.ntf!.rcvNtfDhSecret, e)) fail(new Error('NMSG meta did not open'));
  });
  const snd = await connect(relay.address, counter);
  try {
    // The recipient creates its queues, with notifier credentials, and goes away.
    const rcv = await connect(relay.address, counter);
    const queues: Q[] = [];
    try {
      for (const q of await Promise.all(Array.from({ length: NTF_QUEUES }, () => newQueue(rcv, true)))) {
        const bq = { ...q, ntfFifo: [] };
        queues.push(bq);
        byNotifierId.set(key(q.ntf!.notifierId), bq);
      }
    } finally {
      rcv.close();
    }
    await Promise.all(queues.map((q) => ntf.subscribeNotifier(q.ntf!.notifierId, q.ntf!.auth.privateKey)));

    let issued = 0;
    let a: Snapshot | undefined;
    let b: Snapshot | undefined;
    const snap = (): Snapshot => ({
      t: performance.now(),
      received: 0,
      frames: 0,
      relayCpu: processCpuMs(relay.pid),
      selfCpu: selfCpuMs(),
      machineCpu: machineBusyMs(),
    });
    const total = NTF_WARMUP_MS + NTF_MEASURE_MS;
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    const gcPauses: number[] = [];
    let measuring = false;
    const gcObserver = new PerformanceObserver((list) => {
      if (measuring) for (const e of list.getEntries()) gcPauses.push(e.duration);
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    const start = performance.now();
    await new Promise<void>((resolve) => {
      // Paced by a 1 ms timer: each tick sends what is due by then, so the rate holds on average.
      const tick = () => {
        const elapsed = performance.now() - start;
        if (elapsed >= NTF_WARMUP_MS && a === undefined) {
          a = snap();
          measuring = true;
          loopDelay.enable();
        }
        if (elapsed >= total) {
          b = snap();
          measuring = false;
          loopDelay.disable();
          return resolve();
        }
        const due = Math.floor((elapsed * NTF_RATE) / 1000);
        while (issued < due) {
          const q = queues[issued % queues.length]!;
          q.ntfFifo.push({ t: performance.now(), measured: elapsed >= NTF_WARMUP_MS });
          snd.send(q.sndId, body, { notify: true }).catch(fail);
          issued++;
        }
        setTimeout(tick, 1);
      };
      tick();
    });
    gcObserver.disconnect();
    await waitUntil(() => queues.every((q) => q.ntfFifo.length === 0), 3000);
    if (firstError) throw firstError;
    return {
      nmsg: nmsgLat.sort((x, y) => x - y),
      sent: issued,
      missing: queues.reduce((n, q) => n + q.ntfFifo.length, 0),
      relayCpuPct:
        a?.relayCpu !== undefined && b?.relayCpu !== undefined ? ((b.relayCpu - a.relayCpu) / (b.t - a.t)) * 100 : undefined,
      otherCpuPct: a && b ? otherCpuPct(a, b) : undefined,
      clientLoopDelayP99: loopDelay.percentile(99) / 1e6,
      clientLoopDelayMax: loopDelay.max / 1e6,
      clientGcPauses: gcPauses.length,
      clientGcMaxMs: Math.max(0, ...gcPauses),
    };
  } finally {
    closing = true;
    ntf.close();
    snd.close();
  }
}

// ---- 3. raw ws echo ----

async function echoRun(port: number): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const frame = crypto.randomBytes(RELAY_BLOCK_SIZE);
  let echoes = 0;
  let outstanding = 0;
  let running = true;
  ws.on('message', () => {
    echoes++;
    outstanding--;
    if (running) {
      outstanding++;
      ws.send(frame);
    }
  });
  try {
    for (let i = 0; i < ECHO_WINDOW; i++) {
      outstanding++;
      ws.send(frame);
    }
    await sleep(WARMUP_MS);
    const a = { t: performance.now(), n: echoes };
    await sleep(MEASURE_MS);
    const b = { t: performance.now(), n: echoes };
    running = false;
    await waitUntil(() => outstanding === 0, DRAIN_TIMEOUT_MS);
    return ((b.n - a.n) * 1000) / (b.t - a.t);
  } finally {
    ws.close();
  }
}

// ---- the section ----

export async function runRelayBench(): Promise<SectionResult> {
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-relay-'));
  const figures: Record<string, number> = {};
  const otherCpu: number[] = [];
  const loadAtStart = os.loadavg().map((x) => round(x, 2));
  const relayFlags = process.env.BENCH_RELAY_NODE_FLAGS?.trim() || undefined;
  const t0 = performance.now();
  try {
    const relay = await startRelayProcess(children, dir);
    console.log(
      [
        `relay: separate process (bin/hush.js relay start: journal store without fsync, node:crypto, log level warn, queue quota 1,000,000)`,
        `clients: node:crypto; throughput clients in the benchmark process, latency clients in a child process of their own`,
        `everything on 127.0.0.1; ${os.cpus().length} cores shared by relay and clients`,
        `body: ${BODY_BYTES} bytes; block: ${RELAY_BLOCK_SIZE} bytes; CPU % are of one core (${os.cpus().length * 100}% = all cores)`,
        `load average at start: ${loadAtStart.join(' ')}; "other processes CPU" is what the rest of the machine used meanwhile`,
        ...(relayFlags ? [`relay node flags (BENCH_RELAY_NODE_FLAGS): ${relayFlags}`] : []),
        '',
      ].join('\n'),
    );

    // 1. throughput
    const rows: (string | number)[][] = [];
    for (const nq of QUEUE_COUNTS) {
      const runs: ThroughputRun[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(await throughputRun(relay, nq));
      const rate = median(runs.map((r) => r.msgsPerS));
      const frames = median(runs.map((r) => r.framesPerS));
      const relayCpu = median(runs.map((r) => r.relayCpuPct ?? NaN));
      figures[`send_msg_throughput_q${nq}`] = round(rate);
      figures[`relay_frames_per_s_q${nq}`] = round(frames);
      if (!Number.isNaN(relayCpu)) figures[`relay_cpu_pct_q${nq}`] = round(relayCpu);
      const pct = (x: number | undefined) => (x === undefined ? '?' : `${round(x)}%`);
      rows.push([
        `${nq} queue${nq > 1 ? 's' : ''}`,
        round(rate).toLocaleString('en'),
        runs.map((r) => round(r.msgsPerS).toLocaleString('en')).join(' / '),
        round(frames).toLocaleString('en'),
        Number.isNaN(relayCpu) ? '?' : `${round(relayCpu)}%`,
        `${round(median(runs.map((r) => r.clientCpuPct)))}%`,
        runs.map((r) => pct(r.otherCpuPct)).join(' / '),
      ]);
      otherCpu.push(...runs.map((r) => r.otherCpuPct ?? 0));
    }
    console.log(
      `SEND→MSG throughput: 1 sender + 1 recipient connection, window ${WINDOW_TOTAL} messages in flight (≥ ${WINDOW_MIN_PER_QUEUE}/queue), ` +
        `each MSG opened and ACKed; ${MEASURE_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up, median of ${RUNS} (target ≥ 20,000 msgs/s)`,
    );
    console.log(
      table(['queues', 'msgs/s (median)', 'runs', 'relay frames/s', 'relay CPU', 'client CPU', 'other processes CPU (runs)'], rows) +
        '\n',
    );

    // 2. latency, measured by clients in a child process of their own (see relay-latency-child.ts)
    const out = await runChild(
      children,
      process.execPath,
      ['--import', 'tsx', path.join(BENCH_DIR, 'relay-latency-child.ts'), relay.address, String(relay.pid)],
      60_000,
    );
    const lat = JSON.parse(out.trim().split('\n').at(-1)!) as LatencyRun;
    const ms = (x: number) => round(x, 2);
    figures.nmsg_latency_p50_ms_at_1000 = ms(percentile(lat.nmsg, 50));
    figures.nmsg_latency_p99_ms_at_1000 = ms(percentile(lat.nmsg, 99));
    figures.nmsg_latency_max_ms_at_1000 = ms(lat.nmsg.at(-1) ?? NaN);
    figures.nmsg_missing_at_1000 = lat.missing;
    if (lat.relayCpuPct !== undefined) figures.relay_cpu_pct_at_1000 = round(lat.relayCpuPct);
    console.log(
      `SEND→NMSG latency: SEND with notify paced at ${NTF_RATE}/s over ${NTF_QUEUES} queues for ${NTF_MEASURE_MS / 1000} s ` +
        `(after ${NTF_WARMUP_MS / 1000} s warm-up); 1 sender connection, 1 notifier connection NSUB'd to all, recipients offline (target p99 ≤ 10 ms)`,
    );
    console.log(
      table(
        ['', 'samples', 'p50 ms', 'p99 ms', 'max ms'],
        [
          ['SEND→NMSG', lat.nmsg.length, ms(percentile(lat.nmsg, 50)), ms(percentile(lat.nmsg, 99)), ms(lat.nmsg.at(-1) ?? NaN)],
        ],
      ),
    );
    console.log(
      `sent ${lat.sent}, NMSG missing ${lat.missing}, relay CPU ${lat.relayCpuPct === undefined ? '?' : round(lat.relayCpuPct) + '%'}, ` +
        `other processes CPU ${lat.otherCpuPct === undefined ? '?' : round(lat.otherCpuPct) + '%'}`,
    );
    console.log(
      `latency clients' process meanwhile: event-loop delay p99 ${ms(lat.clientLoopDelayP99)} ms, max ${ms(lat.clientLoopDelayMax)} ms; ` +
        `${lat.clientGcPauses} GC pauses, longest ${ms(lat.clientGcMaxMs)} ms\n`,
    );
    if (lat.otherCpuPct !== undefined) otherCpu.push(lat.otherCpuPct);

    // The relay is done: stop it before the peer runs so they don't share the cores.
    await children.killAll();

    // 3. raw ws echo peer
    const echo = children.spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'ws-echo-server.ts')]);
    const port = Number((await waitForLine(echo, /listening (\d+)/))[1]);
    const echoRuns: number[] = [];
    for (let i = 0; i < RUNS; i++) echoRuns.push(await echoRun(port));
    const echoRate = median(echoRuns);
    figures.ws_echo_blocks_per_s = round(echoRate);
    // Frames through the server per second, both ways, as for the relay.
    figures.ws_echo_frames_per_s = round(2 * echoRate);
    for (const nq of QUEUE_COUNTS)
      figures[`relay_vs_ws_frame_rate_q${nq}`] = round(figures[`relay_frames_per_s_q${nq}`]! / (2 * echoRate), 3);
    console.log(
      `Peer: plain ws echo server (child process), ${RELAY_BLOCK_SIZE}-byte binary frames, ${ECHO_WINDOW} in flight, median of ${RUNS}`,
    );
    console.log(
      table(
        ['', 'per second', 'vs ws frames (both ways)'],
        [
          ['ws echoes (blocks round-tripped)', round(echoRate).toLocaleString('en'), ''],
          ['ws frames (both ways)', round(2 * echoRate).toLocaleString('en'), '1'],
          ...QUEUE_COUNTS.map((nq) => [
            `relay frames, ${nq} queue${nq > 1 ? 's' : ''} (both ways)`,
            figures[`relay_frames_per_s_q${nq}`]!.toLocaleString('en'),
            String(figures[`relay_vs_ws_frame_rate_q${nq}`]),
          ]),
        ],
      ),
    );
    const busiest = Math.max(0, ...otherCpu);
    if (busiest > 25)
      console.log(
        `\nWARNING: other processes used up to ${round(busiest)}% CPU during the measurements: the figures are lower than this machine gives alone`,
      );
    console.log(`\nrelay section: ${round((performance.now() - t0) / 1000, 1)} s`);
  } finally {
    await children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return {
    figures,
    notes: {
      relay: 'separate process: bin/hush.js relay start (journal store, fsync off, node:crypto, HUSH_LOG_LEVEL=warn)',
      clients: 'node:crypto, one connection per role; throughput clients in the benchmark process, latency clients in a child process',
      bodyBytes: BODY_BYTES,
      blockBytes: RELAY_BLOCK_SIZE,
      throughput: `median of ${RUNS} runs of ${MEASURE_MS} ms after ${WARMUP_MS} ms warm-up; window ${WINDOW_TOTAL} in flight`,
      latency: `${NTF_RATE} SEND/s with notify over ${NTF_QUEUES} queues for ${NTF_MEASURE_MS} ms after ${NTF_WARMUP_MS} ms warm-up; recipients offline; latency = NMSG arrival - SEND call, matched in order per queue`,
      frames: 'WebSocket frames (= blocks) per second through the server, both directions',
      cpu: 'CPU % of one core',
      ...(relayFlags ? { relayNodeFlags: relayFlags } : {}),
      loadAverageAtStart: loadAtStart,
      otherProcessesCpuPctMax: otherCpu.length > 0 ? round(Math.max(...otherCpu)) : null,
    },
  };
}

export async function run(): Promise<void> {
  const r = await runRelayBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('relay', r))}`);
}
