// Debian's ejabberd for tests: a generated ejabberd.yml, Mnesia spool and log
// in a temporary directory, listening on loopback only (c2s, the component
// port, and the HTTP API the accounts are made with). It is started the way
// ejabberdctl does (`erl ... -s ejabberd`) but as the current user and as a
// non-distributed node: no epmd, no node name or cookie, nothing shared with
// a system ejabberd, so tests may run several at once. Killed at the end, and
// halts by itself when the test process goes (its stdin closes).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../process.ts';
import { tmpDir } from '../helpers.ts';
import type { XmppTestServer } from './harness.ts';

const ERL = '/usr/bin/erl';

/** Debian's ERL_LIBS for ejabberd: the /usr/lib/<triplet> holding ejabberd-<version>/. */
function ejabberdLibs(): string | undefined {
  if (!fs.existsSync(ERL)) return undefined;
  return fs
    .readdirSync('/usr/lib', { withFileTypes: true })
    .filter((e) => e.isDirectory() && e.name.includes('-linux-'))
    .map((e) => path.join('/usr/lib', e.name))
    .find((dir) => fs.readdirSync(dir).some((name) => /^ejabberd-\d/.test(name)));
}

const LIBS = ejabberdLibs();
export const ejabberdMissing = LIBS ? undefined : 'ejabberd not installed (apt-get install ejabberd)';

/** Erlang run after ejabberd's start: halt once stdin reaches its end, i.e. when the process that spawned it is gone. */
const HALT_WITH_PARENT = 'spawn(fun() -> P = open_port({fd, 0, 1}, [eof]), receive {P, eof} -> erlang:halt(0) end end)';

/** Whether a TCP connection to the port opens (it is closed at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startEjabberd(): Promise<XmppTestServer> {
  if (!LIBS) throw new Error(ejabberdMissing);
  const dir = tmpDir('hush-ejabberd-');
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [c2s, comp, api] = [...ports] as [number, number, number];
  const password = `c-${Date.now()}`;
  const config = path.join(dir, 'ejabberd.yml');
  const log = path.join(dir, 'ejabberd.log');
  // mod_push publishes when mod_offline stores a message for an account that
  // enabled push: with no stream management (mod_stream_mgmt), a client that
  // disconnects leaves no session to hibernate, so its messages go offline at
  // once. The publish carries no summary: neither body nor sender.
  fs.writeFileSync(
    config,
    `hosts: [localhost]
loglevel: info
log_rotate_count: 0
hide_sensitive_log_data: true
auth_method: internal
auth_password_format: scram
listen:
  - port: ${c2s}
    ip: 127.0.0.1
    module: ejabberd_c2s
    starttls_required: false
  - port: ${comp}
    ip: 127.0.0.1
    module: ejabberd_service
    hosts:
      push.localhost:
        password: "${password}"
  - port: ${api}
    ip: 127.0.0.1
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
api_permissions:
  "accounts made by the test":
    who:
      ip: 127.0.0.1/32
    what: [register]
modules:
  mod_offline: {}
  mod_push:
    include_body: false
    include_sender: false
`,
  );
  // Schedulers that do not busy-wait for work: spinning, they compete with
  // everything else on a loaded machine, and the start took 12-28 s instead of 1-5 s.
  const args = ['+sbwt', 'none', '+sbwtdcpu', 'none', '+sbwtdio', 'none', '-noinput', '-mnesia', 'dir', `"${path.join(dir, 'spool')}"`, '-s', 'ejabberd', '-eval', HALT_WITH_PARENT];
  const proc = spawn(ERL, args, {
    cwd: dir,
    // Only what it needs: no NOTIFY_SOCKET of a systemd unit the tests may run in; HOME in the temporary directory.
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      ERL_LIBS: LIBS,
      EJABBERD_CONFIG_PATH: config,
      EJABBERD_LOG_PATH: log,
      CONTRIB_MODULES_PATH: path.join(dir, 'modules'),
      ERL_CRASH_DUMP_BYTES: '0',
    },
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  proc.stdin!.on('error', () => {});
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    proc.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // Ready once every listener accepts connections.
  const deadline = Date.now() + 30_000;
  let waiting = [c2s, comp, api];
  for (;;) {
    const open = await Promise.all(waiting.map(accepts));
    waiting = waiting.filter((_, i) => !open[i]);
    if (waiting.length === 0) break;
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline) {
      const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
      await stop();
      throw new Error(`ejabberd did not start (ports ${waiting.join(', ')} closed): ${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    domain: 'localhost',
    c2s,
    component: { service: `xmpp://127.0.0.1:${comp}`, domain: 'push.localhost', password },
    async register(user, pw) {
      const res = await fetch(`http://127.0.0.1:${api}/api/register`, { method: 'POST', body: JSON.stringify({ user, host: 'localhost', password: pw }) });
      if (!res.ok) throw new Error(`ejabberd register failed: ${res.status} ${await res.text()}`);
    },
    stop,
  };
}
