// Debian's Prosody for tests and the XMPP benchmark: a generated config in a
// temporary directory, listening on loopback only (c2s and the component
// port), accounts made with prosodyctl, run in the foreground and killed at
// the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../server/testkit/free-port.ts';
import type { XmppTestServer } from './harness.ts';

export const PROSODY = ['/usr/bin/prosody', '/usr/bin/prosodyctl'];
export const prosodyMissing = PROSODY.some((p) => !fs.existsSync(p)) ? 'prosody not installed (apt-get install prosody prosody-modules)' : undefined;

/** Prosody started by a test; `http`: its HTTP port, when started with `http` (mod_unified_push's endpoints); `pid` for its CPU time. */
export type Prosody = XmppTestServer & { http?: number; pid: number };

export async function startProsody(o: { modules?: string[]; http?: boolean } = {}): Promise<Prosody> {
  const modules = o.modules ?? ['cloud_notify'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-prosody-'));
  const [c2s, comp] = [await freePort(), await freePort()];
  const http = o.http ? await freePort() : undefined;
  const password = `c-${Date.now()}`;
  const config = path.join(dir, 'prosody.cfg.lua');
  fs.mkdirSync(path.join(dir, 'data'));
  fs.mkdirSync(path.join(dir, 'certs'));
  fs.writeFileSync(
    config,
    `run_as_root = true
pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
certificates = "${dir}/certs"
daemonize = false
log = { { levels = { min = "info" }, to = "file", filename = "${dir}/prosody.log" } }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "offline"; ${modules.map((m) => `"${m}"`).join('; ')} }
modules_disabled = { "s2s" }
c2s_ports = { ${c2s} }
c2s_interfaces = { "127.0.0.1" }
component_ports = { ${comp} }
component_interfaces = { "127.0.0.1" }
s2s_ports = {}
http_ports = { ${http ?? ''} }
http_interfaces = { "127.0.0.1" }
https_ports = {}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
-- throwaway accounts on loopback: Prosody's 10,000 SCRAM iterations cost xmpp.js ~0.4 s of its event loop per login
default_iteration_count = 100
VirtualHost "localhost"
Component "push.localhost"
  component_secret = "${password}"
`,
  );
  const proc: ChildProcess = spawn('/usr/bin/prosody', ['--config', config, '-F'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const log = path.join(dir, 'prosody.log');
  // Ready once both services are activated (its log says so).
  const deadline = Date.now() + 15_000;
  for (;;) {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    const up = [`'c2s' on [127.0.0.1]:${c2s}`, `'component' on [127.0.0.1]:${comp}`, ...(http ? [`'http' on [127.0.0.1]:${http}`] : [])];
    if (up.every((line) => text.includes(line))) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`prosody did not start: ${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    domain: 'localhost',
    c2s,
    pid: proc.pid!,
    ...(http ? { http } : {}),
    component: { service: `xmpp://127.0.0.1:${comp}`, domain: 'push.localhost', password },
    async register(user, pw) {
      const r = spawnSync('/usr/bin/prosodyctl', ['--config', config, 'register', user, 'localhost', pw], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`prosodyctl register failed: ${r.stderr}${r.stdout}`);
    },
    async stop() {
      proc.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
