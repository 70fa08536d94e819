// Helpers every benchmark section shares: machine facts, statistics, child
// processes that are always killed, and the results file format
//   bench/results/<section>.json = { figures: { name: number | null }, machine, date, notes }
// (null: what the figure times did not happen within the run's bound).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.dirname(BENCH_DIR);
/** The shipped `hush` command, as the benchmarks run it. */
export const HUSH = path.join(ROOT, 'bin', 'hush.js');
/** The CA of the push test servers' certificate (src/push/stand-ins/fixtures). */
export const TEST_CA_FILE = path.join(ROOT, 'src', 'push', 'stand-ins', 'fixtures', 'localhost.crt');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');

export function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of an already sorted array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** CPU time (user + system, ms) a Linux process has used so far; undefined elsewhere. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** CPU time (ms) all processes on the machine have used so far (Linux); undefined elsewhere. */
export function machineBusyMs(): number | undefined {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy; guest time is inside user.
    const busy = f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - (f[4] ?? 0);
    return (busy * 1000) / 100;
  } catch {
    return undefined;
  }
}

export const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Child processes a section started; killAll() runs at the end of the section, even on error. */
export class Children {
  private readonly procs = new Set<ChildProcess>();

  /** With `ipc`, the child also gets an IPC channel (process.send / 'message'; see nextMessage). */
  spawn(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; ipc?: boolean } = {}): ChildProcess {
    const p = spawn(cmd, args, {
      cwd: opts.cwd ?? ROOT,
      env: opts.env ?? process.env,
      stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    this.procs.add(p);
    p.once('exit', () => this.procs.delete(p));
    return p;
  }

  /** SIGTERM, then SIGKILL after `graceMs` for whatever is still running. */
  async killAll(graceMs = 3000): Promise<void> {
    const live = [...this.procs].filter((p) => p.exitCode === null && p.signalCode === null);
    await Promise.all(live.map((p) => stop(p, graceMs)));
  }
}

/** Runs a child to its end; resolves with its stdout, rejects on a non-zero exit or after `timeoutMs`. */
export function runChild(children: Children, cmd: string, args: string[], timeoutMs: number): Promise<string> {
  const p = children.spawn(cmd, args);
  let out = '';
  let err = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`child did not finish within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    p.once('exit', (code, signal) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`child failed (${code ?? signal}): ${err || out}`));
    });
  });
}

export function stop(p: ChildProcess, graceMs = 3000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** Resolves with the first match of `re` on the child's stdout; rejects if it exits or times out. */
export function waitForLine(p: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const done = (f: () => void) => {
      clearTimeout(t);
      p.stdout?.off('data', onOut);
      p.stderr?.off('data', onErr);
      p.off('exit', onExit);
      f();
    };
    const onOut = (d: Buffer) => {
      out += d.toString();
      const m = out.match(re);
      if (m) done(() => resolve(m));
    };
    const onErr = (d: Buffer) => {
      err += d.toString();
    };
    const onExit = (code: number | null) => done(() => reject(new Error(`child exited (${code}) before ready: ${err || out}`)));
    const t = setTimeout(() => done(() => reject(new Error(`child not ready within ${timeoutMs} ms: ${err || out}`))), timeoutMs);
    p.stdout?.on('data', onOut);
    p.stderr?.on('data', onErr);
    p.once('exit', onExit);
  });
}

/**
 * The IPC side of a test-server child: reports `ready`, answers {t:'counts'}
 * with the server's answer counts, and closes the server and exits on SIGTERM
 * or a lost parent (a normal exit, so --cpu-prof writes its profile).
 */
export function serveTestServer(server: { close(): Promise<void>; counts: object }, ready: object): void {
  let stopping = false;
  const end = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void end());
  process.on('disconnect', () => void end());
  process.on('message', (m: { t?: string }) => {
    if (m?.t === 'counts') process.send!({ t: 'counts', ...server.counts });
  });
  process.send!({ t: 'ready', ...ready });
}

/** Resolves with the child's next IPC message {t: type, …}; rejects if it exits first or after `timeoutMs`. */
export function nextMessage<T>(p: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: { t?: string }) => {
      if (m?.t !== type) return;
      done();
      resolve(m as T);
    };
    const onExit = (code: number | null) => {
      done();
      reject(new Error(`child exited (${code}) while waiting for ${type}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`no ${type} from child within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(t);
      p.off('message', onMsg);
      p.off('exit', onExit);
    };
    p.on('message', onMsg);
    p.once('exit', onExit);
  });
}

/**
 * Waits until the rest of the machine is quiet: other processes (other benchmarks, a test run)
 * using under `maxPct` % of one core over 500 ms. Resolves false if not within `timeoutMs`, or
 * undefined where the machine's CPU time cannot be read.
 */
export async function waitForQuiet(maxPct = 20, timeoutMs = 10_000): Promise<boolean | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const a = machineBusyMs();
    const self = selfCpuMs();
    const t = performance.now();
    await sleep(500);
    const b = machineBusyMs();
    if (a === undefined || b === undefined) return undefined;
    const pct = (100 * (b - a - (selfCpuMs() - self))) / (performance.now() - t);
    if (pct < maxPct) return true;
    if (performance.now() > deadline) return false;
  }
}

/** One request of a closed-loop load: calls `done()` when it succeeded, `done(error)` when not. */
export type SendOne = (done: (error?: string) => void) => void;

export interface ClosedLoopResult {
  /** Successes completed inside the measurement window, per second. */
  perS: number;
  windowOk: number;
  windowMs: number;
  /** The window in CLOCK_MONOTONIC µs (process.hrtime), the clock of --cpu-prof profiles. */
  windowUs: [number, number];
  /** Successes and errors over the whole run (warm-up and drain included). */
  ok: number;
  errors: number;
  firstError?: string;
  /** Requests not finished within the drain time. */
  unfinished: number;
  /** CPU of this process, of `peerPid` and of the whole machine over the window, % of one core. */
  cpuPct: number;
  peerCpuPct?: number;
  machineCpuPct?: number;
}

/**
 * Closed-loop load from this process: `concurrency` requests in flight, each finished one
 * replaced at once; counts the successes in `measureMs` after `warmupMs`, then stops sending and
 * waits up to `drainMs` for the rest. The first error stops the load (the caller fails the run).
 */
export async function closedLoop(
  send: SendOne,
  o: { concurrency: number; warmupMs: number; measureMs: number; drainMs?: number; peerPid?: number },
): Promise<ClosedLoopResult> {
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let inFlight = 0;
  let running = true;
  const done = (error?: string) => {
    inFlight--;
    if (error === undefined) ok++;
    else {
      errors++;
      firstError ??= error;
      running = false; // an error may come back synchronously: no loop of failures
    }
    if (running) next();
  };
  const next = () => {
    inFlight++;
    send(done);
  };
  const snap = () => ({
    t: performance.now(),
    us: Number(process.hrtime.bigint() / 1000n),
    ok,
    cpu: selfCpuMs(),
    peer: o.peerPid === undefined ? undefined : processCpuMs(o.peerPid),
    machine: machineBusyMs(),
  });
  for (let i = 0; i < o.concurrency && running; i++) next();
  await sleep(o.warmupMs);
  const a = snap();
  await sleep(o.measureMs);
  const b = snap();
  running = false;
  const deadline = performance.now() + (o.drainMs ?? 5000);
  while (inFlight > 0 && performance.now() < deadline) await sleep(5);
  const windowMs = b.t - a.t;
  return {
    perS: ((b.ok - a.ok) * 1000) / windowMs,
    windowOk: b.ok - a.ok,
    windowMs,
    windowUs: [a.us, b.us],
    ok,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    unfinished: inFlight,
    cpuPct: (100 * (b.cpu - a.cpu)) / windowMs,
    ...(a.peer !== undefined && b.peer !== undefined ? { peerCpuPct: (100 * (b.peer - a.peer)) / windowMs } : {}),
    ...(a.machine !== undefined && b.machine !== undefined ? { machineCpuPct: (100 * (b.machine - a.machine)) / windowMs } : {}),
  };
}

export interface SectionResult {
  figures: Record<string, number | null>;
  notes?: Record<string, unknown>;
}

export function writeResults(section: string, r: SectionResult): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${section}.json`);
  const doc = { figures: r.figures, machine: machine(), date: new Date().toISOString(), ...(r.notes ? { notes: r.notes } : {}) };
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  return file;
}

/** A server's /metrics text (its ops port on loopback). */
export async function metricsText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}

/** The value of one sample in /metrics text, e.g. metric(text, 'hush_ntf_subscriptions{status="ACTIVE"}'); 0 if absent. */
export function metric(text: string, sample: string): number {
  for (const line of text.split('\n')) if (line.startsWith(sample + ' ')) return Number(line.slice(sample.length + 1));
  return 0;
}

/** The sum of every sample of one metric in /metrics text (all its label sets), e.g. metricSum(text, 'hush_ntf_db_queries_total'). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + ' ') || line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** Polls `f` every `pollMs` until it returns something truthy; rejects with `what` after `timeoutMs` (or with what `f` throws). */
export async function until<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, pollMs = 100): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(pollMs);
  }
}

/** A plain text table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
