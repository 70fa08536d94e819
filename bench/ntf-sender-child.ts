// SEND driver of the notification-server benchmark, in a process of its own
// (so it does not share an event loop with the APNs test server). Talks to the
// benchmark over IPC:
//   parent → child  { t: 'init', addresses, sndIds (hex), relayOf?, perToken }   (queue i is at addresses[relayOf[i] ?? 0])
//                   { t: 'run', mode: 'paced', rate, warmupMs, measureMs, drainMs }
//                   { t: 'run', mode: 'window', window, warmupMs, measureMs, drainMs }
//                   { t: 'pushed', items: [queueIndex, timeMs, ...] }   (a push carried a new NMSG of that queue)
//   child → parent  { t: 'ready' }, { t: 'result', ... }
// Queues are grouped by token (perToken consecutive queues each). A token has at
// most one SEND whose push has not arrived yet, so no push is the coalescing of
// two SENDs and every SEND is matched to the push that carried it. Times are
// CLOCK_MONOTONIC (process.hrtime), the same clock in every process of the
// machine: latency = the push's arrival at the APNs test server (parent) −
// the SEND call here.
//   node --import tsx bench/ntf-sender-child.ts
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { nodeCrypto } from '../src/node/crypto.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { RelayClient } from '../src/relay/client.ts';

const hrMs = () => Number(process.hrtime.bigint()) / 1e6;
const BODY = nodeCrypto.randomBytes(64);

export type SenderInit = { t: 'init'; addresses: string[]; sndIds: string[]; relayOf?: number[]; perToken: number };
type Run = {
  t: 'run';
  mode: 'paced' | 'window';
  rate?: number;
  window?: number;
  warmupMs: number;
  measureMs: number;
  drainMs: number;
};
type Msg = SenderInit | Run | { t: 'pushed'; items: number[] } | { t: 'exit' };

export interface SenderResult {
  t: 'result';
  mode: 'paced' | 'window';
  /** SEND → push latencies (ms) of the SENDs made in the measurement window, sorted. */
  latencies: number[];
  /** SENDs made (whole run) and in the measurement window. */
  sent: number;
  sentInWindow: number;
  /** Paced sends that found every token still waiting for its push (not sent). */
  skipped: number;
  /** Pushes matched to SENDs: whole run, and those arriving within the window. */
  completed: number;
  completedInWindow: number;
  windowMs: number;
  /** SENDs whose push had not arrived when the drain time ran out. */
  missing: number;
  /** Pushes reported for a queue that had no SEND waiting. */
  unexpected: number;
  errors: number;
  firstError?: string;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

let clients: RelayClient[] = [];
let sndIds: Uint8Array[] = [];
let relayOf: number[] = [];
let perToken = 1;
let tokens = 0;
let outstandingQ = new Int32Array(0);
let sentAt = new Float64Array(0);
let measured = new Uint8Array(0);
let sendsOf = new Uint32Array(0);
let cursor = 0;
let outstanding = 0;
let run: (Run & { start: number }) | undefined;
let running = false;
/** BENCH_NTF_DUMP_DIR: every measured SEND's (send time, latency) is written there, for diagnosis. */
const dumpDir = process.env.BENCH_NTF_DUMP_DIR;
let series: number[] = [];
let stats = { latencies: [] as number[], sent: 0, sentInWindow: 0, skipped: 0, completed: 0, completedInWindow: 0, unexpected: 0, errors: 0 };
let firstError: string | undefined;

const send = (m: unknown) => process.send!(m);

function fail(e: unknown): void {
  stats.errors++;
  firstError ??= e instanceof Error ? e.message : String(e);
}

function inWindow(t: number): boolean {
  if (!run) return false;
  const el = t - run.start;
  return el >= run.warmupMs && el < run.warmupMs + run.measureMs;
}

/** One SEND with notify to the next token with nothing in flight; false if every token is busy. */
function sendOne(): boolean {
  for (let n = 0; n < tokens; n++) {
    const tk = cursor;
    cursor = cursor + 1 === tokens ? 0 : cursor + 1;
    if (outstandingQ[tk]! >= 0) continue;
    const q = tk * perToken + (sendsOf[tk]!++ % perToken);
    const t = hrMs();
    outstandingQ[tk] = q;
    sentAt[tk] = t;
    const m = inWindow(t);
    measured[tk] = m ? 1 : 0;
    outstanding++;
    stats.sent++;
    if (m) stats.sentInWindow++;
    clients[relayOf[q] ?? 0]!.send(sndIds[q]!, BODY, { notify: true }).catch(fail);
    return true;
  }
  return false;
}

function topUp(): void {
  while (running && run?.mode === 'window' && outstanding < run.window! && sendOne()) {}
}

function pushed(items: number[]): void {
  for (let i = 0; i < items.length; i += 2) {
    const q = items[i]!;
    const t = items[i + 1]!;
    const tk = Math.floor(q / perToken);
    if (outstandingQ[tk] !== q) {
      stats.unexpected++;
      continue;
    }
    outstandingQ[tk] = -1;
    outstanding--;
    stats.completed++;
    if (inWindow(t)) stats.completedInWindow++;
    if (measured[tk]) {
      stats.latencies.push(t - sentAt[tk]!);
      if (dumpDir) series.push(sentAt[tk]!, t - sentAt[tk]!, q);
    }
  }
  topUp();
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function doRun(r: Run): Promise<void> {
  stats = { latencies: [], sent: 0, sentInWindow: 0, skipped: 0, completed: 0, completedInWindow: 0, unexpected: 0, errors: 0 };
  firstError = undefined;
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const start = hrMs();
  run = { ...r, start };
  running = true;
  const total = r.warmupMs + r.measureMs;
  if (r.mode === 'window') {
    topUp();
    loop.enable();
    await sleep(total);
  } else {
    let issued = 0;
    loop.enable();
    await new Promise<void>((resolve) => {
      // Paced by a 1 ms timer: each tick sends what is due by then, so the rate holds on average.
      const tick = () => {
        const elapsed = hrMs() - start;
        if (elapsed >= total) return resolve();
        const due = Math.floor((elapsed * r.rate!) / 1000);
        while (issued < due) {
          issued++;
          if (!sendOne()) stats.skipped++;
        }
        setTimeout(tick, 1);
      };
      tick();
    });
  }
  loop.disable();
  running = false;
  const deadline = hrMs() + r.drainMs;
  while (outstanding > 0 && hrMs() < deadline) await sleep(10);
  if (dumpDir) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${dumpDir}/${r.mode}-${r.rate ?? r.window}.json`, JSON.stringify(series));
    series = [];
  }
  const result: SenderResult = {
    t: 'result',
    mode: r.mode,
    latencies: stats.latencies.sort((a, b) => a - b),
    sent: stats.sent,
    sentInWindow: stats.sentInWindow,
    skipped: stats.skipped,
    completed: stats.completed,
    completedInWindow: stats.completedInWindow,
    windowMs: r.measureMs,
    missing: outstanding,
    unexpected: stats.unexpected,
    errors: stats.errors,
    ...(firstError ? { firstError } : {}),
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    loopDelayMaxMs: loop.max / 1e6,
  };
  // Whatever is still out is given up: the next run starts clean.
  outstandingQ.fill(-1);
  outstanding = 0;
  send(result);
}

process.on('message', (m: Msg) => {
  switch (m.t) {
    case 'init':
      sndIds = m.sndIds.map((h) => new Uint8Array(Buffer.from(h, 'hex')));
      perToken = m.perToken;
      tokens = Math.floor(sndIds.length / perToken);
      outstandingQ = new Int32Array(tokens).fill(-1);
      sentAt = new Float64Array(tokens);
      measured = new Uint8Array(tokens);
      sendsOf = new Uint32Array(tokens);
      relayOf = m.relayOf ?? [];
      Promise.all(m.addresses.map((a) => RelayClient.connect(a, { webSocket: nodeWebSocket(), crypto: nodeCrypto, timeoutMs: 30_000 }))).then(
        (cs) => {
          clients = cs;
          send({ t: 'ready' });
        },
        (e) => {
          console.error(`sender: cannot connect: ${e instanceof Error ? e.message : String(e)}`);
          process.exit(1);
        },
      );
      return;
    case 'run':
      doRun(m).catch((e) => {
        console.error(`sender: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        process.exit(1);
      });
      return;
    case 'pushed':
      pushed(m.items);
      return;
    case 'exit':
      for (const c of clients) c.close();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
