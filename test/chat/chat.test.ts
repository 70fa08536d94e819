// `hush chat` as a person uses it: chat processes in real terminals
// (tmux panes), typed into and read from the screen, against a relay process
// and a notification-server process that pushes by Web Push to each chat's
// own local endpoint.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { PushReceiver } from '../../src/chat/push-receiver.ts';
import { LOCAL_RELAYS } from '../../src/ntf/config.ts';
import { encryptWebPush } from '../../src/push/webpush/ece.ts';
import { createVapidKey } from '../../src/push/webpush/vapid.ts';
import { tmpDir } from '../helpers.ts';
import { RelayProcess } from '../ntf/helpers.ts';
import { freePort, HUSH, HushProcess, ROOT, hushEnv } from '../process.ts';

const run = promisify(execFile);

interface Servers {
  relay: string;
  ntf: string;
  /** Where the chats keep their data files. */
  dir: string;
}

/** A relay process, and a notification-server process with the Web Push provider (loopback endpoints allowed). */
async function startServers(t: TestContext): Promise<Servers> {
  const relay = await RelayProcess.start();
  t.after(() => relay.stop());
  const dir = tmpDir('hush-chat-');
  const ntfDir = path.join(dir, 'ntf');
  let ntf: HushProcess | undefined;
  t.after(async () => {
    await ntf?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const init = await new HushProcess(['ntf', 'init', '--dir', ntfDir, '--port', String(await freePort())]).result();
  assert.equal(init.code, 0, `ntf init failed: ${init.stderr}${init.stdout}`);
  const vapidKeyFile = path.join(ntfDir, 'vapid.pem');
  fs.writeFileSync(vapidKeyFile, createVapidKey().privateKey, { mode: 0o600 });
  const configFile = path.join(ntfDir, 'ntf.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  const webpush = { vapidKeyFile, subject: 'mailto:test@example.org', allowPrivateNetworks: true };
  fs.writeFileSync(configFile, JSON.stringify({ ...config, webpush, metrics: { port: 0 }, relays: LOCAL_RELAYS }, null, 2));
  ntf = new HushProcess(['ntf', 'start', '--dir', ntfDir], { HUSH_LOG_LEVEL: 'warn' });
  const [, address] = await ntf.waitFor(/notification server address: (\S+)/);
  return { relay: relay.address, ntf: address!, dir };
}

let tmuxServers = 0;

/** A private tmux server (its own socket, no user config), killed after the test. */
class Tmux {
  private readonly socket = `hush-test-${process.pid}-${++tmuxServers}`;
  /** Where each pane's output is piped: its growth tells that the screen changed. */
  private readonly dir = tmpDir('hush-tmux-');
  private readonly watchers: fs.FSWatcher[] = [];

  constructor(t: TestContext) {
    t.after(async () => {
      for (const w of this.watchers) w.close();
      const socket = (await this.tmux('display-message', '-p', '#{socket_path}').catch(() => '')).trim();
      await this.tmux('kill-server').catch(() => {});
      if (socket) fs.rmSync(socket, { force: true }); // tmux leaves it behind
      fs.rmSync(this.dir, { recursive: true, force: true });
    });
  }

  async tmux(...args: string[]): Promise<string> {
    // the panes inherit the server's environment: none of the caller's HUSH_* settings
    return (await run('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { env: hushEnv({}) })).stdout;
  }

  /** `hush chat` in a new 200×50 terminal; when it exits, the pane says with which code. */
  async chat(session: string, s: Servers, data: string, name?: string): Promise<ChatPane> {
    const args = ['chat', '--data', path.join(s.dir, data), '--relay', s.relay, '--ntf', s.ntf, ...(name ? ['--name', name] : [])];
    const command = `${[process.execPath, HUSH, ...args].map(quote).join(' ')}; echo "chat exited with code $?"; exec sleep 86400`;
    await this.tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '50', '-c', ROOT, command);
    const out = path.join(this.dir, `${session}.out`);
    fs.writeFileSync(out, '');
    const watcher = fs.watch(out);
    this.watchers.push(watcher);
    await this.tmux('pipe-pane', '-t', `=${session}:`, `cat >> ${quote(out)}`);
    return new ChatPane(this, session, watcher, name);
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

class ChatPane {
  /** Exact match (=): a bare name would also match a window name by prefix. */
  private readonly target: string;
  /** Resolves at the pane's next output. */
  private output!: Promise<void>;

  constructor(
    private readonly tmux: Tmux,
    readonly session: string,
    watcher: fs.FSWatcher,
    /** The name the chat was started with. */
    readonly name?: string,
  ) {
    this.target = `=${session}:`;
    const next = () => (this.output = new Promise((r) => watcher.once('change', () => (next(), r()))));
    next();
  }

  /** Types the text as it is (-l: no key names), then Enter. */
  async type(text: string): Promise<void> {
    await this.tmux.tmux('send-keys', '-t', this.target, '-l', text);
    await this.tmux.tmux('send-keys', '-t', this.target, 'Enter');
  }

  /** Ctrl-C, Ctrl-D… */
  key(key: string): Promise<string> {
    return this.tmux.tmux('send-keys', '-t', this.target, key);
  }

  /** The screen and its scrollback, wrapped lines joined (-J), trailing blanks dropped. */
  async text(): Promise<string> {
    const raw = await this.tmux.tmux('capture-pane', '-p', '-J', '-S', '-2000', '-t', this.target);
    return raw
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n')
      .trimEnd();
  }

  /** Reads the screen, and again at each output, until `re` matches it; the error on timeout shows the screen. */
  waitForPane(re: RegExp, timeoutMs = 15_000): Promise<RegExpExecArray> {
    return this.waitForScreen(re, (text) => re.exec(text), timeoutMs);
  }

  /** Types a command and waits for its reply: one more line matching `reply` than before (`/sleep` may come twice). */
  async command(text: string, reply: RegExp): Promise<void> {
    const count = (screen: string) => screen.match(new RegExp(reply.source, 'gm'))?.length ?? 0;
    const before = count(await this.text());
    await this.type(text);
    await this.waitForScreen(reply, (screen) => count(screen) > before);
  }

  private async waitForScreen<T>(what: RegExp, found: (screen: string) => T | null | false, timeoutMs = 15_000): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(r, timeoutMs, false)));
    try {
      for (;;) {
        const output = this.output; // taken before reading: output while reading is not missed
        const text = await this.text();
        const m = found(text);
        if (m) return m;
        if (!(await Promise.race([output.then(() => true), timeout]))) throw new Error(`${this.session}: no ${what} within ${timeoutMs} ms; the pane shows:\n${await this.text()}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async notifications(): Promise<string[]> {
    return (await this.text()).split('\n').filter((l) => l.startsWith('notification '));
  }
}

/** Chats started fresh, one per name: each waits for its token to be verified through its own push endpoint. */
async function startChats<N extends string[]>(t: TestContext, s: Servers, ...names: N): Promise<{ tmux: Tmux; panes: { [K in keyof N]: ChatPane } }> {
  const tmux = new Tmux(t);
  const panes: ChatPane[] = [];
  for (const name of names) panes.push(await tmux.chat(name.toLowerCase(), s, `${name.toLowerCase()}.json`, name));
  for (const p of panes) {
    await p.waitForPane(/^chat ready$/m);
    await p.waitForPane(/^token: ACTIVE$/m);
  }
  return { tmux, panes: panes as { [K in keyof N]: ChatPane } };
}

/** The inviter invites, the acceptor pastes the link it got. */
async function connect(inviter: ChatPane, acceptor: ChatPane): Promise<void> {
  await inviter.type('/invite');
  const [, link] = await inviter.waitForPane(/^invitation: (hush-invite:[A-Za-z0-9_-]+)$/m);
  await acceptor.type(`/accept ${link}`);
  await inviter.waitForPane(new RegExp(`^connected: ${acceptor.name}$`, 'm'));
  await acceptor.waitForPane(new RegExp(`^connected: ${inviter.name}$`, 'm'));
}

// A chat is notified once a second at most (CHAT_RATE_LIMIT_MS) and the chat
// processes run on real time: so that no step waits for a second to pass, each
// chat is notified once at most on each side. A push that must show nothing
// (for a message that came online) is checked by the same chat's first
// notification after it: a notification for that push would have come first,
// or held this one back.
test('chat, then asleep: the local endpoint gets the pushes and shows notifications under each preview mode', async (t) => {
  const { panes: [alice, bob, carol] } = await startChats(t, await startServers(t), 'Alice', 'Bob', 'Carol');
  await connect(alice, bob);
  await connect(carol, bob);
  const notification = (from: string, text: string, badge: number) => `notification [message] ${from}: ${text} (badge ${badge})`;

  // online: the push for the message still comes, and must show nothing
  await alice.type('hello bob');
  await alice.waitForPane(/^you → Bob: hello bob$/m);
  await bob.waitForPane(/^Alice: hello bob$/m);

  await bob.command('/sleep', /^asleep$/);
  await alice.type('hi');
  // badge: every unread message, "hello bob" too (nothing was read)
  await bob.waitForPane(/^notification \[message\] Alice: hi \(badge 2\)$/m);
  assert.deepEqual(await bob.notifications(), [notification('Alice', 'hi', 2)], 'none for "hello bob", which came online');
  // the message the push handler fetched is in the chat as well
  await bob.waitForPane(/^Alice: hi$/m);

  // awake again: the push for Carol's message must show nothing
  await bob.command('/preview contact', /^preview: contact$/);
  await bob.command('/wake', /^awake$/);
  await carol.type('back online');
  await bob.waitForPane(/^Carol: back online$/m);
  await bob.command('/sleep', /^asleep$/);
  await carol.type('secret plan');
  await bob.waitForPane(/^notification \[message\] Carol: New message \(badge 4\)$/m);
  assert.deepEqual(await bob.notifications(), [notification('Alice', 'hi', 2), notification('Carol', 'New message', 4)], 'none for "back online", which came awake');

  // Carol asleep, under the hidden preview: neither Bob's name nor the text
  await carol.command('/preview hidden', /^preview: hidden$/);
  await carol.command('/sleep', /^asleep$/);
  await bob.command('/wake', /^awake$/);
  await bob.command('/to Carol', /^chatting with Carol$/);
  await bob.type('meet at noon');
  await carol.waitForPane(/^notification \[message\] Hush: New message \(badge 1\)$/m);
  for (const line of await bob.notifications()) assert.doesNotMatch(line, /secret plan/);
  assert.doesNotMatch((await carol.notifications()).at(-1)!, /Bob|noon/);
});

test('/quit exits with code 0; a restarted chat on the same data file has the contact and can send', async (t) => {
  const s = await startServers(t);
  const {
    tmux,
    panes: [alice, bob],
  } = await startChats(t, s, 'Alice', 'Bob');
  await connect(alice, bob);

  await bob.type('/quit');
  assert.equal((await bob.waitForPane(/^chat exited with code (\d+)$/m))[1], '0');

  const again = await tmux.chat('bob-again', s, 'bob.json'); // the name is stored
  await again.waitForPane(/^chat ready$/m);
  // the push endpoint's port was free again: same endpoint, so no new registration
  assert.doesNotMatch(await again.text(), /^token:/m);
  await again.type('/contacts');
  await again.waitForPane(/^Alice ready notifications:on unread:0$/m);
  await again.type('still here');
  await again.waitForPane(/^you → Alice: still here$/m);
  await alice.waitForPane(/^Bob: still here$/m);

  // Ctrl-C and Ctrl-D leave the same way
  await alice.key('C-c');
  assert.equal((await alice.waitForPane(/^chat exited with code (\d+)$/m))[1], '0');
  await again.key('C-d');
  assert.equal((await again.waitForPane(/^chat exited with code (\d+)$/m))[1], '0');
});

test('the push endpoint: 201 for a Web Push message, a clear 4xx for anything else; a restart keeps the endpoint', async (t) => {
  const dir = tmpDir('hush-chat-push-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'me.json.push.json');
  const got: string[] = [];
  const start = () => PushReceiver.start({ file, onPush: (d) => got.push(Buffer.from(d).toString()) });
  let r = await start();
  t.after(() => r.close());
  const sub = r.subscription();
  assert.match(sub.endpoint, /^http:\/\/127\.0\.0\.1:\d+\/push\/[A-Za-z0-9_-]{22}$/);
  const body = (text: string) =>
    encryptWebPush({ plaintext: Buffer.from(text), uaPublic: Buffer.from(sub.keys.p256dh, 'base64url'), authSecret: Buffer.from(sub.keys.auth, 'base64url') });
  const post = (o: { url?: string; method?: string; headers?: Record<string, string>; body?: Uint8Array }) =>
    fetch(o.url ?? sub.endpoint, { method: o.method ?? 'POST', headers: { 'content-encoding': 'aes128gcm', ttl: '60', ...o.headers }, ...(o.body ? { body: new Uint8Array(o.body) } : {}) });

  assert.equal((await post({ body: body('push one') })).status, 201);
  assert.deepEqual(got, ['push one']);
  assert.equal((await post({ url: sub.endpoint.replace(/\/push\/.*/, '/push/other'), body: body('x') })).status, 404);
  assert.equal((await post({ method: 'PUT', body: body('x') })).status, 405);
  assert.equal((await post({ headers: { 'content-encoding': 'aesgcm' }, body: body('x') })).status, 415);
  assert.equal((await post({ headers: { ttl: 'soon' }, body: body('x') })).status, 400);
  assert.equal((await post({ body: new Uint8Array(4097) })).status, 413);
  const tampered = body('x');
  tampered[tampered.length - 1]! ^= 1;
  const refused = await post({ body: tampered });
  assert.equal(refused.status, 400);
  assert.match(await refused.text(), /cannot decrypt/);
  assert.deepEqual(got, ['push one'], 'only the good push was handed on');

  // the side file keeps keys, port and path: the same subscription after a restart
  await r.close();
  r = await start();
  assert.deepEqual(r.subscription(), sub);
  assert.equal((await post({ body: body('push two') })).status, 201);
  assert.deepEqual(got, ['push one', 'push two']);

  // its port taken meanwhile: a new port, the same keys
  await r.close();
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(Number(new URL(sub.endpoint).port), '127.0.0.1', resolve));
  t.after(() => squatter.close());
  r = await start();
  assert.notEqual(r.subscription().endpoint, sub.endpoint);
  assert.deepEqual(r.subscription().keys, sub.keys);
});
