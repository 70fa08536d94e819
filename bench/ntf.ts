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
//
// Knobs for diagnosis (none is needed for the figures):
//   BENCH_NTF_ONLY=stack|big          figures 1, 2, 3, 5 only, or figure 4 only
//   BENCH_NTF_BIG_TOKENS=N            figure 4 with N tokens × 10 (not the 1M figure then)
//   BENCH_NTF_CPU_PROF=DIR            CPU profiles of the relay and notification server in DIR/<what>/,
//                                     and the measurement windows (profile clock) in DIR/phases.json
//   BENCH_NTF_NODE_FLAGS='--trace-gc' node flags for those processes; their stdout goes to DIR
//   BENCH_NTF_DUMP_DIR=DIR            every measured SEND's (time, latency, queue) from the SEND driver
//   BENCH_NTF_CONCURRENCY, BENCH_NTF_APNS_CONNECTIONS, BENCH_NTF_APNS_WINDOW   see below
//   BENCH_PG_URL                      default postgres://postgres@127.0.0.1:5432/test
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import pg from 'pg';
import { nodeCrypto } from '../src/node/crypto.ts';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { NtfClient } from '../src/ntf/client.ts';
import { DEFAULT_DISPATCH } from '../src/ntf/dispatch.ts';
import { openPush } from '../src/ntf/payload.ts';
import { LOCAL_RELAYS, NO_CREATION_LIMITS, ntfFiles } from '../src/ntf/config.ts';
import { openMeta, RelayClient } from '../src/relay/client.ts';
import { NO_CREATION_LIMITS_ENV } from './relay.ts';
import { readKeyFile } from '../src/server/identity.ts';
import { ApnsTestServer, type ApnsRecordedPush } from '../src/push/stand-ins/apns-server.ts';
import {
  BENCH_DIR,
  Children,
  machineBusyMs,
  nextMessage,
  percentile,
  processCpuMs,
  HUSH,
  metric,
  metricsText,
  ROOT,
  TEST_CA_FILE,
  round,
  selfCpuMs,
  sleep,
  stop,
  table,
  waitForLine,
  writeResults,
  type SectionResult,
} from './lib.ts';
import type { SenderResult } from './ntf-sender-child.ts';
import { sharedKey } from '../src/core/keys.ts';

const crypto = nodeCrypto;
const TOPIC = 'chat.hush.bench';

const REG_TOKENS = 6000;
const REG_CONNECTIONS = 20;
const REG_PER_CONNECTION = 16;
/** No registration starts after this long (a stuck server must not hold the section). */
const REG_DEADLINE_MS = 60_000;

const SUB_TOKENS = 2000;
const SUBS_PER_TOKEN = 3;

const RATES = [1000, 5000];
const LAT_WARMUP_MS = 500;
const LAT_MEASURE_MS = 5000;
const DRAIN_MS = 10_000;

const FLOOD_WINDOW = 1500;
const FLOOD_WARMUP_MS = 1000;
const FLOOD_MEASURE_MS = 5000;

/** Pushes in flight: the server's dispatch concurrency, and the raw client's streams. */
const CONCURRENCY = Number(process.env.BENCH_NTF_CONCURRENCY ?? DEFAULT_DISPATCH.concurrency);
const H2_STREAMS = CONCURRENCY;
const H2_WARMUP_MS = 1000;
const H2_MEASURE_MS = 5000;

/** BENCH_NTF_BIG_TOKENS: fewer tokens for a quick try (figure 4 then is not the 1M figure). */
const BIG_TOKENS = Number(process.env.BENCH_NTF_BIG_TOKENS ?? 100_000);
const BIG_SUBS_PER_TOKEN = 10;
const BIG_SUBS = BIG_TOKENS * BIG_SUBS_PER_TOKEN;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const PG_SCHEMA = 'hush_bench_ntf';

/**
 * Diagnosis: BENCH_NTF_APNS_CONNECTIONS sets the server's apns.connections (default 1);
 * BENCH_NTF_APNS_WINDOW=BYTES sets the APNs test server's connection receive window (its
 * default: room for the largest payload on every stream it allows, about 5 MB).
 */
const APNS_CONNECTIONS = Number(process.env.BENCH_NTF_APNS_CONNECTIONS ?? 0);
const APNS_WINDOW = Number(process.env.BENCH_NTF_APNS_WINDOW ?? 0);

/** BENCH_NTF_ONLY=stack (figures 1, 2, 3, 5) or big (figure 4): part of the section, for a quick try. */
const ONLY = process.env.BENCH_NTF_ONLY;
const hrMs = () => Number(process.hrtime.bigint()) / 1e6;

// The APNs test server runs in this process: its garbage is collected before each measured run
// (a full collection of the registration phase's leftovers took ~200 ms in the middle of one).
let gcFn: (() => void) | undefined;
function collectGarbage(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** With BENCH_NTF_CPU_PROF: the measurement windows (CLOCK_MONOTONIC µs, as in the profiles) go to DIR/phases.json. */
const phases: { name: string; startUs: number; endUs: number }[] = [];
function phase(name: string, startMs: number, endMs: number): void {
  const dir = process.env.BENCH_NTF_CPU_PROF;
  if (!dir) return;
  phases.push({ name, startUs: Math.round(startMs * 1000), endUs: Math.round(endMs * 1000) });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'phases.json'), JSON.stringify(phases, null, 1));
}
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const key = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const ms = (x: number) => round(x, 2);
const fmt = (x: number) => round(x).toLocaleString('en');

// ---- processes ----

interface ServerProcess {
  proc: ChildProcess;
  address: string;
  pid: number;
  metricsPort: number;
}

/** Runs `hush <args>` to its end. */
async function hush(children: Children, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const p = children.spawn(process.execPath, [HUSH, ...args], { env });
  let out = '';
  let err = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => p.once('exit', r));
  if (code !== 0) throw new Error(`hush ${args.join(' ')} failed (${code}): ${err || out}`);
  return out;
}

/**
 * Node flags for a server process: BENCH_NTF_CPU_PROF=DIR profiles it into DIR/<what>/ (written
 * when it stops); BENCH_NTF_NODE_FLAGS adds flags (e.g. --trace-gc) and logs the process' stdout to
 * DIR/<what>.log (DIR: BENCH_NTF_CPU_PROF or the temporary directory).
 */
function profFlags(what: string): string[] {
  const dir = process.env.BENCH_NTF_CPU_PROF;
  const extra = process.env.BENCH_NTF_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? [];
  return [...(dir ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(dir, what)] : []), ...extra];
}

function logStdout(p: ChildProcess, what: string): void {
  if (!process.env.BENCH_NTF_NODE_FLAGS) return;
  const file = path.join(process.env.BENCH_NTF_CPU_PROF ?? os.tmpdir(), `${what}-${p.pid}.log`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const out = fs.createWriteStream(file);
  p.stdout?.on('data', (d: Buffer) => out.write(d));
}

async function startServer(
  children: Children,
  what: 'relay' | 'ntf',
  dir: string,
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<ServerProcess> {
  phase(`spawn-${what}`, hrMs(), hrMs());
  const proc = children.spawn(process.execPath, [...profFlags(what), HUSH, what, 'start', '--dir', dir], {
    env: { ...process.env, HUSH_LOG_LEVEL: 'warn', ...env },
  });
  proc.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${what}] ${d}`));
  const m = await waitForLine(proc, /address: (\S+)\nmetrics port: (\d+)/, timeoutMs);
  proc.stdout?.on('data', () => {}); // keep the pipe drained
  logStdout(proc, what);
  return { proc, address: m[1]!, pid: proc.pid!, metricsPort: Number(m[2]) };
}

async function initNtfDir(children: Children, dir: string, apns: ApnsTestServer, teamKey: { keyId: string; teamId: string; privateKey: string }) {
  await hush(children, ['ntf', 'init', '--dir', dir]);
  const file = ntfFiles(dir).config;
  const keyFile = path.join(dir, 'apns-key.p8');
  fs.writeFileSync(keyFile, teamKey.privateKey, { mode: 0o600 });
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  config.apns = { host: apns.url, keyId: teamKey.keyId, teamId: teamKey.teamId, keyFile, topic: TOPIC, serves: 'apns', caFile: TEST_CA_FILE };
  config.dispatch = { concurrency: CONCURRENCY };
  config.relays = LOCAL_RELAYS;
  config.creation = NO_CREATION_LIMITS;
  if (APNS_CONNECTIONS) (config.apns as Record<string, unknown>).connections = APNS_CONNECTIONS;
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
}

/** A child process with an IPC channel (killed at the end like the others). */
function spawnIpc(ipcKids: Set<ChildProcess>, file: string, args: string[] = []): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', file, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  ipcKids.add(p);
  p.once('exit', () => ipcKids.delete(p));
  p.stdout?.on('data', () => {});
  p.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${path.basename(file)}] ${d}`));
  return p;
}

// ---- metrics ----

const NTF_RECEIVED = 'hush_ntf_notifications_received_total';
const NTF_ACTIVE = 'hush_ntf_subscriptions{status="ACTIVE"}';
const NTF_RELAYS = 'hush_ntf_relay_connections';

function rss(pid: number): { rssMB: number; hwmMB: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMB: round(kb('VmRSS') / 1024, 1), hwmMB: round(kb('VmHWM') / 1024, 1) };
}

// ---- the push router: every push the APNs test server accepts ----

interface SubQueue {
  index: number;
  sndId: Uint8Array;
  rcvNtfDhSecret: Uint8Array;
}

interface BenchToken {
  secret: Uint8Array;
  queues: Map<string, SubQueue>;
}

class PushRouter {
  readonly verification = new Map<string, (d: string) => void>();
  readonly tokens = new Map<string, BenchToken>();
  lastNonce: string[] = [];
  messagePushes = 0;
  otherPushes = 0;
  unknown = 0;
  badPushes = 0;
  badMeta = 0;
  sample: ApnsRecordedPush | undefined;
  sender: ChildProcess | undefined;
  /** Whether message pushes are opened and matched (off for the raw HTTP/2 run: only counted). */
  matching = true;
  private batch: number[] = [];
  private flushQueued = false;

  constructor(private readonly apns: ApnsTestServer) {
    apns.on('push', (p) => this.push(p));
  }

  private push(p: ApnsRecordedPush): void {
    const t = hrMs();
    // The test server keeps every push and exchange: nothing here needs them kept.
    if (this.apns.pushes.length > 256) this.apns.pushes.length = 0;
    if (this.apns.exchanges.length > 256) this.apns.exchanges.length = 0;
    if (p.headers['apns-push-type'] !== 'alert') {
      this.otherPushes++;
      const w = this.verification.get(p.token);
      if (!w) return void this.unknown++;
      this.verification.delete(p.token);
      w(p.payload.d as string);
      return;
    }
    this.messagePushes++;
    this.sample ??= p;
    if (!this.matching) return;
    const tk = this.tokens.get(p.token);
    if (!tk) return void this.unknown++;
    const c = openPush(crypto, tk.secret, Buffer.from(p.payload.d as string, 'base64url'));
    if (!c || c.kind !== 'message') return void this.badPushes++;
    for (const e of c.entries) {
      const q = tk.queues.get(key(e.notifierId));
      if (!q) {
        this.badPushes++;
        continue;
      }
      const n = key(e.nonce);
      if (this.lastNonce[q.index] === n) continue; // an older NMSG, pushed before
      this.lastNonce[q.index] = n;
      if (!openMeta(crypto, q.rcvNtfDhSecret, e)) this.badMeta++;
      this.batch.push(q.index, t);
    }
    if (!this.flushQueued && this.batch.length > 0) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        const items = this.batch;
        this.batch = [];
        this.sender?.send({ t: 'pushed', items });
      });
    }
  }

  waitVerification(tokenHex: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.verification.delete(tokenHex);
        reject(new Error('no verification push'));
      }, timeoutMs);
      this.verification.set(tokenHex, (d) => {
        clearTimeout(timer);
        resolve(d);
      });
    });
  }
}

// ---- CPU snapshots ----

interface Snap {
  t: number;
  cpu: Record<string, number | undefined>;
  machine: number | undefined;
  pushes: number;
  received?: number;
  pushSecondsSum?: number;
  pushSecondsCount?: number;
  queued?: number;
  buckets?: Map<string, number>;
}

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

function cpuPct(a: Snap, b: Snap): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  const dt = b.t - a.t;
  for (const k of Object.keys(a.cpu)) {
    const x = a.cpu[k];
    const y = b.cpu[k];
    out[k] = x === undefined || y === undefined ? undefined : round(((y - x) / dt) * 100);
  }
  if (a.machine !== undefined && b.machine !== undefined) {
    const known = Object.values(out).reduce((s: number, v) => s + (v ?? 0), 0);
    out.other = Math.max(0, round(((b.machine - a.machine) / dt) * 100 - known));
  }
  return out;
}

const pctStr = (c: Record<string, number | undefined>) =>
  Object.entries(c)
    .map(([k, v]) => `${k} ${v === undefined ? '?' : v + '%'}`)
    .join(', ');

// ---- 5. registrations ----

interface Registered {
  tokenHex: string;
  tokenId: Uint8Array;
  tknAuth: KeyPair;
  secret: Uint8Array;
}

async function registrations(ntf: ServerProcess, router: PushRouter, clients: NtfClient[], procs: Record<string, number>) {
  const devices = Array.from({ length: REG_TOKENS }, () => {
    const token = crypto.randomBytes(32);
    const tknAuth = crypto.x25519KeyPair();
    const tknDh = crypto.x25519KeyPair();
    // A phone holds its keys ready: imported into OpenSSL here (node:crypto caches the key
    // object per key), before the clock starts, so the devices' key set-up is not timed.
    crypto.x25519(tknAuth.privateKey, tknDh.publicKey);
    crypto.x25519(tknDh.privateKey, tknAuth.publicKey);
    return { token, tokenHex: hex(token), tknAuth, tknDh };
  });
  const done: Registered[] = [];
  const lat: number[] = [];
  let next = 0;
  let failures = 0;
  let firstError: unknown;
  const snap = (): Snap => ({ t: hrMs(), cpu: cpuOf(procs), machine: machineBusyMs(), pushes: 0 });
  const deadline = hrMs() + REG_DEADLINE_MS;
  const worker = async (c: NtfClient) => {
    for (;;) {
      const i = next++;
      if (i >= devices.length || hrMs() > deadline) return;
      const d = devices[i]!;
      const t = hrMs();
      try {
        const verification = router.waitVerification(d.tokenHex, 30_000);
        verification.catch(() => {}); // awaited below; TNEW may fail first
        const { tokenId, srvDhKey } = await c.registerToken({ provider: 'apns', token: d.token }, d.tknAuth, d.tknDh.publicKey);
        const secret = sharedKey(crypto, d.tknDh.privateKey, srvDhKey, 'ntf token')!;
        const v = openPush(crypto, secret, Buffer.from(await verification, 'base64url'));
        if (!v || v.kind !== 'verification') throw new Error('verification push did not open');
        await c.verifyToken(tokenId, d.tknAuth.privateKey, v.code);
        lat.push(hrMs() - t);
        done.push({ tokenHex: d.tokenHex, tokenId, tknAuth: d.tknAuth, secret });
      } catch (e) {
        failures++;
        firstError ??= e;
      }
    }
  };
  collectGarbage();
  const a = snap();
  await Promise.all(clients.flatMap((c) => Array.from({ length: REG_PER_CONNECTION }, () => worker(c))));
  const b = snap();
  phase('registrations', a.t, b.t);
  if (done.length === 0) throw firstError ?? new Error('no registration completed');
  lat.sort((x, y) => x - y);
  return {
    perS: (done.length * 1000) / (b.t - a.t),
    done,
    failures,
    firstError: firstError === undefined ? undefined : String(firstError),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    elapsedMs: b.t - a.t,
    cpu: cpuPct(a, b),
    ntfActiveTokens: metric(await metricsText(ntf.metricsPort), 'hush_ntf_tokens{status="ACTIVE"}'),
  };
}

function cpuOf(procs: Record<string, number>): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  for (const [k, pid] of Object.entries(procs)) out[k] = pid === process.pid ? selfCpuMs() : processCpuMs(pid);
  return out;
}

// ---- 1./2. sender runs ----

async function senderRun(
  sender: ChildProcess,
  run: { mode: 'paced'; rate: number } | { mode: 'window'; window: number },
  warmupMs: number,
  measureMs: number,
  ntf: ServerProcess,
  router: PushRouter,
  procs: Record<string, number>,
) {
  const snap = async (): Promise<Snap> => {
    const text = await metricsText(ntf.metricsPort);
    return {
      t: hrMs(),
      cpu: cpuOf(procs),
      machine: machineBusyMs(),
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
  const result = nextMessage<SenderResult>(sender, 'result', warmupMs + measureMs + DRAIN_MS + 30_000);
  sender.send({ t: 'run', ...run, warmupMs, measureMs, drainMs: DRAIN_MS });
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
    receivedPerS: (b.received! - a.received!) / s,
    cpu: cpuPct(a, b),
    benchLoopP99: loop.percentile(99) / 1e6,
    /** Mean time the APNs provider took per push (request → answer, its queue included), from the server's histogram. */
    providerMeanMs: ((b.pushSecondsSum! - a.pushSecondsSum!) * 1000) / Math.max(1, b.pushSecondsCount! - a.pushSecondsCount!),
    providerTail: tail(a.buckets!, b.buckets!),
    /** Pushes waiting in the dispatcher at the end of the window. */
    dispatchQueued: b.queued!,
  };
}

// ---- 4. 1,000,000 subscriptions ----

async function bigRestart(children: Children, apns: ApnsTestServer, teamKey: { keyId: string; teamId: string; privateKey: string }) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-ntf-big-'));
  const relayDir = path.join(base, 'relay');
  const ntfDir = path.join(base, 'ntf');
  const out: Record<string, unknown> = {};
  const runPopulate = async (mode: string, specFile: string) => {
    const p = children.spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'ntf-populate-child.ts'), mode, specFile]);
    let o = '';
    let e = '';
    p.stdout?.on('data', (d: Buffer) => (o += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (e += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    const code = await new Promise<number | null>((r) => p.once('exit', r));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`populate ${mode} failed (${code}): ${e || o}`);
    return JSON.parse(o.trim().split('\n').at(-1)!) as { ms: number };
  };
  try {
    await initNtfDir(children, ntfDir, apns, teamKey);
    await hush(children, ['relay', 'init', '--dir', relayDir, '--port', '5223']);
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
    const relayPop = await runPopulate('relay', specFile);
    const relayStart = performance.now();
    const relay = await startServer(children, 'relay', relayDir, { HUSH_RELAY_PORT: '0', HUSH_RELAY_METRICS_PORT: '0' }, 90_000);
    out.relayStartMs = Math.round(performance.now() - relayStart);
    out.relayRssMB = rss(relay.pid).rssMB;
    fs.writeFileSync(specFile, JSON.stringify({ ...spec, relayAddress: relay.address }));
    const journalPop = await runPopulate('journal', specFile);
    out.populateMs = { relayJournal: relayPop.ms, ntfJournal: journalPop.ms };
    out.journalMB = round(fs.statSync(path.join(ntfFiles(ntfDir).store, 'ntf.journal')).size / 2 ** 20, 1);

    out.journal = await restartRun(children, ntfDir, 'journal');
    try {
      await dropSchema();
      const pgPop = await runPopulate('postgres', specFile);
      (out.populateMs as Record<string, number>).postgres = pgPop.ms;
      out.postgres = await restartRun(children, ntfDir, 'postgres');
    } catch (e) {
      // The journal figure stands without PostgreSQL.
      out.postgres = { error: e instanceof Error ? e.message : String(e) };
    }
    await stop(relay.proc);
  } finally {
    await children.killAll();
    await dropSchema().catch(() => {});
    fs.rmSync(base, { recursive: true, force: true });
  }
  return out as {
    journal: RestartResult;
    postgres: RestartResult | { error: string };
    relayStartMs: number;
    relayRssMB: number;
    populateMs: Record<string, number>;
    journalMB: number;
  };
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
  const p = children.spawn(process.execPath, [...profFlags(`ntf-${backend}`), HUSH, 'ntf', 'start', '--dir', ntfDir], {
    env: { ...process.env, ...env },
  });
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

// ---- the section ----

/** Waits (at most `maxMs`) for a second in which the machine is at most `pct`% busy: others' work skews every figure. */
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

/** The highest "other processes" CPU % seen in the measured phases. */
const otherCpu: number[] = [];
const noteOther = (c: Record<string, number | undefined>) => c.other !== undefined && otherCpu.push(c.other);

export async function runNtfBench(): Promise<SectionResult> {
  const children = new Children();
  const ipcKids = new Set<ChildProcess>();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-ntf-'));
  const figures: Record<string, number> = {};
  const notes: Record<string, unknown> = {};
  const t0 = performance.now();
  otherCpu.length = 0;
  const busyAtStart = await quietMachine(20, 60_000);
  const waitedS = round((performance.now() - t0) / 1000, 1);
  const loadAtStart = os.loadavg().map((x) => round(x, 2));
  const apns = await ApnsTestServer.start({ topics: [TOPIC], ...(APNS_WINDOW ? { connectionWindowSize: APNS_WINDOW } : {}) });
  const teamKey = apns.keys.create();
  const router = new PushRouter(apns);
  const clients: NtfClient[] = [];
  let relayClient: RelayClient | undefined;
  try {
    console.log(
      [
        `relay: process (hush relay start, journal, fsync off); notification server: process (hush ntf start, journal, fsync off,`,
        `  apns → the APNs test server, ${APNS_CONNECTIONS || 1} HTTP/2 connection(s), dispatch concurrency ${CONCURRENCY});`,
        `APNs test server (HTTP/2 + TLS, JWT checked) in the benchmark process, which also opens every push it accepts;`,
        `SEND driver and raw HTTP/2 client: child processes; ${os.cpus().length} cores shared by all; load average at start ${loadAtStart.join(' ')}` +
          (busyAtStart === undefined ? '' : `, machine ${round(busyAtStart)}% busy after waiting ${waitedS} s for a quiet second`),
        '',
      ].join('\n'),
    );
    if (ONLY !== 'big') {
      // ---- the stack ----
      const relayDir = path.join(base, 'relay');
      const ntfDir = path.join(base, 'ntf');
      await hush(children, ['relay', 'init', '--dir', relayDir, '--port', '5223']);
      const relay = await startServer(children, 'relay', relayDir, {
        HUSH_RELAY_PORT: '0',
        HUSH_RELAY_METRICS_PORT: '0',
        HUSH_RELAY_QUEUE_QUOTA: '1000000',
        ...NO_CREATION_LIMITS_ENV,
      });
      await initNtfDir(children, ntfDir, apns, teamKey);
      const ntf = await startServer(children, 'ntf', ntfDir, { HUSH_NTF_PORT: '0', HUSH_NTF_METRICS_PORT: '0' });
      const procs: Record<string, number> = { ntf: ntf.pid, relay: relay.pid, bench: process.pid };

      // ---- 5. registrations ----
      for (let i = 0; i < REG_CONNECTIONS; i++)
        clients.push(await NtfClient.connect(ntf.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 }));
      const reg = await registrations(ntf, router, clients, procs);
      noteOther(reg.cpu);
      figures.registrations_per_s = round(reg.perS);
      figures.registration_p50_ms = ms(reg.p50);
      figures.registration_p99_ms = ms(reg.p99);
      figures.registration_failures = reg.failures;
      console.log(
        `5. Registrations: ${REG_TOKENS} tokens (provider apns), ${REG_CONNECTIONS} connections × ${REG_PER_CONNECTION} in flight; ` +
          `TNEW → verification push at the APNs test server → openPush → TVFY OK (target ≥ 2,000/s)`,
      );
      console.log(
        table(
          ['', 'registrations/s', 'p50 ms', 'p99 ms', 'failed', 'CPU'],
          [['TNEW+TVFY', fmt(reg.perS), ms(reg.p50), ms(reg.p99), reg.failures, pctStr(reg.cpu)]],
        ) + '\n',
      );
      if (reg.firstError) console.log(`first failure: ${reg.firstError}`);
      notes.registrations = {
        tokens: REG_TOKENS,
        connections: REG_CONNECTIONS,
        inFlightPerConnection: REG_PER_CONNECTION,
        elapsedMs: Math.round(reg.elapsedMs),
        activeTokensAtServer: reg.ntfActiveTokens,
        cpuPct: reg.cpu,
        note: 'device keys (tknAuth, tknDh) made and imported into OpenSSL before the clock starts; the devices run in the benchmark process, beside the APNs test server',
      };

      // ---- queues and subscriptions ----
      const setupStart = performance.now();
      relayClient = await RelayClient.connect(relay.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 });
      const subTokens = reg.done.slice(0, SUB_TOKENS);
      if (subTokens.length < SUB_TOKENS) throw new Error(`only ${subTokens.length} tokens registered`);
      const queues: SubQueue[] = [];
      const subs: { tk: Registered; notifierId: Uint8Array; ntfAuth: KeyPair }[] = [];
      const CHUNK = 500;
      for (let from = 0; from < SUB_TOKENS * SUBS_PER_TOKEN; from += CHUNK) {
        await Promise.all(
          Array.from({ length: Math.min(CHUNK, SUB_TOKENS * SUBS_PER_TOKEN - from) }, async (_, k) => {
            const index = from + k;
            const tk = subTokens[Math.floor(index / SUBS_PER_TOKEN)]!;
            const rcvAuth = crypto.x25519KeyPair();
            const rcvDh = crypto.x25519KeyPair();
            const ntfAuth = crypto.x25519KeyPair();
            const ntfDh = crypto.x25519KeyPair();
            const ids = await relayClient!.newQueue(rcvAuth, rcvDh.publicKey, { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: ntfDh.publicKey });
            const q: SubQueue = { index, sndId: ids.sndId, rcvNtfDhSecret: sharedKey(crypto, ntfDh.privateKey, ids.ntf!.srvNtfDhKey, 'relay notifier')! };
            queues[index] = q;
            subs[index] = { tk, notifierId: ids.ntf!.notifierId, ntfAuth };
            let t = router.tokens.get(tk.tokenHex);
            if (!t) router.tokens.set(tk.tokenHex, (t = { secret: tk.secret, queues: new Map() }));
            t.queues.set(key(ids.ntf!.notifierId), q);
          }),
        );
      }
      for (let from = 0; from < subs.length; from += CHUNK * 2) {
        await Promise.all(
          subs.slice(from, from + CHUNK * 2).map((s, k) =>
            clients[(from + k) % clients.length]!.createSubscription(s.tk.tokenId, s.tk.tknAuth.privateKey, relay.address, s.notifierId, s.ntfAuth.privateKey),
          ),
        );
      }
      const subsDeadline = performance.now() + 30_000;
      while (metric(await metricsText(ntf.metricsPort), NTF_ACTIVE) < subs.length) {
        if (performance.now() > subsDeadline) throw new Error('subscriptions not ACTIVE within 30 s');
        await sleep(50);
      }
      router.lastNonce = new Array<string>(queues.length).fill('');
      notes.setup = {
        tokensWithSubscriptions: SUB_TOKENS,
        subscriptionsPerToken: SUBS_PER_TOKEN,
        queues: queues.length,
        setupMs: Math.round(performance.now() - setupStart),
      };

      // ---- the SEND driver ----
      const sender = spawnIpc(ipcKids, path.join(BENCH_DIR, 'ntf-sender-child.ts'));
      router.sender = sender;
      const ready = nextMessage(sender, 'ready', 30_000);
      sender.send({ t: 'init', address: relay.address, sndIds: queues.map((q) => hex(q.sndId)), perToken: SUBS_PER_TOKEN });
      await ready;
      procs.sender = sender.pid!;

      // ---- 1. latency ----
      const latRows: (string | number)[][] = [];
      const latNotes: Record<string, unknown> = {};
      for (const rate of RATES) {
        const x = await senderRun(sender, { mode: 'paced', rate }, LAT_WARMUP_MS, LAT_MEASURE_MS, ntf, router, procs);
        noteOther(x.cpu);
        const l = x.r.latencies;
        figures[`send_push_p50_ms_at_${rate}`] = ms(percentile(l, 50));
        figures[`send_push_p99_ms_at_${rate}`] = ms(percentile(l, 99));
        figures[`send_push_max_ms_at_${rate}`] = ms(l.at(-1) ?? NaN);
        figures[`send_push_achieved_per_s_at_${rate}`] = round((x.r.sentInWindow * 1000) / LAT_MEASURE_MS);
        figures[`send_push_missing_at_${rate}`] = x.r.missing;
        latRows.push([
          `${fmt(rate)}/s`,
          fmt((x.r.sentInWindow * 1000) / LAT_MEASURE_MS),
          l.length,
          ms(percentile(l, 50)),
          ms(percentile(l, 99)),
          ms(l.at(-1) ?? NaN),
          x.r.skipped,
          x.r.missing,
          pctStr(x.cpu),
        ]);
        latNotes[`at_${rate}`] = {
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
      }
      notes.latency = latNotes;
      console.log(
        `1. SEND → push latency: SEND with notify paced over ${SUB_TOKENS} tokens × ${SUBS_PER_TOKEN} queues, recipients offline, ` +
          `${LAT_MEASURE_MS / 1000} s after ${LAT_WARMUP_MS / 1000} s warm-up; latency = push at the APNs test server − SEND call (target p99 ≤ 25 ms at 1,000/s)`,
      );
      console.log(
        table(['offered', 'sent/s', 'samples', 'p50 ms', 'p99 ms', 'max ms', 'skipped', 'missing', 'CPU (% of one core)'], latRows) + '\n',
      );

      // ---- 2. sustained ----
      const flood = await senderRun(sender, { mode: 'window', window: FLOOD_WINDOW }, FLOOD_WARMUP_MS, FLOOD_MEASURE_MS, ntf, router, procs);
      noteOther(flood.cpu);
      figures.sustained_pushes_per_s = round(flood.pushesPerS);
      figures.sustained_nmsg_per_s = round(flood.receivedPerS);
      figures.sustained_matched_per_s = round((flood.r.completedInWindow * 1000) / FLOOD_MEASURE_MS);
      notes.sustained = {
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

      // The stack is done: stop it before the raw client runs, so they don't share the cores.
      sender.send({ t: 'exit' });
      await stop(sender);
      relayClient.close();
      for (const c of clients.splice(0)) c.close();
      await children.killAll();

      // ---- 3. raw HTTP/2 ----
      const sample = router.sample;
      if (!sample) throw new Error('no message push captured');
      const h2Spec = path.join(base, 'h2.json');
      fs.writeFileSync(
        h2Spec,
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
      const h2 = children.spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'ntf-h2-child.ts'), h2Spec]);
      let h2Out = '';
      h2.stdout?.on('data', (d: Buffer) => (h2Out += d.toString()));
      const h2Exit = new Promise<number | null>((r) => h2.once('exit', r));
      await waitForLine(h2, /started/, 20_000);
      const h2Procs = { h2client: h2.pid!, bench: process.pid };
      await sleep(H2_WARMUP_MS);
      const ha: Snap = { t: hrMs(), cpu: cpuOf(h2Procs), machine: machineBusyMs(), pushes: router.messagePushes };
      await sleep(H2_MEASURE_MS);
      const hb: Snap = { t: hrMs(), cpu: cpuOf(h2Procs), machine: machineBusyMs(), pushes: router.messagePushes };
      const h2Code = await Promise.race([h2Exit, sleep(20_000).then(() => 'timeout')]);
      if (h2Code !== 0) throw new Error(`raw HTTP/2 client failed (${h2Code})`);
      const h2Client = JSON.parse(h2Out.trim().split('\n').at(-1)!) as { ok: number; failed: number; perS: number };
      const raw = ((hb.pushes - ha.pushes) * 1000) / (hb.t - ha.t);
      const h2Cpu = cpuPct(ha, hb);
      noteOther(h2Cpu);
      figures.raw_http2_requests_per_s = round(raw);
      figures.sustained_vs_raw = round(flood.pushesPerS / raw, 3);
      notes.rawHttp2 = {
        client: `node:http2, own process, 1 connection, ${H2_STREAMS} streams in flight, the captured push (${Buffer.byteLength(sample.body)}-byte body, same headers and provider token)`,
        counted: 'pushes the APNs test server accepted, as for the notification server',
        clientCountedPerS: round(h2Client.perS),
        failed: h2Client.failed,
        cpuPct: h2Cpu,
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
            [`raw node:http2, ${H2_STREAMS} streams`, fmt(raw), '1', pctStr(h2Cpu)],
          ],
        ),
      );
      console.log(
        `sustained run: window ${FLOOD_WINDOW} tokens, SEND→push p50 ${ms(percentile(flood.r.latencies, 50))} ms, p99 ${ms(percentile(flood.r.latencies, 99))} ms; ` +
          `missing ${flood.r.missing}, bad pushes ${router.badPushes}, bad meta ${router.badMeta}\n`,
      );

    }

    if (ONLY !== 'stack') {
      // ---- 4. 1M subscriptions ----
      const big = await bigRestart(children, apns, teamKey);
      const sub = BIG_SUBS === 1_000_000 ? 'subs_1m' : `subs_${BIG_SUBS}`;
      figures[`${sub}_journal_all_active_s`] = round(big.journal.allActiveMs / 1000, 2);
      figures[`${sub}_journal_rss_mb`] = big.journal.rssMB;
      if (!('error' in big.postgres)) {
        figures[`${sub}_postgres_all_active_s`] = round(big.postgres.allActiveMs / 1000, 2);
        figures[`${sub}_postgres_rss_mb`] = big.postgres.rssMB;
      }
      notes.subs1m = { ...big, tokens: BIG_TOKENS, subscriptionsPerToken: BIG_SUBS_PER_TOKEN, pgSchema: `${PG_SCHEMA} (dropped after)` };
      console.log(
        `4. ${fmt(BIG_SUBS)} subscriptions (${fmt(BIG_TOKENS)} tokens × ${BIG_SUBS_PER_TOKEN}), stores pre-populated; ntf start → every subscription ACTIVE ` +
          `(/metrics, relay connected, NSUBS answered) (target ≤ 30 s, ≤ 1 GiB)`,
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
        `relay: ${fmt(BIG_SUBS)} queues, started in ${round(big.relayStartMs / 1000, 1)} s, RSS ${big.relayRssMB} MB; ` +
          `populate ms: ${Object.entries(big.populateMs).map(([k, v]) => `${k} ${v}`).join(', ')}; journal ${big.journalMB} MB`,
      );
    }
    const busiest = Math.max(0, ...otherCpu);
    if (busiest > 25)
      console.log(
        `\nWARNING: other processes used up to ${round(busiest)}% CPU during the measurements: the figures are lower than this machine gives alone`,
      );
    console.log(`\nntf section: ${round((performance.now() - t0) / 1000, 1)} s`);
  } finally {
    relayClient?.close();
    for (const c of clients) c.close();
    await Promise.all([...ipcKids].map((p) => stop(p)));
    await children.killAll();
    await apns.close();
    fs.rmSync(base, { recursive: true, force: true });
  }
  return {
    figures,
    notes: {
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
      ...notes,
      loadAverageAtStart: loadAtStart,
      machineBusyPctAtStart: busyAtStart === undefined ? null : round(busyAtStart),
      otherProcessesCpuPctMax: otherCpu.length > 0 ? round(Math.max(...otherCpu)) : null,
    },
  };
}

export async function run(): Promise<void> {
  const r = await runNtfBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('ntf', r))}`);
}
