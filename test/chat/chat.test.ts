// `hush chat` as a person uses it: two chat processes in real terminals
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
import { RelayProcess, sleep } from '../ntf/helpers.ts';
import { freePort, HUSH, HushProcess, ROOT, hushEnv } from '../process.ts';

const run = promisify(execFile);

/** A chat's notifications are rate limited to one per second (CHAT_RATE_LIMIT_MS); wait a little longer. */
const PAST_RATE_LIMIT_MS = 1200;

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

  constructor(t: TestContext) {
    t.after(async () => {
      const socket = (await this.tmux('display-message', '-p', '#{socket_path}').catch(() => '')).trim();
      await this.tmux('kill-server').catch(() => {});
      if (socket) fs.rmSync(socket, { force: true }); // tmux leaves it behind
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
    return new ChatPane(this, session);
  }
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

class ChatPane {
  /** Exact match (=): a bare name would also match a window name by prefix. */
  private readonly target: string;

  constructor(
    private readonly tmux: Tmux,
    readonly session: string,
  ) {
    this.target = `=${session}:`;
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

  /** Polls the screen until `re` matches it; the error on timeout shows the screen. */
  async waitForPane(re: RegExp, timeoutMs = 15_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.text();
      const m = re.exec(text);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`${this.session}: no ${re} within ${timeoutMs} ms; the pane shows:\n${text}`);
      await sleep(100);
    }
  }

  async notifications(): Promise<string[]> {
    return (await this.text()).split('\n').filter((l) => l.startsWith('notification '));
  }
}

/** Both started fresh: each waits for its token to be verified through its own push endpoint. */
async function startPair(t: TestContext, s: Servers): Promise<{ tmux: Tmux; alice: ChatPane; bob: ChatPane }> {
  const tmux = new Tmux(t);
  const alice = await tmux.chat('alice', s, 'alice.json', 'Alice');
  const bob = await tmux.chat('bob', s, 'bob.json', 'Bob');
  for (const p of [alice, bob]) {
    await p.waitForPane(/^chat ready$/m);
    await p.waitForPane(/^token: ACTIVE$/m);
  }
  return { tmux, alice, bob };
}

/** Alice invites, Bob pastes the link she got. */
async function connect(alice: ChatPane, bob: ChatPane): Promise<void> {
  await alice.type('/invite');
  const [, link] = await alice.waitForPane(/^invitation: (hush-invite:[A-Za-z0-9_-]+)$/m);
  await bob.type(`/accept ${link}`);
  await alice.waitForPane(/^connected: Bob$/m);
  await bob.waitForPane(/^connected: Alice$/m);
}

test('chat, then Bob asleep: his local endpoint gets the pushes and shows notifications under each preview mode', async (t) => {
  const { alice, bob } = await startPair(t, await startServers(t));
  await connect(alice, bob);

  // online: the only contact is the current chat on both sides
  await alice.type('hello bob');
  await alice.waitForPane(/^you → Bob: hello bob$/m);
  await bob.waitForPane(/^Alice: hello bob$/m);
  assert.deepEqual(await bob.notifications(), [], 'an online chat shows no notifications');

  await bob.type('/sleep');
  await bob.waitForPane(/^asleep$/m);
  await sleep(PAST_RATE_LIMIT_MS);
  await alice.type('hi');
  // badge: every unread message, "hello bob" too (nothing was read)
  await bob.waitForPane(/^notification \[message\] Alice: hi \(badge 2\)$/m);
  // the message the push handler fetched is in the chat as well
  await bob.waitForPane(/^Alice: hi$/m);

  await bob.type('/preview contact');
  await bob.waitForPane(/^preview: contact$/m);
  await sleep(PAST_RATE_LIMIT_MS);
  await alice.type('secret plan');
  await bob.waitForPane(/^notification \[message\] Alice: New message \(badge 3\)$/m);
  for (const line of await bob.notifications()) assert.doesNotMatch(line, /secret plan/);

  await bob.type('/preview hidden');
  await bob.waitForPane(/^preview: hidden$/m);
  await sleep(PAST_RATE_LIMIT_MS);
  await alice.type('meet at noon');
  await bob.waitForPane(/^notification \[message\] Hush: New message \(badge 4\)$/m);
  assert.doesNotMatch((await bob.notifications()).at(-1)!, /Alice|noon/);

  await bob.type('/wake');
  await bob.waitForPane(/^awake$/m);
  const shown = await bob.notifications();
  assert.equal(shown.length, 3);
  await sleep(PAST_RATE_LIMIT_MS);
  await alice.type('back online');
  await bob.waitForPane(/^Alice: back online$/m);
  await sleep(PAST_RATE_LIMIT_MS); // the push for it still comes; it must show nothing
  assert.deepEqual(await bob.notifications(), shown);
});

test('/quit exits with code 0; a restarted chat on the same data file has the contact and can send', async (t) => {
  const s = await startServers(t);
  const { tmux, alice, bob } = await startPair(t, s);
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
