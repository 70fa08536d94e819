// Abuse benchmark: can anonymous clients exhaust a relay, or slow down the
// clients it serves? A relay process as shipped (bin/hush.js relay start, its
// defaults) on 127.0.0.1, and two phases of PHASE_MS each:
//   baseline  a legitimate client alone: one connection from 127.0.0.1, QUEUES
//             queues it subscribed to, sending to itself at RATE SENDs/s spread
//             over them; SEND→MSG latency (the SEND call → its MSG, each MSG
//             ACKed), and the relay's RSS (VmRSS, sampled every RSS_EVERY_MS, max)
//   attack    the same load, while an attacker process (bench/abuse-attack-child.ts)
//             holds 5,000 idle connections (half mid-handshake; opened first, the
//             phase starts once each was accepted or refused), runs a GET-
//             amplification client that does not read its socket, and floods NEW
// Targets: RSS under attack ≤ 2× baseline, legitimate p99 ≤ 3× baseline, and the
// amplification client's bytes buffered by the relay bounded (the relay's
// /metrics, where it has such a metric). The figures are reported met or not.
// Bounded: two phases of 15 s plus a drain each, the ramp ≤ 30 s; about a minute in all.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CommandError } from '../src/core/command-client.ts';
import { nodeCrypto as crypto } from '../src/node/crypto.ts';
import { openMessage, type RelayClient } from '../src/relay/client.ts';
import { DEFAULT_CONNECTION_LIMITS } from '../src/server/connection-limits.ts';
import type { AttackReport, AttackSettings } from './abuse-attack-child.ts';
import { ServerProcess } from './faults.ts';
import {
  BENCH_DIR,
  Children,
  HUSH,
  machineBusyMs,
  metric,
  metricsText,
  nextMessage,
  percentile,
  processCpuMs,
  ROOT,
  round,
  runChild,
  selfCpuMs,
  sleep,
  table,
  writeResults,
  waitForQuiet,
  type SectionResult,
} from './lib.ts';
import { connect, newQueue, type BenchQueue } from './relay.ts';

const PHASE_MS = 15_000;
const WARMUP_MS = 2_000;
const RATE = 200;
const QUEUES = 10;
const BODY_BYTES = 256;
const DRAIN_MS = 5_000;
const RSS_EVERY_MS = 100;
const METRICS_EVERY_MS = 250;
const RSS_TARGET = 2;
const P99_TARGET = 3;
/** Gauges of the relay's /metrics whose maximum over a phase is reported. */
const CONNECTIONS = 'hush_relay_connections';
/** Bytes buffered for the session with the most: the amplification client's, under attack. */
const BUFFERED = 'hush_relay_buffered_bytes_max';
/** The relay stops reading a session at maxBufferedBytes and closes it (4008) at twice that. */
const BUFFERED_BOUND = 2 * DEFAULT_CONNECTION_LIMITS.maxBufferedBytes;

type Tally = Record<string, number>;
const tally = (t: Tally) =>
  Object.entries(t)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none';
const sum = (t: Tally) => Object.values(t).reduce((a, b) => a + b, 0);
const ms = (x: number) => round(x, 2);

/** One metric's samples in /metrics text, by their label values: { address: 12 } for {reason="address"} 12. */
function samplesOf(text: string, name: string): Tally {
  const out: Tally = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m?.[1] === name) out[(m[2] ?? '').replace(/\w+="([^"]*)"/g, '$1')] = Number(m[3]);
  }
  return out;
}

// ---- the legitimate client ----

interface LoadResult {
  /** SEND→MSG latencies (ms) of the SENDs made in the run, sorted. */
  latencies: number[];
  sent: number;
  /** SENDs whose MSG had not come DRAIN_MS after the last SEND. */
  lost: number;
  errors: Tally;
}

class Legit {
  private readonly sentAt: number[] = [];
  private readonly latency: number[] = [];
  private readonly byRcvId = new Map<string, BenchQueue>();
  private queues: BenchQueue[] = [];
  private errors: Tally = {};
  private client!: RelayClient;

  private fail = (e: unknown) => {
    const k = e instanceof CommandError ? e.error : e instanceof Error ? e.message : String(e);
    this.errors[k] = (this.errors[k] ?? 0) + 1;
  };

  static async open(address: string): Promise<Legit> {
    const l = new Legit();
    l.client = await connect(address, { in: 0, out: 0 }, (e) => {
      if (e.type !== 'MSG') return;
      const t = performance.now();
      const q = l.byRcvId.get(Buffer.from(e.entityId).toString('hex'));
      const m = q && openMessage(crypto, q.rcvDhSecret, e);
      if (!q || !m) return l.fail(new Error('MSG did not open'));
      const seq = Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength).readUInt32BE(0);
      l.latency[seq] ??= t - l.sentAt[seq]!;
      l.client.ack(q.rcvId, q.rcvAuth.privateKey, e.msgId).catch(l.fail);
    });
    for (let i = 0; i < QUEUES; i++) {
      const q = await newQueue(l.client, false);
      l.queues.push(q);
      l.byRcvId.set(Buffer.from(q.rcvId).toString('hex'), q);
    }
    await Promise.all(l.queues.map((q) => l.client.subscribe(q.rcvId, q.rcvAuth.privateKey)));
    return l;
  }

  /** RATE SENDs/s for `ms`, paced by a 1 ms timer; then waits up to DRAIN_MS for their MSGs. */
  async run(ms: number): Promise<LoadResult> {
    this.errors = {};
    const first = this.sentAt.length;
    const start = performance.now();
    await new Promise<void>((resolve) => {
      const tick = () => {
        const elapsed = performance.now() - start;
        const due = first + Math.floor((Math.min(elapsed, ms) * RATE) / 1000);
        while (this.sentAt.length < due) {
          const seq = this.sentAt.length;
          const body = Buffer.alloc(BODY_BYTES);
          body.writeUInt32BE(seq, 0);
          this.sentAt.push(performance.now());
          this.client.send(this.queues[seq % QUEUES]!.sndId, body).catch(this.fail);
        }
        if (elapsed >= ms) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    const last = this.sentAt.length;
    const arrived = () => {
      let n = 0;
      for (let s = first; s < last; s++) if (this.latency[s] !== undefined) n++;
      return n;
    };
    const deadline = performance.now() + DRAIN_MS;
    while (arrived() < last - first && performance.now() < deadline) await sleep(10);
    const latencies = this.latency.slice(first, last).filter((x) => x !== undefined);
    return { latencies: latencies.sort((a, b) => a - b), sent: last - first, lost: last - first - latencies.length, errors: this.errors };
  }

  close(): void {
    this.client.close();
  }
}

// ---- what the relay uses meanwhile ----

const vmRssMB = (pid: number): number | undefined => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
};

/** CPU time (ms) used so far by the relay, the attacker, this process and the whole machine. */
function cpuNow(relayPid: number, attackerPid: number) {
  return { t: performance.now(), relay: processCpuMs(relayPid), attacker: processCpuMs(attackerPid), self: selfCpuMs(), machine: machineBusyMs() };
}

/** CPU % of one core over a phase: the relay, the attacker, this process, and every other process of the machine. */
function cpuPct(a: ReturnType<typeof cpuNow>, b: ReturnType<typeof cpuNow>) {
  const pct = (x: number | undefined, y: number | undefined) => (x === undefined || y === undefined ? null : round((100 * (y - x)) / (b.t - a.t)));
  const relay = pct(a.relay, b.relay);
  const attacker = pct(a.attacker, b.attacker);
  const self = pct(a.self, b.self)!;
  const machine = pct(a.machine, b.machine);
  const other = machine === null || relay === null || attacker === null ? null : Math.max(0, machine - relay - attacker - self);
  return { relay, attacker, self, other };
}

/** The relay's RSS and chosen /metrics samples, each at its maximum over a phase. */
class Sampler {
  rssMaxMB = 0;
  readonly metricsMax: Record<string, number> = {};
  private readonly timers: ReturnType<typeof setInterval>[];

  constructor(
    private readonly pid: number,
    private readonly metricsPort: number,
  ) {
    this.rss();
    this.timers = [setInterval(() => this.rss(), RSS_EVERY_MS), setInterval(() => void this.scrape(), METRICS_EVERY_MS)];
  }

  private rss(): void {
    this.rssMaxMB = Math.max(this.rssMaxMB, vmRssMB(this.pid) ?? 0);
  }

  private async scrape(): Promise<void> {
    try {
      for (const line of (await metricsText(this.metricsPort)).split('\n')) {
        const [name, value] = line.split(' ');
        if (name === CONNECTIONS || name === BUFFERED) this.metricsMax[name!] = Math.max(this.metricsMax[name!] ?? 0, Number(value));
      }
    } catch {
      // A relay too busy to answer within metricsText's bound: this sample is missing, the maximum stands.
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.rss();
    await this.scrape();
  }
}

interface Phase {
  load: LoadResult;
  rssMaxMB: number;
  metricsMax: Record<string, number>;
  cpu: ReturnType<typeof cpuPct>;
}

async function phase(legit: Legit, relay: ServerProcess, attackerPid: number): Promise<Phase> {
  const relayPid = relay.proc!.pid!;
  const s = new Sampler(relayPid, relay.metricsPort);
  const a = cpuNow(relayPid, attackerPid);
  const load = await legit.run(PHASE_MS);
  const b = cpuNow(relayPid, attackerPid);
  await s.stop();
  return { load, rssMaxMB: round(s.rssMaxMB, 1), metricsMax: s.metricsMax, cpu: cpuPct(a, b) };
}

/** The open-files limit of this process (the relay inherits it); undefined where /proc is missing. */
function openFilesLimit(): number | undefined {
  try {
    const m = /Max open files\s+(\d+)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

// ---- the section ----

export async function runAbuseBench(): Promise<SectionResult> {
  const children = new Children();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-abuse-'));
  const t0 = performance.now();
  let legit: Legit | undefined;
  try {
    const fdLimit = openFilesLimit();
    await runChild(children, process.execPath, [HUSH, 'relay', 'init', '--dir', dir], 60_000);
    const relay = new ServerProcess(children, 'relay', dir);
    await relay.start();
    const attacker = children.spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'abuse-attack-child.ts'), relay.address], { ipc: true });
    attacker.stderr?.on('data', (d: Buffer) => process.stderr.write(`[attacker] ${d}`));
    const { settings } = await nextMessage<{ settings: AttackSettings }>(attacker, 'ready', 60_000);
    if (fdLimit !== undefined && fdLimit < 2 * settings.idleConnections + 1000)
      console.log(`WARNING: open files limit ${fdLimit}: the attacker and the relay each need more than ${settings.idleConnections}`);

    legit = await Legit.open(relay.address);
    await legit.run(WARMUP_MS);
    if ((await waitForQuiet(20, 30_000)) === false) console.log('WARNING: other processes keep the machine busy: the figures suffer');
    const base = await phase(legit, relay, attacker.pid!);
    attacker.send({ t: 'attack' });
    const ramp = await nextMessage<{ rampS: number; open: number }>(attacker, 'attacking', 60_000);
    const attack = await phase(legit, relay, attacker.pid!);
    attacker.send({ t: 'stop' });
    const report = await nextMessage<AttackReport>(attacker, 'report', 30_000);
    const after = await metricsText(relay.metricsPort).catch(() => '');
    const refusedConnections = samplesOf(after, 'hush_relay_connections_refused_total');
    const backpressure = samplesOf(after, 'hush_relay_backpressure_total');
    const refusedNew = samplesOf(after, 'hush_relay_creations_refused_total');

    const p = (ph: Phase, q: number) => ms(percentile(ph.load.latencies, q));
    const rssRatio = round(attack.rssMaxMB / base.rssMaxMB, 2);
    const p99Ratio = round(p(attack, 99) / p(base, 99), 2);
    const bufferedMax = attack.metricsMax[BUFFERED] ?? null;
    const { idle, amplify: amp, flood } = report;
    const floodRate = flood.errors.RATE ?? 0;
    const met = (ok: boolean) => (ok ? 'met' : 'NOT MET');
    const figures: Record<string, number | null> = {
      relay_rss_mb_baseline: base.rssMaxMB,
      relay_rss_mb_attack: attack.rssMaxMB,
      relay_rss_ratio: rssRatio,
      legit_p50_ms_baseline: p(base, 50),
      legit_p99_ms_baseline: p(base, 99),
      legit_p50_ms_attack: p(attack, 50),
      legit_p99_ms_attack: p(attack, 99),
      legit_p99_ratio: p99Ratio,
      legit_lost_attack: attack.load.lost,
      legit_errors_attack: sum(attack.load.errors),
      relay_cpu_pct_baseline: base.cpu.relay,
      relay_cpu_pct_attack: attack.cpu.relay,
      other_processes_cpu_pct_baseline: base.cpu.other,
      other_processes_cpu_pct_attack: attack.cpu.other,
      relay_connections_max_attack: attack.metricsMax[CONNECTIONS] ?? null,
      idle_attempts: idle.attempts,
      idle_accepted: idle.accepted.midHandshake + idle.accepted.handshaken,
      idle_refused: sum(idle.refused),
      idle_closed_after_accept: sum(idle.closedAfterAccept),
      idle_open_at_start: ramp.open,
      idle_ramp_s: round(ramp.rampS, 1),
      idle_open_at_stop: idle.openAtStop,
      amp_gets_sent: amp.gets,
      amp_bytes_sent: amp.bytesSent,
      amp_relay_buffered_bytes_max: bufferedMax,
      amp_relay_buffered_bytes_bound: BUFFERED_BOUND,
      amp_kernel_queued_bytes_at_stop: amp.kernelQueuedAtStop,
      new_flood_ids: flood.ok,
      new_flood_err_rate: floodRate,
      new_flood_err_other: sum(flood.errors) - floodRate,
      new_flood_unanswered: flood.unanswered,
      new_flood_connections_closed: sum(flood.closes),
      new_flood_per_s: round(flood.perS),
      relay_queues_after: metric(after, 'hush_relay_queues'),
      relay_connections_refused: sum(refusedConnections),
      relay_sessions_closed_slow: backpressure.closed ?? 0,
    };

    console.log(
      [
        `relay: process (bin/hush.js relay start, its defaults, log level warn) on 127.0.0.1; ${os.cpus().length} cores shared with the clients`,
        `legitimate client: this process, 1 connection from 127.0.0.1, ${QUEUES} queues subscribed, ${RATE} SENDs/s of ${BODY_BYTES} bytes to itself, each MSG ACKed`,
        `attacker: a process of its own (bench/abuse-attack-child.ts): ${settings.idleConnections} idle connections (${settings.perAddress} per source address from 127.0.0.2, ` +
          `half mid-handshake), GET amplification (${settings.getsPerBlock} GETs every ${settings.ampIntervalMs} ms for a ${settings.ampBodyBytes}-byte message, socket not read, ≤ ${settings.maxGets} GETs), ` +
          `NEW flood (${settings.floodConnections} connections × ${settings.floodWindow} in flight)`,
        `phases: ${PHASE_MS / 1000} s each (after ${WARMUP_MS / 1000} s warm-up; the attack one once every idle connection was tried); RSS = VmRSS max, sampled every ${RSS_EVERY_MS} ms; CPU % of one core`,
        '',
      ].join('\n'),
    );
    console.log(
      table(
        ['', 'baseline', 'attack', 'attack ÷ baseline', 'target'],
        [
          ['relay RSS MB (max)', base.rssMaxMB, attack.rssMaxMB, rssRatio, `≤ ${RSS_TARGET}: ${met(rssRatio <= RSS_TARGET)}`],
          ['legit SEND→MSG p50 ms', p(base, 50), p(attack, 50), round(p(attack, 50) / p(base, 50), 2), ''],
          ['legit SEND→MSG p99 ms', p(base, 99), p(attack, 99), p99Ratio, `≤ ${P99_TARGET}: ${met(p99Ratio <= P99_TARGET)}`],
          ['legit SENDs / lost', `${base.load.sent} / ${base.load.lost}`, `${attack.load.sent} / ${attack.load.lost}`, '', ''],
          ['legit errors', tally(base.load.errors), tally(attack.load.errors), '', ''],
          ['CPU %: relay', base.cpu.relay ?? '?', attack.cpu.relay ?? '?', '', ''],
          ['CPU %: attacker / legitimate client', `${base.cpu.attacker ?? '?'} / ${base.cpu.self}`, `${attack.cpu.attacker ?? '?'} / ${attack.cpu.self}`, '', ''],
          ['CPU %: other processes of the machine', base.cpu.other ?? '?', attack.cpu.other ?? '?', '', ''],
          ['relay sessions (hush_relay_connections, max)', base.metricsMax[CONNECTIONS] ?? '?', attack.metricsMax[CONNECTIONS] ?? '?', '', ''],
        ],
      ) + '\n',
    );
    console.log(
      table(
        ['attack', 'result'],
        [
          ['idle: attempts / accepted (mid-handshake + handshaken)', `${idle.attempts} / ${idle.accepted.midHandshake} + ${idle.accepted.handshaken}`],
          ['idle: refused', tally(idle.refused)],
          ['idle: closed by the relay after accepting (each reopened)', tally(idle.closedAfterAccept)],
          ['idle: open once all were tried (after s) / at the stop / peak', `${ramp.open} (${round(ramp.rampS, 1)}) / ${idle.openAtStop} / ${idle.peakOpen}`],
          ['amplification: GETs / bytes sent', `${amp.gets} / ${amp.bytesSent}`],
          [
            `amplification: bytes the relay buffered (max of ${BUFFERED})`,
            bufferedMax === null ? 'not on /metrics' : `${bufferedMax} (bound ${BUFFERED_BOUND}: ${met(bufferedMax <= BUFFERED_BOUND)})`,
          ],
          ['amplification: kernel queues at the stop (relay send + client receive)', amp.kernelQueuedAtStop ?? 'connection gone'],
          [
            'amplification: connection ended (client side) / sessions the relay closed 4008',
            `${amp.closed === null ? 'no' : `${amp.closed.why} after ${round(amp.closed.afterS, 2)} s`} / ${backpressure.closed ?? 0}`,
          ],
          ['NEW flood: IDS / ERR', `${flood.ok} / ${tally(flood.errors)}`],
          ['NEW flood: unanswered (in flight at the stop) / connections the relay closed', `${flood.unanswered} / ${tally(flood.closes)}`],
          ['NEW flood: answers per second', round(flood.perS)],
          ['relay: queues after the attack', figures.relay_queues_after ?? '?'],
          ['relay: connections refused', tally(refusedConnections)],
          ['relay: backpressure', tally(backpressure)],
          ['relay: NEW refused', tally(refusedNew)],
        ],
      ),
    );
    console.log(`\nabuse section: ${round((performance.now() - t0) / 1000, 1)} s`);
    return {
      figures,
      notes: {
        relay: 'process: bin/hush.js relay start, its defaults (journal store, no fsync), HUSH_LOG_LEVEL=warn',
        legit: `1 connection from 127.0.0.1, ${QUEUES} queues subscribed, ${RATE} SENDs/s of ${BODY_BYTES} bytes, latency = SEND call → MSG arrival`,
        attacker: settings,
        phaseS: PHASE_MS / 1000,
        targets: { rssRatio: `≤ ${RSS_TARGET}`, p99Ratio: `≤ ${P99_TARGET}`, ampBufferedBytes: `≤ ${BUFFERED_BOUND} (2 × the default maxBufferedBytes)` },
        openFilesLimit: fdLimit ?? null,
        errors: { baseline: base.load.errors, attack: attack.load.errors },
        metricsMax: { baseline: base.metricsMax, attack: attack.metricsMax },
        attack: report,
        relayCounters: { connectionsRefused: refusedConnections, backpressure, creationsRefused: refusedNew },
      },
    };
  } finally {
    legit?.close();
    await children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const r = await runAbuseBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('abuse', r))}`);
}
