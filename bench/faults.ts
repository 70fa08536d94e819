// Faults benchmark: do notifications keep coming when links go silent, processes
// die and the push provider misbehaves? Everything on 127.0.0.1, the product's
// defaults everywhere (journal stores without fsync, liveness and retry timings):
//   relay      a process (bin/hush.js relay start), killed with SIGKILL and started
//              again at once on its directory and port
//   NTF        a process (bin/hush.js ntf start), likewise; its apns provider (the
//              production one) talks to…
//   APNs test server   in THIS process, which can script its answers
//   proxy      a BlackholeProxy (src/server/testkit) between the NTF and the relay:
//              the subscriptions name the relay by the proxy's port (and the relay's
//              fingerprint), so every NTF↔relay connection passes through it
//   devices    200 in THIS process, each with a token registered and verified at the
//              NTF (TNEW, the verification push opened with its keys, TVFY), a queue
//              with notifier credentials at the relay, and a subscription (SNEW)
//
// A SEND counts once the relay acknowledged it (OK). Its msgId is then learnt by a
// GET on the recipient side (the queue is empty before each SEND), and it counts as
// delivered only when a push arrives whose entry, opened with the device's keys
// (openPush, then openMeta with the queue's notifier secret), carries that msgId:
// a later message's push does not rescue an earlier one. A device has at most one
// SEND waiting for its push; after PUSH_WAIT_MS the SEND counts as lost. The
// message is then ACKed (or GET+ACKed away), and the device can be sent to again.
// Senders offer RATE SENDs/s over the idle devices.
//
// Phases, in this order (each bounded):
//   provider errors  FAULT_SHARE of the APNs requests answered 429 (retry-after),
//                    500, 503, a reset stream or GOAWAY; afterwards TCHK of every
//                    token: INVALID ones were marked so wrongly
//   kill -9 NTF      KILLS kills spread over KILL_PHASE_MS of load, each restarted at once
//   kill -9 relay    likewise; and restart → first push of a message sent after it
//   blackhole        the NTF↔relay connection silenced (no FIN, no RST; new
//                    connections pass), then one SEND: seconds until its push
//   fsync            relay SEND/s with and without fsync (bench/relay-fsync.ts)
// A full run takes 2½–4 minutes: longer when pushes are lost (each is waited out).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ChildProcess } from 'node:child_process';
import { formatAddress, parseAddress } from '../src/core/address.ts';
import { CommandError } from '../src/core/command-client.ts';
import { nodeCrypto } from '../src/node/crypto.ts';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../src/node/websocket.ts';
import { NtfClient } from '../src/ntf/client.ts';
import { LOCAL_RELAYS, NO_CREATION_LIMITS, ntfFiles } from '../src/ntf/config.ts';
import { openPush } from '../src/ntf/payload.ts';
import { openMeta, RelayClient } from '../src/relay/client.ts';
import { ApnsTestServer, type ApnsRecordedPush, type ApnsReply } from '../src/push/stand-ins/apns-server.ts';
import { BlackholeProxy } from '../src/server/testkit/blackhole-proxy.ts';
import { freePort } from '../src/server/testkit/free-port.ts';
import { relaySendPerSecond } from './relay-fsync.ts';
import { NO_CREATION_LIMITS_ENV } from './relay.ts';
import { Children, HUSH, metric, metricsText, percentile, ROOT, round, runChild, sleep, table, TEST_CA_FILE, waitForLine, writeResults, type SectionResult } from './lib.ts';
import { sharedKey } from '../src/core/keys.ts';

const crypto = nodeCrypto;
const TOPIC = 'chat.hush.bench.faults';

const DEVICES = 200;
const RATE = 200;
const PUSH_WAIT_MS = 30_000;
const PROVIDER_PHASE_MS = 20_000;
const FAULT_SHARE = 0.1;
const KILL_PHASE_MS = 40_000;
const KILLS = 5;
const BLACKHOLE_WAIT_MS = 90_000;
/** The blackhole figure's target, for the table. */
const BLACKHOLE_TARGET_S = 30;
/** How long a phase may take to settle after its load: every SEND lost or delivered, every queue emptied. */
const SETTLE_MS = PUSH_WAIT_MS + 30_000;
const BODY = new TextEncoder().encode('faults benchmark message');

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const s2 = (ms: number) => round(ms / 1000, 2);

// ---- server processes that can be killed and started again ----

export class ServerProcess {
  proc: ChildProcess | undefined;
  address = '';
  port = 0;
  metricsPort = 0;
  /** performance.now() of each restart's spawn. */
  readonly restarts: number[] = [];

  constructor(
    private readonly children: Children,
    readonly what: 'relay' | 'ntf',
    readonly dir: string,
    /** Settings added to the server's environment (e.g. NO_CREATION_LIMITS_ENV). */
    private readonly env: Record<string, string> = {},
  ) {}

  /** Starts on a port restarts can take again (freePort), or the one it had; resolves once it listens. */
  async start(): Promise<void> {
    this.port ||= await freePort();
    const prefix = this.what === 'relay' ? 'HUSH_RELAY_' : 'HUSH_NTF_';
    const proc = this.children.spawn(process.execPath, [HUSH, this.what, 'start', '--dir', this.dir], {
      env: {
        ...process.env,
        HUSH_LOG_LEVEL: 'warn',
        [`${prefix}PORT`]: String(this.port),
        [`${prefix}METRICS_PORT`]: '0',
        ...this.env,
      },
    });
    this.proc = proc;
    proc.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${this.what}] ${d}`));
    const m = await waitForLine(proc, /address: (\S+)\nmetrics port: (\d+)/, 60_000);
    proc.stdout?.on('data', () => {}); // keep the pipe drained
    this.address = m[1]!;
    this.metricsPort = Number(m[2]);
    const a = parseAddress(this.address);
    if (!a.ok) throw new Error(`${this.what} printed a bad address: ${this.address}`);
    if (this.port && a.value.port !== this.port) throw new Error(`${this.what} came back on port ${a.value.port}, not ${this.port}`);
    this.port = a.value.port;
  }

  /** kill -9, and at once a new process on the same directory and port. */
  async killAndRestart(): Promise<void> {
    const p = this.proc!;
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
    this.restarts.push(performance.now());
    await this.start();
  }
}

// ---- client connections dialled again while their server is away ----

class Link<C extends { readonly connected: boolean; close(): void }> {
  private client: C | undefined;
  private dialing: Promise<C> | undefined;
  private closed = false;

  constructor(private readonly dial: () => Promise<C>) {}

  /** The connection if it is up now; otherwise undefined, and a new one is on its way. */
  now(): C | undefined {
    if (this.client?.connected) return this.client;
    this.get().catch(() => {});
    return undefined;
  }

  get(): Promise<C> {
    if (this.client?.connected) return Promise.resolve(this.client);
    return (this.dialing ??= this.redial().finally(() => (this.dialing = undefined)));
  }

  private async redial(): Promise<C> {
    for (;;) {
      if (this.closed) throw new Error('link closed');
      try {
        this.client = await this.dial();
        return this.client;
      } catch {
        await sleep(50);
      }
    }
  }

  close(): void {
    this.closed = true;
    this.client?.close();
  }
}

// ---- devices and SENDs ----

interface Device {
  token: Uint8Array;
  tokenId: Uint8Array;
  tknAuth: KeyPair;
  /** X25519(tknDh, srvDhKey): what the phone opens its pushes with. */
  secret: Uint8Array;
  rcvId: Uint8Array;
  rcvAuth: KeyPair;
  sndId: Uint8Array;
  notifierId: string;
  rcvNtfDhSecret: Uint8Array;
  /** A SEND waits for its push, or the queue is being emptied. */
  busy: boolean;
  cur: Sent | undefined;
  delivered: Set<string>;
  /** msgIds of lost SENDs and of messages emptied out of the queue. */
  gone: Set<string>;
  /**
   * Pushes of msgIds not known yet → arrival: a push can overtake the OK of its own
   * SEND (the OK waits in this busy process) or the GET that tells the msgId.
   */
  early: Map<string, number>;
}

interface Sent {
  /** When the SEND was called; its push is awaited from its OK on. */
  sentAt: number;
  msgId?: string;
  outcome?: 'delivered' | 'lost';
  pushAt?: number;
  /** GET found the queue empty: the relay lost the acknowledged message. */
  relayLost?: boolean;
  settle?: () => void;
}

class Phase {
  readonly acknowledged: Sent[] = [];
  unacknowledged = 0;
  skippedBusy = 0;
  skippedRelayDown = 0;
  duplicates = 0;
  /** Pushes for msgIds already counted lost, or emptied out of a queue (SENDs the relay never acknowledged). */
  lateOrUnacknowledged = 0;
  unmatched = 0;
  badPushes = 0;
  startedAt = performance.now();
  loadMs = 0;

  get delivered() {
    return this.acknowledged.filter((s) => s.outcome === 'delivered');
  }
  get lost() {
    return this.acknowledged.filter((s) => s.outcome !== 'delivered');
  }

  summary() {
    const lat = this.delivered.map((s) => s.pushAt! - s.sentAt).sort((a, b) => a - b);
    return {
      acknowledged: this.acknowledged.length,
      delivered: lat.length,
      lost: this.lost.length,
      lostBecauseTheRelayLostTheMessage: this.acknowledged.filter((s) => s.relayLost).length,
      unacknowledgedSends: this.unacknowledged,
      acknowledgedPerS: round((this.acknowledged.length * 1000) / Math.max(1, this.loadMs)),
      skippedEveryDeviceWaiting: this.skippedBusy,
      skippedRelayDown: this.skippedRelayDown,
      duplicates: this.duplicates,
      pushesForLostOrUnacknowledgedSends: this.lateOrUnacknowledged,
      unmatchedPushes: this.unmatched,
      badPushes: this.badPushes,
      pushLatencyMs: lat.length ? { p50: round(percentile(lat, 50), 1), p99: round(percentile(lat, 99), 1), max: round(lat.at(-1)!, 1) } : null,
    };
  }
}

class Rig {
  readonly devices: Device[] = [];
  private readonly byToken = new Map<string, Device>();
  private readonly verifications = new Map<string, (d: string) => void>();
  phase = new Phase();
  stopped = false;
  /** A bug of the benchmark's own (a relay command refused): fails the section. */
  failure: unknown;
  private cursor = 0;

  constructor(
    readonly apns: ApnsTestServer,
    readonly rcv: Link<RelayClient>,
    readonly snd: Link<RelayClient>,
  ) {
    apns.on('push', (p) => this.push(p));
  }

  add(d: Device): void {
    this.devices.push(d);
    this.byToken.set(hex(d.token), d);
  }

  /** No more SENDs to these (idle) devices; their pushes are still told apart. */
  retire(gone: Set<Device>): void {
    this.devices.splice(0, Infinity, ...this.devices.filter((d) => !gone.has(d)));
  }

  waitVerification(tokenHex: string, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.verifications.delete(tokenHex);
        reject(new Error('no verification push'));
      }, timeoutMs);
      this.verifications.set(tokenHex, (d) => {
        clearTimeout(t);
        resolve(d);
      });
    });
  }

  private push(p: ApnsRecordedPush): void {
    const t = performance.now();
    if (p.headers['apns-push-type'] !== 'alert') {
      const v = this.verifications.get(p.token);
      this.verifications.delete(p.token);
      return v?.(p.payload.d as string);
    }
    const d = this.byToken.get(p.token);
    const c = d && openPush(crypto, d.secret, Buffer.from(p.payload.d as string, 'base64url'));
    if (!d || !c || c.kind !== 'message') return void this.phase.badPushes++;
    for (const e of c.entries) {
      const meta = hex(e.notifierId) === d.notifierId ? openMeta(crypto, d.rcvNtfDhSecret, e) : undefined;
      if (!meta) this.phase.badPushes++;
      else this.pushed(d, hex(meta.msgId), t);
    }
  }

  private pushed(d: Device, msgId: string, t: number): void {
    const s = d.cur;
    if (s && s.msgId === msgId) return this.settle(d, s, t);
    if (d.delivered.has(msgId)) return void this.phase.duplicates++;
    if (d.gone.has(msgId)) return void this.phase.lateOrUnacknowledged++;
    d.early.set(msgId, t);
  }

  /** Pushes no acknowledged SEND claimed, counted in the phase. */
  countUnmatched(): void {
    for (const d of this.devices) {
      this.phase.unmatched += d.early.size;
      d.early.clear();
    }
  }

  /** Delivered at `pushAt`, or lost without it. */
  private settle(d: Device, s: Sent, pushAt?: number): void {
    if (s.outcome) return;
    s.outcome = pushAt === undefined ? 'lost' : 'delivered';
    if (pushAt !== undefined) {
      s.pushAt = pushAt;
      d.delivered.add(s.msgId!);
    } else if (s.msgId) d.gone.add(s.msgId);
    d.cur = undefined;
    s.settle?.();
  }

  /** An idle device, taken round the ring. */
  private nextIdle(): Device | undefined {
    for (let k = 0; k < this.devices.length; k++) {
      const d = this.devices[(this.cursor + k) % this.devices.length]!;
      if (!d.busy) {
        this.cursor = (this.cursor + k + 1) % this.devices.length;
        return d;
      }
    }
    return undefined;
  }

  /**
   * One SEND to `d` and its fate: delivered, lost after `waitMs`, or (no OK) not
   * counted; then the queue emptied. Resolves with the SEND if the relay acknowledged it.
   */
  async cycle(d: Device, waitMs: number): Promise<Sent | undefined> {
    const phase = this.phase;
    d.busy = true;
    try {
      const sentAt = performance.now();
      try {
        await (await this.snd.get()).send(d.sndId, BODY, { notify: true });
      } catch {
        phase.unacknowledged++;
        await this.empty(d); // it may have been stored all the same
        return undefined;
      }
      const s: Sent = { sentAt };
      phase.acknowledged.push(s);
      d.cur = s;
      const settled = new Promise<void>((r) => (s.settle = r));
      const timer = setTimeout(() => this.settle(d, s), waitMs);
      // The queue was empty: the oldest message is this one.
      while (!s.outcome && !this.stopped) {
        try {
          const m = await (await this.rcv.get()).get(d.rcvId, d.rcvAuth.privateKey);
          if (!m) {
            s.relayLost = true;
            this.settle(d, s);
          } else if (s.outcome) d.gone.add(hex(m.msgId));
          else {
            s.msgId = hex(m.msgId);
            const early = d.early.get(s.msgId);
            d.early.delete(s.msgId);
            if (early !== undefined) this.settle(d, s, early);
          }
          break;
        } catch (e) {
          if (e instanceof CommandError) throw e;
          await sleep(50);
        }
      }
      if (!this.stopped) await settled;
      clearTimeout(timer);
      if (s.outcome === 'delivered') {
        try {
          await (await this.rcv.get()).ack(d.rcvId, d.rcvAuth.privateKey, Buffer.from(s.msgId!, 'hex'));
          return s;
        } catch {}
      }
      await this.empty(d);
      return s;
    } finally {
      d.busy = false;
    }
  }

  /** GET+ACK until the queue is empty. */
  private async empty(d: Device): Promise<void> {
    while (!this.stopped) {
      try {
        const c = await this.rcv.get();
        const m = await c.get(d.rcvId, d.rcvAuth.privateKey);
        if (!m) return;
        d.gone.add(hex(m.msgId));
        await c.ack(d.rcvId, d.rcvAuth.privateKey, m.msgId);
      } catch {
        await sleep(50);
      }
    }
  }

  /** RATE SENDs/s over idle devices for `ms`, then waits until every device is idle again. */
  async load(phase: Phase, ms: number): Promise<void> {
    this.phase = phase;
    const t0 = (phase.startedAt = performance.now());
    let n = 0;
    while (performance.now() - t0 < ms) {
      const due = Math.floor(((performance.now() - t0) * RATE) / 1000);
      for (; n < due; n++) {
        if (!this.snd.now()) {
          phase.skippedRelayDown++;
          continue;
        }
        const d = this.nextIdle();
        if (d) this.cycle(d, PUSH_WAIT_MS).catch((e) => (this.failure ??= e));
        else phase.skippedBusy++;
      }
      await sleep(5);
    }
    phase.loadMs = performance.now() - t0;
    const deadline = performance.now() + SETTLE_MS;
    while (this.devices.some((d) => d.busy)) {
      if (performance.now() > deadline) throw new Error(`devices still waiting ${SETTLE_MS / 1000} s after the load`);
      await sleep(50);
    }
    this.countUnmatched();
    if (this.failure) throw this.failure;
  }

  /** Ends every wait: what is outstanding counts as lost. */
  stop(): void {
    this.stopped = true;
    for (const d of this.devices) if (d.cur) this.settle(d, d.cur);
    this.rcv.close();
    this.snd.close();
  }
}

// ---- set-up ----

async function initDirs(children: Children, base: string, apns: ApnsTestServer) {
  const relayDir = path.join(base, 'relay');
  const ntfDir = path.join(base, 'ntf');
  const hush = (args: string[]) => runChild(children, process.execPath, [HUSH, ...args], 60_000);
  // the port is a placeholder: the first start takes a free one (HUSH_RELAY_PORT=0)
  await hush(['relay', 'init', '--dir', relayDir, '--port', '5223']);
  await hush(['ntf', 'init', '--dir', ntfDir]);
  const team = apns.keys.create();
  const keyFile = path.join(ntfDir, 'apns-key.p8');
  fs.writeFileSync(keyFile, team.privateKey, { mode: 0o600 });
  const file = ntfFiles(ntfDir).config;
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  config.apns = { host: apns.url, keyId: team.keyId, teamId: team.teamId, keyFile, topic: TOPIC, serves: 'apns', caFile: TEST_CA_FILE };
  config.relays = LOCAL_RELAYS;
  config.creation = NO_CREATION_LIMITS;
  fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
  return { relayDir, ntfDir };
}

/** TNEW, the verification push opened, TVFY; a queue with notifier keys; SNEW naming the relay at `relayAddress`. */
async function setUpDevices(rig: Rig, ntf: ServerProcess, relayAddress: string): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: 4 }, () => NtfClient.connect(ntf.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 })),
  );
  const relay = await rig.rcv.get();
  try {
    let next = 0;
    const worker = async (c: NtfClient) => {
      while (next < DEVICES) {
        next++;
        const token = crypto.randomBytes(32);
        const tknAuth = crypto.x25519KeyPair();
        const tknDh = crypto.x25519KeyPair();
        const verification = rig.waitVerification(hex(token), 30_000);
        const { tokenId, srvDhKey } = await c.registerToken({ provider: 'apns', token }, tknAuth, tknDh.publicKey);
        const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
        const v = openPush(crypto, secret, Buffer.from(await verification, 'base64url'));
        if (v?.kind !== 'verification') throw new Error('verification push did not open');
        await c.verifyToken(tokenId, tknAuth.privateKey, v.code);
        const rcvAuth = crypto.x25519KeyPair();
        const ntfAuth = crypto.x25519KeyPair();
        const ntfDh = crypto.x25519KeyPair();
        const ids = await relay.newQueue(rcvAuth, crypto.x25519KeyPair().publicKey, { ntfAuthKey: ntfAuth.publicKey, rcvNtfDhKey: ntfDh.publicKey });
        await c.createSubscription(tokenId, tknAuth.privateKey, relayAddress, ids.ntf!.notifierId, ntfAuth.privateKey);
        rig.add({
          token,
          tokenId,
          tknAuth,
          secret,
          rcvId: ids.rcvId,
          rcvAuth,
          sndId: ids.sndId,
          notifierId: hex(ids.ntf!.notifierId),
          rcvNtfDhSecret: sharedKey(crypto, ntfDh.privateKey, ids.ntf!.srvNtfDhKey, 'relay notifier')!,
          busy: false,
          cur: undefined,
          delivered: new Set(),
          gone: new Set(),
          early: new Map(),
        });
      }
    };
    await Promise.all(clients.flatMap((c) => [worker(c), worker(c), worker(c), worker(c)]));
    const deadline = performance.now() + 30_000;
    while (metric(await metricsText(ntf.metricsPort), 'hush_ntf_subscriptions{status="ACTIVE"}') < DEVICES) {
      if (performance.now() > deadline) throw new Error('subscriptions not ACTIVE within 30 s');
      await sleep(50);
    }
  } finally {
    for (const c of clients) c.close();
  }
}

/** Token statuses by TCHK, counted; and the devices whose token is INVALID. */
async function tokenStatuses(rig: Rig, ntf: ServerProcess) {
  const c = await NtfClient.connect(ntf.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 30_000 });
  try {
    const counts: Record<string, number> = {};
    const invalid = new Set<Device>();
    for (const d of rig.devices) {
      const s = await c.checkToken(d.tokenId, d.tknAuth.privateKey);
      const k = s.status === 'INVALID' ? `INVALID ${s.reason}` : s.status;
      counts[k] = (counts[k] ?? 0) + 1;
      if (s.status === 'INVALID') invalid.add(d);
    }
    return { counts, invalid };
  } finally {
    c.close();
  }
}

/** For each restart: seconds from its spawn to the first push of a message sent after it (null: none came). */
function restartToPush(phase: Phase, restarts: number[]): (number | null)[] {
  return restarts.map((t) => {
    const first = Math.min(...phase.delivered.filter((s) => s.sentAt >= t).map((s) => s.pushAt!));
    return Number.isFinite(first) ? s2(first - t) : null;
  });
}

/** The load with KILLS kill -9 + restarts of `proc` spread over it. */
async function killPhase(rig: Rig, proc: ServerProcess): Promise<Phase> {
  const phase = new Phase();
  const load = rig.load(phase, KILL_PHASE_MS);
  for (let k = 0; k < KILLS; k++) {
    await sleep(Math.max(0, phase.startedAt + ((k + 0.5) * KILL_PHASE_MS) / KILLS - performance.now()));
    await proc.killAndRestart();
  }
  await load;
  return phase;
}


// ---- the section ----

const nullMax = (xs: (number | null)[]) => (xs.some((x) => x === null) || xs.length === 0 ? null : Math.max(...(xs as number[])));
const show = (x: number | null, unit = '') => (x === null ? 'never' : `${x}${unit}`);

export async function runFaultsBench(): Promise<SectionResult> {
  const children = new Children();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hush-bench-faults-'));
  const figures: Record<string, number | null> = {};
  const notes: Record<string, unknown> = {};
  const t0 = performance.now();
  const apns = await ApnsTestServer.start({ topics: [TOPIC], record: false });
  let proxy: BlackholeProxy | undefined;
  let rig: Rig | undefined;
  const rows: (string | number)[][] = [];
  try {
    const { relayDir, ntfDir } = await initDirs(children, base, apns);
    const relay = new ServerProcess(children, 'relay', relayDir, NO_CREATION_LIMITS_ENV);
    const ntf = new ServerProcess(children, 'ntf', ntfDir);
    await relay.start();
    await ntf.start();
    proxy = new BlackholeProxy(relay.port);
    await proxy.listen();
    const via = parseAddress(relay.address);
    if (!via.ok) throw new Error(via.error);
    const proxied = formatAddress({ ...via.value, port: proxy.port });
    const dial = () => RelayClient.connect(relay.address, { webSocket: nodeWebSocket(), crypto, timeoutMs: 10_000 });
    rig = new Rig(apns, new Link(dial), new Link(dial));
    await setUpDevices(rig, ntf, proxied);
    notes.setupS = s2(performance.now() - t0);
    const loadAtStart = os.loadavg().map((x) => round(x, 2));

    // ---- provider errors ----
    const faults: Record<string, number> = {};
    const FAULTS: [string, ApnsReply][] = [
      ['429', { status: 429, reason: 'TooManyRequests', retryAfter: 1 }],
      ['500', { status: 500, reason: 'InternalServerError' }],
      ['503', { status: 503, reason: 'ServiceUnavailable' }],
      ['stream reset', { reset: true }],
      ['GOAWAY', { goaway: true, reason: 'Shutdown' }],
    ];
    apns.replyRandomly(FAULT_SHARE, () => {
      const [name, reply] = FAULTS[Math.floor(Math.random() * FAULTS.length)]!;
      faults[name] = (faults[name] ?? 0) + 1;
      return reply;
    });
    let requests = 0;
    const countRequest = () => requests++;
    apns.on('request', countRequest);
    const pe = new Phase();
    await rig.load(pe, PROVIDER_PHASE_MS);
    apns.clearReplies();
    apns.off('request', countRequest);
    const retries = metric(await metricsText(ntf.metricsPort), 'hush_ntf_push_retries_total{provider="apns"}');
    const statuses = await tokenStatuses(rig, ntf);
    const wronglyInvalid = statuses.invalid.size;
    // A device whose token went INVALID gets no pushes any more: it would count as lost in every later phase.
    rig.retire(statuses.invalid);
    const peS = pe.summary();
    Object.assign(figures, {
      provider_errors_lost: peS.lost,
      provider_errors_wrongly_invalid: wronglyInvalid,
      provider_errors_duplicates: peS.duplicates,
      provider_errors_delivered: peS.delivered,
      provider_errors_acknowledged: peS.acknowledged,
    });
    notes.providerErrors = { ...peS, apnsRequests: requests, faults, ntfPushRetries: retries, tokenStatuses: statuses.counts, devicesLeftForLaterPhases: rig.devices.length };
    rows.push(
      ['provider errors: lost', peS.lost, '0'],
      ['provider errors: tokens wrongly INVALID', wronglyInvalid, '0'],
      ['provider errors: duplicate pushes (allowed)', peS.duplicates, ''],
      ['provider errors: delivered / acknowledged', `${peS.delivered} / ${peS.acknowledged}`, ''],
    );

    // ---- kill -9 NTF ----
    const kn = await killPhase(rig, ntf);
    const knS = kn.summary();
    const ntfToPush = restartToPush(kn, ntf.restarts);
    Object.assign(figures, { kill9_ntf_lost: knS.lost, kill9_ntf_delivered: knS.delivered, kill9_ntf_acknowledged: knS.acknowledged });
    notes.kill9Ntf = { ...knS, restartToPushS: ntfToPush };
    rows.push(
      [`kill -9 NTF ×${KILLS}: lost`, knS.lost, '0'],
      ['kill -9 NTF: delivered / acknowledged', `${knS.delivered} / ${knS.acknowledged}`, ''],
      ['kill -9 NTF: restart → push s (each)', ntfToPush.map((x) => show(x)).join(' '), ''],
    );

    // ---- kill -9 relay ----
    const kr = await killPhase(rig, relay);
    const krS = kr.summary();
    const relayToPush = restartToPush(kr, relay.restarts);
    Object.assign(figures, {
      kill9_relay_lost: krS.lost,
      kill9_relay_delivered: krS.delivered,
      kill9_relay_acknowledged: krS.acknowledged,
      relay_restart_to_push_s: nullMax(relayToPush),
    });
    notes.kill9Relay = { ...krS, restartToPushS: relayToPush, relayRestartToPushIs: 'the slowest of the restarts' };
    rows.push(
      [`kill -9 relay ×${KILLS}: lost`, krS.lost, '0'],
      ['kill -9 relay: delivered / acknowledged', `${krS.delivered} / ${krS.acknowledged}`, ''],
      ['relay restart → push s (slowest; each)', `${show(nullMax(relayToPush))} (${relayToPush.map((x) => show(x)).join(' ')})`, ''],
    );

    // ---- blackhole ----
    const bh = new Phase();
    rig.phase = bh;
    const silenced = proxy.blackhole();
    const sent = await rig.cycle(rig.devices[0]!, BLACKHOLE_WAIT_MS);
    const bhS = sent?.outcome === 'delivered' ? s2(sent.pushAt! - sent.sentAt) : null;
    figures.blackhole_to_push_s = bhS;
    notes.blackhole = {
      connectionsSilenced: silenced,
      acknowledged: sent !== undefined,
      waitedAtMostS: BLACKHOLE_WAIT_MS / 1000,
      ntfRelayLinksUpAfter: metric(await metricsText(ntf.metricsPort), 'hush_ntf_relay_links{state="up"}'),
      proxyConnectionsAfter: proxy.connections,
    };
    rows.push([
      'blackholed NTF↔relay link: SEND → push s',
      bhS === null ? `never (waited ${BLACKHOLE_WAIT_MS / 1000} s): NOT MET` : `${bhS}${bhS <= BLACKHOLE_TARGET_S ? '' : ': NOT MET'}`,
      `≤ ${BLACKHOLE_TARGET_S}`,
    ]);
    rig.countUnmatched();
    notes.loadAverage = { atStart: loadAtStart, atEnd: os.loadavg().map((x) => round(x, 2)) };
  } finally {
    rig?.stop();
    await proxy?.close();
    await children.killAll();
    await apns.close();
    fs.rmSync(base, { recursive: true, force: true });
  }

  console.log(
    `relay and notification server: processes (hush … start, journal stores, the product's defaults); APNs test server and ${DEVICES} devices in this process;\n` +
      `~${RATE} SENDs/s offered over idle devices; a SEND counts once acknowledged, delivered once a push carrying its msgId arrives, lost after ${PUSH_WAIT_MS / 1000} s\n`,
  );
  console.log(table(['figure', 'result', 'target'], rows) + '\n');

  // ---- fsync: the relay alone, after the stack is gone ----
  const on = await relaySendPerSecond({ fsync: true });
  const off = await relaySendPerSecond({ fsync: false });
  Object.assign(figures, {
    relay_send_per_s_fsync_on: round(on),
    relay_send_per_s_fsync_off: round(off),
    relay_send_fsync_on_vs_off: round(on / off, 3),
  });
  console.log(
    table(
      ['relay alone (bench/relay-fsync.ts)', 'SENDs/s acknowledged'],
      [
        ['fsync on', round(on)],
        ['fsync off', round(off)],
        ['on ÷ off', round(on / off, 3)],
      ],
    ),
  );
  console.log(`\nfaults section: ${s2(performance.now() - t0)} s`);
  return {
    figures,
    notes: {
      processes:
        'relay: process (bin/hush.js relay start, journal, defaults); notification server: process (bin/hush.js ntf start, journal, defaults, apns → APNs test server); ' +
        'BlackholeProxy between them (the subscriptions name the relay at the proxy port); APNs test server and devices in the benchmark process',
      devices: DEVICES,
      offeredSendsPerS: RATE,
      pushWaitS: PUSH_WAIT_MS / 1000,
      faultShare: FAULT_SHARE,
      kills: KILLS,
      killPhaseS: KILL_PHASE_MS / 1000,
      providerPhaseS: PROVIDER_PHASE_MS / 1000,
      ...notes,
    },
  };
}

export async function run(): Promise<void> {
  const r = await runFaultsBench();
  console.log(`wrote ${path.relative(ROOT, writeResults('faults', r))}`);
}
