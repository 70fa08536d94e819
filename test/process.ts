// A `bin/hush.js` process for tests: spawned with a clean HUSH_* environment,
// its output collected, waited on for a printed line, killed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const HUSH = path.join(ROOT, 'bin', 'hush.js');
/** The relay's printed address (group 1), fingerprint (2) and port (3). */
export const RELAY_ADDRESS = /relay address: (hush\+ws:\/\/([A-Za-z0-9_-]{43})@127\.0\.0\.1:(\d+))/;

/** The environment without any HUSH_* setting of the caller's, plus `extra`. */
export function hushEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HUSH_')) env[k] = v;
  return { ...env, ...extra };
}

export { freePort } from '../src/server/testkit/free-port.ts';

export class HushProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Exited, and its output read to the end. */
  private closed = false;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [HUSH, ...args], { cwd: ROOT, env: hushEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.once('close', () => (this.closed = true));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits for stdout matching `re`, checked on each chunk; fails if the process exits first or time runs out. */
  waitFor(re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
    const out = this.child.stdout!;
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(this.stdout);
        if (m) done(() => resolve(m));
        return m !== null;
      };
      // 'close': stdout has ended and the process has exited, so this.stdout is complete
      const exited = () => done(() => reject(new Error(`process exited before ${re}: ${this.stderr}${this.stdout}`)));
      const timer = setTimeout(() => done(() => reject(new Error(`no ${re} within ${timeoutMs} ms: ${this.stderr}${this.stdout}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        out.off('data', check);
        this.child.off('close', exited);
        settle();
      };
      out.on('data', check);
      this.child.once('close', exited);
      if (!check() && this.closed) exited();
    });
  }

  /** Runs to the end (killed after `timeoutMs`). */
  async result(timeoutMs = 30_000) {
    const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
    try {
      return { ...(await this.exited), stdout: this.stdout, stderr: this.stderr };
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  async dispose(): Promise<void> {
    this.kill('SIGKILL');
    await this.exited;
  }
}
