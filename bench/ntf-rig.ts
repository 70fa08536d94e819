// What every phase of the notification-server benchmark (bench/ntf.ts) shares:
// its settings, the server processes, CPU snapshots and the figures it reports.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { nodeCrypto } from '../src/node/crypto.ts';
import { DEFAULT_DISPATCH } from '../src/ntf/dispatch.ts';
import { LOCAL_RELAYS, NO_CREATION_LIMITS, ntfFiles } from '../src/ntf/config.ts';
import type { ApnsTestServer } from '../src/push/stand-ins/apns-server.ts';
import { BENCH_DIR, Children, HUSH, machineBusyMs, processCpuMs, round, runChild, selfCpuMs, TEST_CA_FILE, waitForLine } from './lib.ts';
import type { PushRouter } from './ntf-router.ts';

export const crypto = nodeCrypto;
export const TOPIC = 'chat.hush.bench';

/** Pushes in flight: the server's dispatch concurrency, and the raw client's streams. */
export const CONCURRENCY = Number(process.env.BENCH_NTF_CONCURRENCY ?? DEFAULT_DISPATCH.concurrency);

/**
 * Diagnosis: BENCH_NTF_APNS_CONNECTIONS sets the server's apns.connections (default 1);
 * BENCH_NTF_APNS_WINDOW=BYTES sets the APNs test server's connection receive window (its
 * default: room for the largest payload on every stream it allows, about 5 MB).
 */
export const APNS_CONNECTIONS = Number(process.env.BENCH_NTF_APNS_CONNECTIONS ?? 0);
export const APNS_WINDOW = Number(process.env.BENCH_NTF_APNS_WINDOW ?? 0);

export const NTF_ACTIVE = 'hush_ntf_subscriptions{status="ACTIVE"}';

export const hrMs = () => Number(process.hrtime.bigint()) / 1e6;
export const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const ms = (x: number) => round(x, 2);
export const fmt = (x: number) => round(x).toLocaleString('en');

export type TeamKey = { keyId: string; teamId: string; privateKey: string };

/** What the phases run on: the section's child processes, its temporary directory, the APNs test server. */
export interface Rig {
  children: Children;
  base: string;
  apns: ApnsTestServer;
  teamKey: TeamKey;
  router: PushRouter;
}

/** The section's figures and notes, in the order the phases add them. */
export class Report {
  readonly figures: Record<string, number> = {};
  readonly notes: Record<string, unknown> = {};
  /** "Other processes" CPU % of each measured window. */
  readonly otherCpu: number[] = [];

  noteOther(c: Record<string, number | undefined>): void {
    if (c.other !== undefined) this.otherCpu.push(c.other);
  }
}

// The APNs test server runs in this process: its garbage is collected before each measured run
// (a full collection of the registration phase's leftovers took ~200 ms in the middle of one).
let gcFn: (() => void) | undefined;
export function collectGarbage(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** With BENCH_NTF_CPU_PROF: the measurement windows (CLOCK_MONOTONIC µs, as in the profiles) go to DIR/phases.json. */
const phases: { name: string; startUs: number; endUs: number }[] = [];
export function phase(name: string, startMs: number, endMs: number): void {
  const dir = process.env.BENCH_NTF_CPU_PROF;
  if (!dir) return;
  phases.push({ name, startUs: Math.round(startMs * 1000), endUs: Math.round(endMs * 1000) });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'phases.json'), JSON.stringify(phases, null, 1));
}

// ---- processes ----

export interface ServerProcess {
  proc: ChildProcess;
  address: string;
  pid: number;
  metricsPort: number;
}

/** Runs `hush <args>` to its end. */
export const hush = (children: Children, args: string[]) => runChild(children, process.execPath, [HUSH, ...args], 60_000);

/** Node's arguments for a benchmark child `bench/<file>` run with tsx. */
export const tsxArgs = (file: string, ...args: string[]) => ['--import', 'tsx', path.join(BENCH_DIR, file), ...args];

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

/** `hush <what> start --dir <dir>`, profiled as `profName` (see profFlags). */
export function spawnServer(children: Children, what: 'relay' | 'ntf', profName: string, dir: string, env: Record<string, string>): ChildProcess {
  return children.spawn(process.execPath, [...profFlags(profName), HUSH, what, 'start', '--dir', dir], { env: { ...process.env, ...env } });
}

export async function startServer(
  children: Children,
  what: 'relay' | 'ntf',
  dir: string,
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<ServerProcess> {
  phase(`spawn-${what}`, hrMs(), hrMs());
  const proc = spawnServer(children, what, what, dir, { HUSH_LOG_LEVEL: 'warn', ...env });
  proc.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${what}] ${d}`));
  const m = await waitForLine(proc, /address: (\S+)\nmetrics port: (\d+)/, timeoutMs);
  proc.stdout?.on('data', () => {}); // keep the pipe drained
  logStdout(proc, what);
  return { proc, address: m[1]!, pid: proc.pid!, metricsPort: Number(m[2]) };
}

export const initRelayDir = (children: Children, dir: string) => hush(children, ['relay', 'init', '--dir', dir, '--port', '5223']);

export async function initNtfDir(children: Children, dir: string, apns: ApnsTestServer, teamKey: TeamKey): Promise<void> {
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

// ---- CPU snapshots ----

export interface CpuSnap {
  t: number;
  cpu: Record<string, number | undefined>;
  machine: number | undefined;
}

/** CPU time so far of each named process (pid), and of the machine. */
export function cpuSnap(procs: Record<string, number>): CpuSnap {
  const cpu: Record<string, number | undefined> = {};
  const t = hrMs();
  for (const [k, pid] of Object.entries(procs)) cpu[k] = pid === process.pid ? selfCpuMs() : processCpuMs(pid);
  return { t, cpu, machine: machineBusyMs() };
}

/** Each process' CPU between two snapshots, % of one core; `other`: the rest of the machine. */
export function cpuPct(a: CpuSnap, b: CpuSnap): Record<string, number | undefined> {
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

export const pctStr = (c: Record<string, number | undefined>) =>
  Object.entries(c)
    .map(([k, v]) => `${k} ${v === undefined ? '?' : v + '%'}`)
    .join(', ');
