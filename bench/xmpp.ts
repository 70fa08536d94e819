// XMPP benchmark: a message sent to an offline phone → its push accepted at
// the APNs test server, through Debian's Prosody (mod_cloud_notify) and the
// XEP-0357 app server; and the app server's own share of that time.
//   Prosody      its own process, the generated config of src/xmpp/testkit/prosody.ts
//   app server   `hush xmpp start` as shipped, its own process: its config's defaults (journal
//                store without fsync; per-node budget burst 10, 60/min), the APNs test server as
//                its provider; /metrics on its ops port
//   APNs test server, senders   THIS process
//   phones       PHONES accounts, each registering its own APNs token with the app
//                server (register-push-apns), enabling push with the node and secret
//                it got, and going offline
// SENDERS online accounts send RATE messages/s (one every 1000/RATE ms, each sender in
// turn) round robin over the phones: each phone gets one every PHONES/RATE s, well within
// the app server's budget per node (1/s after a burst of 10). Each message waits offline
// at Prosody, which publishes to the phone's node; the app server pushes.
//
// Latency = the push for the phone's token accepted at the APNs test server (its 'push'
// event) − the message handed to the sender's socket, both on this process's clock. A
// push carries nothing to match by (content-free), so a phone's pushes are matched to its
// messages first in first out: exact while pushes come far sooner than the 2 s between a
// phone's messages, and none is lost. A message without a push LOST_AFTER_MS after the
// last send is lost.
//
// The app server's share: hush_xmpp_publish_seconds (a publish IQ handed to the app
// server's handler → its reply, i.e. the checks and the APNs request and answer) and
// hush_xmpp_push_seconds (the APNs request alone) from its /metrics before and after the
// window: means exact, p50/p99 estimated inside the histogram buckets (as Prometheus's
// histogram_quantile does). Its publish time ends when APNs's answer is back, a little
// after the test server accepted the push, so its share is, if anything, overstated.
//
// WARMUP_S of load, then MEASURE_S measured; about 40 s with setup.
// BENCH_XMPP_SECONDS=N shortens the measured window (while developing);
// BENCH_XMPP_CPU_PROF=DIR writes a CPU profile of the app server into DIR.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { xml, type Client } from '@xmpp/client';
import { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { connectClient, enablePush, registerPush } from '../src/xmpp/testkit/phone.ts';
import { prosodyMissing, startProsody, type Prosody } from '../src/xmpp/testkit/prosody.ts';
import {
  Children,
  HUSH,
  machineBusyMs,
  metric,
  metricsText,
  percentile,
  processCpuMs,
  ROOT,
  round,
  selfCpuMs,
  sleep,
  table,
  TEST_CA_FILE,
  waitForLine,
  writeResults,
} from './lib.ts';

const TOPIC = 'chat.hush.bench.xmpp';
const PHONES = 200;
const SENDERS = 4;
const RATE = 100;
const WARMUP_S = 5;
const MEASURE_S = Number(process.env.BENCH_XMPP_SECONDS ?? 20);
const LOST_AFTER_MS = 10_000;
/** Phones registering at once. */
const SETUP_CONCURRENCY = 8;
const PASSWORD = 'bench-pw';

const ms = (x: number) => round(x, 2);

/** One /metrics reading of the app server: what the window's figures are differences of. */
interface Reading {
  text: string;
  appCpuMs: number | undefined;
  prosodyCpuMs: number | undefined;
  selfCpuMs: number;
  machineMs: number | undefined;
  t: number;
}

/** Cumulative bucket counts (upper bound → count, +Inf left out) of histogram `name` with labels `inner` (e.g. 'provider="apns"' or ''). */
function buckets(text: string, name: string, inner: string): Map<number, number> {
  const prefix = `${name}_bucket{le="`;
  const rest = `"${inner ? `,${inner}` : ''}} `;
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const end = line.indexOf(rest, prefix.length);
    const le = line.slice(prefix.length, end);
    if (end > 0 && le !== '+Inf') out.set(Number(le), Number(line.slice(end + rest.length)));
  }
  return out;
}

/** Histogram `name` (labels `inner`) between two /metrics texts: count, sum, cumulative bucket counts. */
function histogramDelta(a: string, b: string, name: string, inner: string) {
  const labels = inner ? `{${inner}}` : '';
  const d = (sample: string) => metric(b, sample) - metric(a, sample);
  const before = buckets(a, name, inner);
  return {
    count: d(`${name}_count${labels}`),
    sum: d(`${name}_sum${labels}`),
    buckets: [...buckets(b, name, inner)].map(([le, n]) => ({ le, n: n - (before.get(le) ?? 0) })),
  };
}

/** The q-quantile (0..1) estimated by linear interpolation inside the bucket it falls in; the top bound if beyond it. */
function bucketQuantile(h: ReturnType<typeof histogramDelta>, q: number): number {
  if (h.count === 0) return NaN;
  const rank = q * h.count;
  let lower = 0;
  let below = 0;
  for (const { le, n } of h.buckets) {
    if (n >= rank) return lower + ((le - lower) * (rank - below)) / (n - below);
    lower = le;
    below = n;
  }
  return lower;
}

/** `hush xmpp start` with its defaults, a component of Prosody pushing to `apns`; resolves once it is online. */
async function startAppServer(children: Children, p: Prosody, apns: ApnsTestServer, dir: string, logs: { shown: boolean }) {
  const team = apns.keys.create();
  const keyFile = path.join(dir, 'apns.p8');
  fs.writeFileSync(keyFile, team.privateKey);
  const apnsConfig = { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile, topic: TOPIC, caFile: TEST_CA_FILE };
  fs.writeFileSync(path.join(dir, 'xmpp.json'), JSON.stringify({ servers: [p.component], apns: apnsConfig }));
  const prof = process.env.BENCH_XMPP_CPU_PROF;
  const app = children.spawn(process.execPath, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(prof)] : []), HUSH, 'xmpp', 'start', '--dir', dir], {
    env: { ...process.env, HUSH_LOG_LEVEL: 'warn', HUSH_XMPP_METRICS_PORT: '0' },
  });
  app.stderr?.on('data', (d: Buffer) => logs.shown && process.stderr.write(`[app server] ${d}`));
  const metricsPort = Number((await waitForLine(app, /metrics port: (\d+)/, 30_000))[1]);
  app.stdout?.on('data', (d: Buffer) => logs.shown && process.stdout.write(`[app server] ${d}`));
  return { pid: app.pid!, metricsPort };
}

/** Each phone registers its token, enables push and goes offline, SETUP_CONCURRENCY at a time; resolves with the seconds it took. */
async function setUpPhones(p: Prosody, phones: string[], tokens: string[]): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: SETUP_CONCURRENCY }, async () => {
      for (let i = next++; i < phones.length; i = next++) {
        const c = await connectClient(p, phones[i]!, PASSWORD);
        const reg = await registerPush(c, p.component.domain, 'apns', { token: tokens[i]!, 'device-id': `bench-${i}` });
        await enablePush(c, p.component.domain, reg);
        await c.stop();
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/** The messages and their pushes: message k goes to phone k mod PHONES from sender k mod SENDERS. */
class Traffic {
  readonly sentAt: Float64Array;
  /** NaN until its push comes. */
  readonly pushedAt: Float64Array;
  /** Per phone, its messages not yet pushed, oldest first. */
  private readonly waiting: number[][];
  private readonly phoneOf: Map<string, number>;
  unmatched = 0;
  sendErrors = 0;
  firstSendError = '';

  constructor(
    total: number,
    private readonly phones: string[],
    tokens: string[],
    private readonly domain: string,
    private readonly senders: Client[],
  ) {
    this.sentAt = new Float64Array(total).fill(NaN);
    this.pushedAt = new Float64Array(total).fill(NaN);
    this.waiting = phones.map(() => []);
    this.phoneOf = new Map(tokens.map((t, i) => [t, i]));
  }

  /** A push accepted at the APNs test server, for this token. */
  pushed(token: string): void {
    const t = performance.now();
    const i = this.phoneOf.get(token);
    const k = i === undefined ? undefined : this.waiting[i]!.shift();
    if (k === undefined) this.unmatched++;
    else this.pushedAt[k] = t;
  }

  /** Sends messages [from, to) at RATE/s from now. */
  async load(from: number, to: number): Promise<void> {
    const start = performance.now();
    const due = (k: number) => start + ((k - from) * 1000) / RATE;
    for (let k = from; k < to; ) {
      const wait = due(k) - performance.now();
      if (wait > 0) await sleep(wait);
      for (; k < to && due(k) <= performance.now(); k++) this.send(k);
    }
  }

  private send(k: number): void {
    const phone = k % this.phones.length;
    const msg = xml('message', { to: `${this.phones[phone]}@${this.domain}`, type: 'chat', id: `m${k}` }, xml('body', {}, `bench message ${k}`));
    this.waiting[phone]!.push(k);
    this.sentAt[k] = performance.now();
    this.senders[k % this.senders.length]!.send(msg).catch((e: unknown) => {
      this.sendErrors++;
      this.firstSendError ||= String(e);
    });
  }

  /** Messages [from, to) not pushed (yet). */
  open(from: number, to: number): number {
    let n = 0;
    for (let k = from; k < to; k++) if (Number.isNaN(this.pushedAt[k]!)) n++;
    return n;
  }

  /** Resolves once messages [from, to) were all pushed, or LOST_AFTER_MS after the last of them was sent. */
  async settled(from: number, to: number): Promise<void> {
    const deadline = this.sentAt[to - 1]! + LOST_AFTER_MS;
    while (this.open(from, to) > 0 && performance.now() < deadline) await sleep(50);
  }

  /** Sent → pushed of messages [from, to) that were pushed, ms, sorted. */
  latencies(from: number, to: number): number[] {
    const out: number[] = [];
    for (let k = from; k < to; k++) if (!Number.isNaN(this.pushedAt[k]!)) out.push(this.pushedAt[k]! - this.sentAt[k]!);
    return out.sort((x, y) => x - y);
  }
}

const PUBLISH_RESULTS = ['delivered', 'rate', 'retry', 'failed', 'invalid', 'unknown_node', 'not_authorized'];

/** The app server's figures between two readings: publish time (p50/p99 from buckets, mean), the APNs request's mean, publishes by result. */
function appServerFigures(a: Reading, b: Reading) {
  const pub = histogramDelta(a.text, b.text, 'hush_xmpp_publish_seconds', '');
  const apns = histogramDelta(a.text, b.text, 'hush_xmpp_push_seconds', 'provider="apns"');
  const counter = (r: string) => metric(b.text, `hush_xmpp_publishes_total{result="${r}"}`) - metric(a.text, `hush_xmpp_publishes_total{result="${r}"}`);
  return {
    publish: { p50: bucketQuantile(pub, 0.5) * 1000, p99: bucketQuantile(pub, 0.99) * 1000, mean: (pub.sum / pub.count) * 1000 },
    apnsMean: (apns.sum / apns.count) * 1000,
    publishes: Object.fromEntries(PUBLISH_RESULTS.map((r) => [r, counter(r)]).filter(([, n]) => n !== 0)) as Record<string, number>,
    cpuUsPerPublish: a.appCpuMs === undefined || b.appCpuMs === undefined ? NaN : ((b.appCpuMs - a.appCpuMs) * 1000) / pub.count,
  };
}

/** CPU between two readings, % of one core. */
function cpuOver(a: Reading, b: Reading) {
  const pct = (x: number | undefined, y: number | undefined) => (x === undefined || y === undefined ? NaN : round((100 * (y - x)) / (b.t - a.t)));
  return {
    appServerPct: pct(a.appCpuMs, b.appCpuMs),
    prosodyPct: pct(a.prosodyCpuMs, b.prosodyCpuMs),
    benchPct: pct(a.selfCpuMs, b.selfCpuMs),
    machinePct: pct(a.machineMs, b.machineMs),
  };
}

interface Measured {
  sent: number;
  pushed: number;
  lost: number;
  warmLost: number;
  rate: number;
  e2e: { p50: number; p99: number; mean: number };
  srv: ReturnType<typeof appServerFigures>;
  cpu: ReturnType<typeof cpuOver>;
  setupS: number;
  unmatched: number;
  sendErrors: number;
}

/** The table, and bench/results/xmpp.json. */
function report(m: Measured): void {
  console.log(
    `XMPP: message sent → push accepted at the APNs test server, ${RATE} messages/s over ${PHONES} offline phones ` +
      `(each one every ${PHONES / RATE} s) through Prosody (mod_cloud_notify) and the app server, ${MEASURE_S} s after ${WARMUP_S} s warm-up`,
  );
  console.log(
    table(
      ['', 'p50 ms', 'p99 ms', 'mean ms'],
      [
        ['message sent → push accepted (end to end)', ms(m.e2e.p50), ms(m.e2e.p99), ms(m.e2e.mean)],
        ['app server: publish in → reply (p50/p99 from buckets)', ms(m.srv.publish.p50), ms(m.srv.publish.p99), ms(m.srv.publish.mean)],
        ['  of which the APNs request', '', '', ms(m.srv.apnsMean)],
        ['the rest: senders, Prosody, the XMPP links', '', '', ms(m.e2e.mean - m.srv.publish.mean)],
        ['app server ÷ end to end', round(m.srv.publish.p50 / m.e2e.p50, 3), round(m.srv.publish.p99 / m.e2e.p99, 3), round(m.srv.publish.mean / m.e2e.mean, 3)],
      ],
    ),
  );
  console.log(
    `${m.sent} sent (${round(m.rate)}/s), ${m.pushed} pushed, ${m.lost} lost (no push within ${LOST_AFTER_MS / 1000} s; ${m.warmLost} in the warm-up), ` +
      `${m.unmatched} pushes matching no message, ${m.sendErrors} send errors; app server publishes: ` +
      Object.entries(m.srv.publishes)
        .map(([r, n]) => `${r} ${n}`)
        .join(', '),
  );
  console.log(
    `CPU over the window, % of one core: app server ${m.cpu.appServerPct} (${round(m.srv.cpuUsPerPublish)} µs per publish), Prosody ${m.cpu.prosodyPct}, ` +
      `this process (senders, APNs test server) ${m.cpu.benchPct}, whole machine ${m.cpu.machinePct} of 200; setup of ${PHONES} phones ${round(m.setupS, 1)} s`,
  );
  const num = (x: number, digits = 2) => (Number.isFinite(x) ? round(x, digits) : null);
  const file = writeResults('xmpp', {
    figures: {
      xmpp_e2e_p50_ms: num(m.e2e.p50),
      xmpp_e2e_p99_ms: num(m.e2e.p99),
      xmpp_e2e_mean_ms: num(m.e2e.mean),
      xmpp_sent: m.sent,
      xmpp_lost: m.lost,
      xmpp_rate_per_s: num(m.rate, 1),
      xmpp_app_publish_p50_ms: num(m.srv.publish.p50),
      xmpp_app_publish_p99_ms: num(m.srv.publish.p99),
      xmpp_app_publish_mean_ms: num(m.srv.publish.mean),
      xmpp_app_apns_mean_ms: num(m.srv.apnsMean),
      xmpp_app_share_p50: num(m.srv.publish.p50 / m.e2e.p50, 3),
      xmpp_app_share_mean: num(m.srv.publish.mean / m.e2e.mean, 3),
      xmpp_app_cpu_pct: num(m.cpu.appServerPct, 0),
      xmpp_app_cpu_us_per_publish: num(m.srv.cpuUsPerPublish, 0),
    },
    notes: {
      setup:
        `Debian's Prosody (mod_cloud_notify, offline storage; src/xmpp/testkit/prosody.ts) in its own process; the app server in its own process ` +
        `(hush xmpp start, xmpp.json with its servers and apns only: journal store without fsync, per-node budget burst 10 and 60/min, registrations per server 1,000 then 100/min); ` +
        `the APNs test server (record off) and ${SENDERS} sender clients in the bench process; all on 127.0.0.1`,
      load: `${PHONES} phones, each registered (register-push-apns) with its own token, push enabled, then offline; ${RATE} messages/s round robin over them (one per phone every ${PHONES / RATE} s), ${SENDERS} senders in turn; ${WARMUP_S} s warm-up, ${MEASURE_S} s measured`,
      latency: 'push accepted at the APNs test server (its push event) − message handed to the sender socket, on one clock; pushes matched to a phone’s messages first in first out (a push is content-free)',
      appServer:
        'hush_xmpp_publish_seconds (publish handed to the handler → reply: checks, APNs request and answer) and hush_xmpp_push_seconds{provider="apns"} over the window, from /metrics before and after; ' +
        'means exact; publish p50/p99 interpolated inside its buckets (0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 25 ms …)',
      lostAfterS: LOST_AFTER_MS / 1000,
      warmupLost: m.warmLost,
      unmatchedPushes: m.unmatched,
      sendErrors: m.sendErrors,
      publishes: m.srv.publishes,
      cpuPctOfOneCore: m.cpu,
      setupS: round(m.setupS, 1),
    },
  });
  console.log(`wrote ${path.relative(ROOT, file)}`);
}

export async function run(): Promise<void> {
  if (prosodyMissing) throw new Error(prosodyMissing);
  const t0 = performance.now();
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-xmpp-'));
  const senders: Client[] = [];
  let prosody: Prosody | undefined;
  const apns = await ApnsTestServer.start({ topics: [TOPIC], record: false });
  /** The app server's log is shown until it is stopped (going offline then is no news). */
  const logs = { shown: true };
  try {
    prosody = await startProsody();
    const p = prosody;
    const phones = Array.from({ length: PHONES }, (_, i) => `phone${i}`);
    const senderNames = Array.from({ length: SENDERS }, (_, i) => `sender${i}`);
    for (const user of [...phones, ...senderNames]) await p.register(user, PASSWORD);
    const app = await startAppServer(children, p, apns, dir, logs);
    const tokens = phones.map(() => randomBytes(32).toString('hex'));
    const setupS = await setUpPhones(p, phones, tokens);
    for (const s of senderNames) senders.push(await connectClient(p, s, PASSWORD, 'bench'));

    const warm = WARMUP_S * RATE;
    const total = (WARMUP_S + MEASURE_S) * RATE;
    const traffic = new Traffic(total, phones, tokens, p.domain, senders);
    apns.on('push', (push: { token: string }) => traffic.pushed(push.token));
    const reading = async (): Promise<Reading> => ({
      text: await metricsText(app.metricsPort),
      appCpuMs: processCpuMs(app.pid),
      prosodyCpuMs: processCpuMs(p.pid),
      selfCpuMs: selfCpuMs(),
      machineMs: machineBusyMs(),
      t: performance.now(),
    });
    await traffic.load(0, warm);
    await traffic.settled(0, warm);
    const a = await reading();
    await traffic.load(warm, total);
    const b = await reading(); // CPU over the sending
    await traffic.settled(warm, total);
    const after = await reading(); // every push of the window's messages in the histograms

    const sent = total - warm;
    const lat = traffic.latencies(warm, total);
    const lost = sent - lat.length;
    const warmLost = traffic.open(0, warm);
    const rate = (sent - 1) / ((traffic.sentAt[total - 1]! - traffic.sentAt[warm]!) / 1000);
    const e2e = { p50: percentile(lat, 50), p99: percentile(lat, 99), mean: lat.reduce((s, x) => s + x, 0) / lat.length };
    const srv = appServerFigures(a, after);
    const cpu = cpuOver(a, b);

    report({ sent, pushed: lat.length, lost, warmLost, rate, e2e, srv, cpu, setupS, unmatched: traffic.unmatched, sendErrors: traffic.sendErrors });
    console.log(`xmpp section: ${round((performance.now() - t0) / 1000, 1)} s`);
    // the figures are written all the same: those messages count as lost
    if (traffic.sendErrors > 0) throw new Error(`${traffic.sendErrors} sends failed: ${traffic.firstSendError}`);
  } finally {
    logs.shown = false;
    for (const c of senders) await c.stop().catch(() => {});
    await children.killAll();
    await prosody?.stop();
    await apns.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
