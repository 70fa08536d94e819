// What a fuzz run counts: inputs per server (each server has its share of
// the run's inputs, whatever the others' speed), how each ended (answered,
// closed, hung), the first failures, a crash, and how deep the inputs went
// (what the sessions set up, what the servers answered).
import type { ServerName, ServerProcess } from './servers.ts';
import type { Outcome } from './session.ts';

/** Shares of the inputs per server. */
const SHARES: Record<ServerName, number> = { relay: 0.5, ntf: 0.4, gateway: 0.1 };
const MAX_FAILURES = 20;
/** Inputs kept per server for a crash report. */
const RECENT = 64;

export interface Failure {
  server: ServerName;
  kind: string;
  stream: string;
  detail: string;
  input: string;
}

export class Tally {
  readonly started = performance.now();
  readonly deadline: number;
  stopped = false;
  /** The servers are being stopped: their exits are no crashes. */
  finished = false;
  hangs = 0;
  badReplies = 0;
  readonly failures: Failure[] = [];
  readonly left: Record<ServerName, number>;
  readonly stats: Record<ServerName, { inputs: number; answered: number; closed: number; hangs: number }>;
  /** The last inputs sent to each server, for a crash report. */
  private readonly recent: Record<ServerName, Uint8Array[]> = { relay: [], ntf: [], gateway: [] };
  crash: { server: ServerName; exit: string; output: string; lastInputs: string[] } | undefined;
  /** What the servers sent back, by tag. */
  readonly answers: Record<string, Record<string, number>> = {};
  /** Sessions set up, and what their set-ups made (queues, verified tokens…): how deep the fuzzed commands reach. */
  readonly setups: Record<string, Record<string, number>> = {};

  constructor(
    inputs: number,
    seconds: number,
    private readonly hangMs: number,
  ) {
    this.deadline = this.started + seconds * 1000;
    const relay = Math.round(inputs * SHARES.relay);
    const ntf = Math.round(inputs * SHARES.ntf);
    this.left = { relay, ntf, gateway: inputs - relay - ntf };
    const zero = () => ({ inputs: 0, answered: 0, closed: 0, hangs: 0 });
    this.stats = { relay: zero(), ntf: zero(), gateway: zero() };
  }

  running(server: ServerName): boolean {
    if (this.stopped || this.left[server] <= 0) return false;
    if (performance.now() > this.deadline) this.stopped = true;
    return !this.stopped;
  }

  /** Takes up to `n` inputs of `server`'s share; how many it may send. */
  take(server: ServerName, n: number): number {
    const k = Math.min(n, this.left[server]);
    this.left[server] -= k;
    return k;
  }

  /** Counts `inputs` as answered, closed or hung (`unanswered` of them got no answer though the connection went on). */
  record(server: ServerName, inputs: Uint8Array[], outcome: Outcome, unanswered: number, what: { kind: string; stream: string; state?: string | undefined }): void {
    const s = this.stats[server];
    s.inputs += inputs.length;
    const recent = this.recent[server];
    recent.push(...inputs.slice(-RECENT));
    if (recent.length > RECENT) recent.splice(0, recent.length - RECENT);
    const hung = outcome === 'hang' ? inputs.length : unanswered;
    if (outcome === 'closed') s.closed += inputs.length;
    else s.answered += inputs.length - hung;
    if (hung === 0) return;
    s.hangs += hung;
    this.hangs += hung;
    const detail =
      outcome === 'hang'
        ? `no answer or close within ${this.hangMs / 1000} s${what.state ? ` (${what.state})` : ''}`
        : `${unanswered} of ${inputs.length} transmissions had no answer before the sentinel's`;
    this.fail({ server, kind: what.kind, stream: what.stream, detail, input: hex(Buffer.concat(inputs.slice(0, 8))) });
  }

  /** Merges what a session set up and what came back on it. */
  session(server: ServerName, depth: Record<string, number> | undefined, tags: ReadonlyMap<string, number>): void {
    if (depth) {
      const s = (this.setups[server] ??= { sessions: 0 });
      s.sessions!++;
      for (const [k, v] of Object.entries(depth)) s[k] = (s[k] ?? 0) + v;
    }
    const answers = (this.answers[server] ??= {});
    for (const [tag, n] of tags) answers[tag] = (answers[tag] ?? 0) + n;
  }

  fail(f: Failure): void {
    if (this.failures.length < MAX_FAILURES) this.failures.push(f);
    console.error(`FAIL ${f.server} ${f.kind} (stream ${f.stream}): ${f.detail}`);
  }

  crashed(p: ServerProcess): void {
    if (this.finished || this.crash) return;
    this.stopped = true;
    this.crash ??= {
      server: p.name,
      exit: `code ${p.exit?.code} signal ${p.exit?.signal}`,
      output: p.output,
      lastInputs: this.recent[p.name].map(hex),
    };
    console.error(`CRASH: the ${p.name} exited (${this.crash.exit}):\n${p.output}`);
  }

  get progress(): string {
    const { relay, ntf, gateway } = this.stats;
    return `${this.inputs.toLocaleString('en')} inputs (relay ${relay.inputs}, ntf ${ntf.inputs}, gateway ${gateway.inputs}), ${this.hangs} hangs`;
  }

  get inputs(): number {
    return this.stats.relay.inputs + this.stats.ntf.inputs + this.stats.gateway.inputs;
  }
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, 512)).toString('hex');
