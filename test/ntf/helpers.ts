// Fixtures for notification-server tests: an NTF server on loopback with an
// in-process capture push provider and an optional controllable clock, a
// `device()` that registers and verifies a token the way a phone would (by
// opening the verification push), and a real relay *process* that can be
// killed with SIGKILL and restarted on the same directory and port.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { nodeCrypto } from '../../src/node/crypto.ts';
import type { CryptoSuite, KeyPair } from '../../src/core/crypto/suite.ts';
import { nodeWebSocket } from '../../src/node/websocket.ts';
import { NtfClient, NtfCommandError } from '../../src/ntf/client.ts';
import { LOCAL_RELAYS } from '../../src/ntf/config.ts';
import type { DispatchOptions } from '../../src/ntf/dispatch.ts';
import { decodeResponse, type NtfResponse, type SubStatus, type TokenStatus } from '../../src/ntf/protocol.ts';
import type { DeviceToken, Provider, PushKind } from '../../src/push/device.ts';
import { openPush, type PushContent } from '../../src/ntf/payload.ts';
import { NtfServer, type NtfServerOptions } from '../../src/ntf/server.ts';
import { MemoryNtfStore } from '../../src/ntf/store/memory.ts';
import type { NtfStore } from '../../src/ntf/store/store.ts';
import type { Timers } from '../../src/ntf/timers.ts';
import type { PushProvider, PushRequest } from '../../src/push/provider.ts';
import { CaptureProvider, forDevice, type CaptureAttempt } from '../../src/push/stand-ins/capture-provider.ts';

export { CaptureProvider, forDevice, HushProcess };
import { freePort, HushProcess, RELAY_ADDRESS } from '../process.ts';
import { connect, crypto, MANY_QUEUES, newQueue, silent, startRelay, tmpDir, type Queue, type TestClient, type TestRelay } from '../helpers.ts';
import { sharedKey } from '../../src/core/keys.ts';

/**
 * Waits until `cond` (sync or async) is truthy, for states no event announces
 * (another process, a peer's counters): checked again every 10 ms, an interval
 * that decides no outcome; throws after `timeoutMs`.
 */
export async function until<T>(what: string, cond: () => T | Promise<T>, timeoutMs = 5000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** How many of `command` the relay has received (its commands counter). */
export const relayCommands = async (metrics: { commands: { get(): Promise<{ values: Array<{ labels: Record<string, unknown>; value: number }> }> } }, command: string) =>
  (await metrics.commands.get()).values.find((v) => v.labels.command === command)?.value ?? 0;

export const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
export const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

// ---------------------------------------------------------------------------
// Controllable clock
// ---------------------------------------------------------------------------

/**
 * A clock a test moves by hand. As the server's `timers` too, the delays set
 * on it (push retries, relay reconnects) run only when advance() passes them.
 */
export class TestClock implements Timers {
  private timers: Array<{ at: number; fn: () => void }> = [];
  private waiters: Array<() => void> = [];
  constructor(public t = Date.now()) {}
  now = () => this.t;

  /** Moves the time on by `ms`, running the timers that fall due, in order, each at its time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }

  set = (fn: () => void, ms: number): unknown => {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    for (const w of this.waiters.splice(0)) w();
    return timer;
  };

  clear = (timer: unknown): void => {
    this.timers = this.timers.filter((x) => x !== timer);
  };

  /** The delays of the timers waiting, soonest first. */
  get pending(): number[] {
    return this.timers.map((x) => x.at - this.t).sort((a, b) => a - b);
  }

  /** Resolves once a timer waits (at once if one does): a retry was scheduled. */
  untilPending(what: string, timeoutMs = 5000): Promise<void> {
    if (this.timers.length > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

// ---------------------------------------------------------------------------
// NTF server
// ---------------------------------------------------------------------------

const PLENTY = { burst: 1_000_000, perMinute: 1_000_000 };
/** TNEW and SNEW limits out of the way, for tests that make many tokens or subscriptions from loopback. */
export const MANY_CREATIONS: NtfServerOptions['creation'] = {
  tokens: { perConnection: PLENTY, perAddress: PLENTY },
  subscriptions: { perConnection: PLENTY, perAddress: PLENTY },
  maxSubscriptionsPerToken: 1_000_000,
};

/** startNtf's longest relay reconnect delay: with clockTimers, advancing by it runs the next attempt. */
export const RECONNECT_MAX_MS = 500;

export interface StartNtfOptions {
  /** Default: one CaptureProvider serving `test`. */
  providers?: PushProvider[];
  /** Default: a new MemoryNtfStore. */
  store?: NtfStore;
  clock?: TestClock;
  /** Runs the push retry and relay reconnect delays on `clock` (advance() runs them); default: real timers. */
  clockTimers?: boolean;
  identity?: KeyPair;
  serviceKey?: KeyPair;
  log?: Logger;
  port?: number;
  dispatch?: Partial<DispatchOptions>;
  subscriber?: NtfServerOptions['subscriber'];
  /** Default: LOCAL_RELAYS (the test relays are on loopback). */
  relays?: NtfServerOptions['relays'];
  /** Default: an hour, so only explicit runCron() calls send check pushes. */
  cronIntervalMs?: number;
  /** Default: nodeCrypto. */
  crypto?: CryptoSuite;
  /** Default: the server's (DEFAULT_NTF_CREATION). */
  creation?: NtfServerOptions['creation'];
  metrics?: NtfServerOptions['metrics'];
  /** A cluster member (the store must be its store). */
  cluster?: NtfServerOptions['cluster'];
}

export interface TestNtf {
  ntf: NtfServer;
  address: string;
  identity: KeyPair;
  serviceKey: KeyPair;
  /** The first provider (tests that pass other kinds of providers must not use this). */
  provider: CaptureProvider;
  providers: PushProvider[];
  /** A new connected NtfClient, closed by stop(); `address`: the server's with a password, say. */
  client(address?: string): Promise<NtfClient>;
  /** Closes the clients and stops the server (once). */
  stop(): Promise<void>;
}

export async function startNtf(opts: StartNtfOptions = {}): Promise<TestNtf> {
  const providers = opts.providers ?? [new CaptureProvider(['test'])];
  const identity = opts.identity ?? nodeCrypto.ed25519KeyPair();
  const serviceKey = opts.serviceKey ?? nodeCrypto.x25519KeyPair();
  const ntf = new NtfServer({
    identity,
    serviceKey,
    crypto: opts.crypto ?? nodeCrypto,
    store: opts.store ?? new MemoryNtfStore(),
    providers,
    relays: opts.relays ?? LOCAL_RELAYS,
    creation: opts.creation,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    log: opts.log ?? silent,
    ...(opts.clock ? { now: opts.clock.now } : {}),
    ...(opts.clock && opts.clockTimers ? { timers: opts.clock } : {}),
    dispatch: { backoffMs: 5, maxBackoffMs: 50, ...opts.dispatch },
    subscriber: { backoffMs: 50, maxBackoffMs: RECONNECT_MAX_MS, ...opts.subscriber },
    cronIntervalMs: opts.cronIntervalMs ?? 3_600_000,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.cluster ? { cluster: opts.cluster } : {}),
  });
  await ntf.start();
  const clients: NtfClient[] = [];
  let stopped: Promise<void> | undefined;
  const first = providers[0];
  return {
    ntf,
    address: ntf.address,
    identity,
    serviceKey,
    provider: first instanceof CaptureProvider ? first : (undefined as unknown as CaptureProvider),
    providers,
    async client(address = ntf.address) {
      const c = await NtfClient.connect(address, { webSocket: nodeWebSocket(), timeoutMs: 10_000 });
      clients.push(c);
      return c;
    },
    stop() {
      stopped ??= (async () => {
        for (const c of clients) c.close();
        await ntf.stop();
      })();
      return stopped;
    },
  };
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

let deviceCounter = 0;

export interface Device {
  client: NtfClient;
  provider: CaptureProvider;
  device: DeviceToken;
  tknAuth: KeyPair;
  tknDh: KeyPair;
  tokenId: Uint8Array;
  srvDhKey: Uint8Array;
  /** X25519(tknDh, srvDhKey): what the phone opens pushes with. */
  secret: Uint8Array;
  /** The verification code last pushed. */
  code: Uint8Array;
  /** Opens push data for this device (asserts it opens). */
  open(data: Uint8Array): PushContent;
  /** The next delivered push of `kind` to this device's token, opened. */
  nextPush<K extends PushKind>(kind: K, timeoutMs?: number): Promise<Extract<PushContent, { kind: K }>>;
  /** Delivered pushes of `kind` to this device waiting in the provider's inbox. */
  waiting(kind?: PushKind): PushRequest[];
  check(): Promise<TokenStatus>;
  subscribe(relay: string, notifierId: Uint8Array, ntfAuthKey: Uint8Array): Promise<Uint8Array>;
  subStatus(subId: Uint8Array): Promise<SubStatus>;
}

export interface DeviceOptions {
  /** Default: the server's first provider. */
  provider?: CaptureProvider;
  /** Provider name in the device token. Default: the provider's first. */
  name?: Provider;
  token?: Uint8Array;
  client?: NtfClient;
  /** Stop after TNEW and the verification push (status REGISTERED or CONFIRMED). Default true. */
  verify?: boolean;
}

/**
 * Registers a device token (TNEW), takes the verification push from the
 * provider (as soon as it is sent: a held or hanging provider still shows it),
 * opens it with the token's DH secret, and verifies (TVFY): status ACTIVE.
 */
export async function device(ctx: TestNtf, o: DeviceOptions = {}): Promise<Device> {
  const provider = o.provider ?? ctx.provider;
  const client = o.client ?? (await ctx.client());
  const dev: DeviceToken = { provider: o.name ?? provider.serves[0]!, token: o.token ?? new TextEncoder().encode(`device-${process.pid}-${++deviceCounter}-${hex(crypto.randomBytes(8))}`) };
  const tknAuth = crypto.x25519KeyPair();
  const tknDh = crypto.x25519KeyPair();
  const sentBefore = provider.attempts.length;
  const { tokenId, srvDhKey } = await client.registerToken(dev, tknAuth, tknDh.publicKey);
  const secret = sharedKey(crypto, tknDh.privateKey, srvDhKey, 'ntf token')!;
  const open = (data: Uint8Array) => {
    const c = openPush(crypto, secret, data);
    assert.ok(c, 'push data opens with the token secret');
    return c;
  };
  const mine = forDevice(dev);
  let attempt: CaptureAttempt | undefined;
  await provider.waitFor('the verification push', () => {
    attempt = provider.attempts.slice(sentBefore).find((a) => mine(a.req) && a.req.kind === 'verification');
    return attempt !== undefined;
  });
  const v = open(attempt!.req.data);
  assert.equal(v.kind, 'verification');
  const d: Device = {
    client,
    provider,
    device: dev,
    tknAuth,
    tknDh,
    tokenId,
    srvDhKey,
    secret,
    code: v.kind === 'verification' ? v.code : new Uint8Array(0),
    open,
    async nextPush(kind, timeoutMs = 5000) {
      const r = await provider.next((r) => mine(r) && r.kind === kind, timeoutMs);
      const c = open(r.data);
      assert.equal(c.kind, kind, 'the push opens to the kind the provider was told');
      return c as never;
    },
    waiting: (kind) => provider.peek((r) => mine(r) && (kind === undefined || r.kind === kind)),
    check: () => client.checkToken(tokenId, tknAuth.privateKey),
    subscribe: (relay, notifierId, ntfAuthKey) => client.createSubscription(tokenId, tknAuth.privateKey, relay, notifierId, ntfAuthKey),
    subStatus: (subId) => client.checkSubscription(subId, tknAuth.privateKey),
  };
  if (o.verify !== false) {
    await client.verifyToken(tokenId, tknAuth.privateKey, d.code);
    assert.deepEqual(await d.check(), { status: 'ACTIVE' });
  }
  return d;
}

/** Asserts that `p` rejects with an ERR carrying `error`. */
export const rejectsWith = (p: Promise<unknown>, error: string) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof NtfCommandError, `expected ERR ${error}, got ${String(e)}`);
    assert.equal(e.error, error);
    return true;
  });

/** Sends raw command bytes and decodes the response. */
export async function raw(c: NtfClient, entityId: Uint8Array, command: Uint8Array, authKey?: Uint8Array): Promise<NtfResponse> {
  const r = decodeResponse(await c.conn.request(entityId, command, authKey));
  assert.ok(r.ok, 'response decodes');
  return r.value;
}

/** NMSGs the server has taken in for known subscriptions. */
export const received = async (ntf: NtfServer) => (await ntf.metrics.received.get()).values[0]?.value ?? 0;

/** Polls SCHK until it reads `status`. */
export async function untilSub(d: Device, subId: Uint8Array, status: SubStatus, timeoutMs = 5000): Promise<void> {
  let last: SubStatus | undefined;
  await until(
    `subscription ${status}`,
    async () => (last = await d.subStatus(subId)) === status,
    timeoutMs,
  ).catch((e: Error) => {
    throw new Error(`${e.message} (last: ${last})`);
  });
}

// ---------------------------------------------------------------------------
// An NTF server with an in-process relay
// ---------------------------------------------------------------------------

export interface NtfCtx {
  ntf: TestNtf;
  relay: TestRelay;
  /** A relay client for recipients and senders. */
  rc: TestClient;
  /** A relay client, closed at the end. */
  relayClient(): Promise<TestClient>;
  /** A new queue with notifier credentials. */
  queue(): Promise<Queue>;
  /** SNEW for `q`, then waits until the subscription is ACTIVE at the relay. */
  subscribe(d: Device, q: Queue): Promise<Uint8Array>;
}

/** Runs `fn` with a fresh in-process relay and NTF server; closes and stops everything afterwards. */
export async function withNtf(opts: StartNtfOptions, fn: (ctx: NtfCtx) => Promise<void>): Promise<void> {
  const relay = await startRelay({ creation: MANY_QUEUES });
  const clients: TestClient[] = [];
  let ntf: TestNtf | undefined;
  try {
    ntf = await startNtf(opts);
    const relayClient = async () => {
      const c = await connect(relay.address);
      clients.push(c);
      return c;
    };
    const rc = await relayClient();
    const queue = () => newQueue(rc, true);
    const subscribe = async (d: Device, q: Queue) => {
      const subId = await d.subscribe(relay.address, q.ntf!.notifierId, q.ntf!.auth.privateKey);
      await untilSub(d, subId, 'ACTIVE');
      return subId;
    };
    await fn({ ntf, relay, rc, relayClient, queue, subscribe });
  } finally {
    for (const c of clients) c.close();
    await ntf?.stop();
    await relay.stop();
  }
}

// ---------------------------------------------------------------------------
// A real relay process
// ---------------------------------------------------------------------------


/**
 * `hush relay init` + `hush relay start` in a temporary directory. The first
 * start listens on a free port (freePort); restarts reuse the
 * directory (identity, journal) and that port, so the address — which NTF
 * subscriptions name — stays the same.
 */
export class RelayProcess {
  proc: HushProcess | undefined;
  address = '';
  fingerprint = '';
  port = 0;
  metricsPort = 0;
  private constructor(
    readonly dir: string,
    private readonly env: Record<string, string>,
  ) {}

  static async start(env: Record<string, string> = {}): Promise<RelayProcess> {
    const dir = tmpDir('hush-ntf-relay-');
    const r = new RelayProcess(dir, env);
    try {
      // A port restarts can take again (freePort), passed at start as HUSH_RELAY_PORT.
      const init = await new HushProcess(['relay', 'init', '--dir', dir, '--port', '5223']).result();
      assert.equal(init.code, 0, `relay init failed: ${init.stderr}${init.stdout}`);
      await r.launch(String(await freePort()));
      return r;
    } catch (e) {
      await r.stop();
      throw e;
    }
  }

  private async launch(port: string): Promise<void> {
    const proc = new HushProcess(['relay', 'start', '--dir', this.dir], {
      HUSH_RELAY_METRICS_PORT: '0',
      HUSH_LOG_LEVEL: 'warn',
      ...this.env,
      HUSH_RELAY_PORT: port,
    });
    this.proc = proc;
    const m = await proc.waitFor(RELAY_ADDRESS);
    this.metricsPort = Number((await proc.waitFor(/metrics port: (\d+)/))[1]);
    const [, address, fingerprint, p] = m;
    if (this.fingerprint) assert.equal(fingerprint, this.fingerprint, 'same identity after a restart');
    if (this.port) assert.equal(Number(p), this.port, 'same port after a restart');
    this.address = address!;
    this.fingerprint = fingerprint!;
    this.port = Number(p);
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** The relay's /healthz: connections, queues, messages, pendingNotifications. */
  async healthz(): Promise<Record<string, number | boolean>> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, number | boolean>;
  }

  /** kill -9, and waits for the process to be gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    p.kill('SIGKILL');
    const { signal } = await p.exited;
    assert.ok(signal === 'SIGKILL' || !p.running, 'relay process died');
  }

  /** Starts again on the same directory and port (after kill()). */
  async restart(): Promise<void> {
    assert.ok(!this.running, 'restart after kill()');
    await this.launch(String(this.port));
  }

  /** Kills the process and removes the directory. */
  async stop(): Promise<void> {
    await this.proc?.dispose();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
