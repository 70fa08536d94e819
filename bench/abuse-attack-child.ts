// The attackers of the abuse benchmark (bench/abuse.ts), in a process of their
// own so their CPU does not run in the legitimate client's event loop. IPC:
//   child → parent  { t: 'ready', settings }   the amplification queue holds its message
//   parent → child  { t: 'attack' }   the idle connections open; once each has been
//                                     accepted or refused (RAMP_MS at most) the other two start:
//   child → parent  { t: 'attacking', rampS, open }
//   parent → child  { t: 'stop' }     they stop; the child answers { t: 'report', … } and exits
//   node --import tsx bench/abuse-attack-child.ts <relay address>
// Each attack comes from source addresses of its own on 127/8 (Linux routes all
// of it to loopback), so per-address limits see them apart:
//   idle     IDLE_CONNECTIONS WebSockets, PER_ADDRESS per address from 127.0.0.2 on;
//            even ones stop after the server's hello (mid-handshake), odd ones
//            complete the handshake and send nothing. One the server closes after
//            accepting it is opened again, as a slowloris keeps its count (within
//            ATTEMPTS); OPENING connects at a time.
//   amplify  from AMP_ADDRESS: a queue holding one 16,000-byte message; the client
//            stops reading its socket and sends a block of GETS_PER_BLOCK GETs every
//            AMP_INTERVAL_MS (each GET asks for that message: a 16 KB block back)
//            while its own unsent bytes stay under AMP_MAX_UNSENT, MAX_GETS in all.
//   NEW      FLOOD_CONNECTIONS, one per address from 127.0.2.1, each keeping
//            FLOOD_WINDOW NEWs in flight with one reused key pair (cheap for the
//            attacker); a connection the server closes is dialled again.
import fs from 'node:fs';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { parseAddress, webSocketUrl } from '../src/core/address.ts';
import type { WebSocketLike } from '../src/core/client.ts';
import { CommandError } from '../src/core/command-client.ts';
import { nodeCrypto as crypto } from '../src/node/crypto.ts';
import type { KeyPair } from '../src/core/crypto/suite.ts';
import { RelayClient } from '../src/relay/client.ts';

const IDLE_CONNECTIONS = 5000;
const PER_ADDRESS = 25;
const OPENING = 200;
const ATTEMPTS = 3 * IDLE_CONNECTIONS;
const RAMP_MS = 30_000;
const AMP_ADDRESS = '127.0.1.1';
const AMP_BODY_BYTES = 16_000;
const GETS_PER_BLOCK = 200;
const AMP_INTERVAL_MS = 50;
const MAX_GETS = 60_000;
const AMP_MAX_UNSENT = 1 << 20;
const FLOOD_CONNECTIONS = 4;
const FLOOD_WINDOW = 64;
const FLOOD_DIALS = 50;

type Tally = Record<string, number>;
const inc = (t: Tally, k: string) => void (t[k] = (t[k] ?? 0) + 1);
const now = () => performance.now();

// ---- sockets from a chosen source address, and what ended them ----

interface Watched {
  ws: WebSocket;
  /** The first error's code (ECONNRESET, "Unexpected server response: 503"…) or `close <code>`; set once it ended. */
  end: string | undefined;
  closed: Promise<string>;
  /** Bytes this side has handed to the socket. */
  sent: number;
  socket?: Socket;
}

function watched(url: string, localAddress: string): Watched {
  const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
  const w: Watched = { ws, end: undefined, closed: undefined as unknown as Promise<string>, sent: 0 };
  ws.on('error', (e: NodeJS.ErrnoException) => (w.end ??= e.code ?? e.message.slice(0, 60)));
  // Registered before the client's own onclose: the code is known when its connect fails.
  w.closed = new Promise((r) => ws.once('close', (code: number) => r((w.end ??= `close ${code}`))));
  ws.once('upgrade', (res) => (w.socket = res.socket as Socket));
  const send = ws.send.bind(ws);
  ws.send = ((d: Uint8Array) => {
    w.sent += d.byteLength;
    send(d);
  }) as typeof ws.send;
  return w;
}

/** A relay client whose WebSocket is `watched` from `localAddress`; rejects with the Watched's end. */
async function dial(address: string, localAddress: string): Promise<{ c: RelayClient; w: Watched }> {
  let w: Watched | undefined;
  try {
    const c = await RelayClient.connect(address, {
      crypto,
      keepalive: false,
      timeoutMs: 60_000,
      webSocket: (url) => (w = watched(url, localAddress)).ws as unknown as WebSocketLike,
    });
    return { c, w: w! };
  } catch (e) {
    throw new Error(w?.end ?? (e instanceof Error ? e.message : String(e)));
  }
}

/** NEW, tried again while the relay answers RATE (the attacker's own set-up must not fail on it). */
async function newQueueRetrying(c: RelayClient, auth: KeyPair) {
  for (let i = 0; ; i++) {
    try {
      return await c.newQueue(auth, crypto.x25519KeyPair().publicKey);
    } catch (e) {
      if (!(e instanceof CommandError && e.error === 'RATE') || i >= 100) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Send and receive queues (bytes) of the TCP socket local → remote (ip, port), from /proc/net/tcp. */
function tcpSocket(local: [string, number], remote: [string, number]) {
  const hex = ([ip, port]: [string, number]) =>
    `${ip.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).reverse().join('')}:${port.toString(16).padStart(4, '0')}`.toUpperCase();
  const l = hex(local);
  const r = hex(remote);
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== l || f[2] !== r) continue;
    const [tx, rx] = f[4]!.split(':').map((h) => parseInt(h, 16));
    return { txQueue: tx!, rxQueue: rx! };
  }
  return undefined;
}

// ---- idle connections ----

class IdleAttack {
  attempts = 0;
  accepted = { midHandshake: 0, handshaken: 0 };
  readonly refused: Tally = {};
  readonly closedAfterAccept: Tally = {};
  open = 0;
  peakOpen = 0;
  openAtStop = 0;
  private running = false;
  private opening = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly live = new Set<() => void>();
  private firstSettled = 0;
  private ramped = () => {};

  constructor(private readonly address: string) {}

  /** Resolves once every connection's first attempt was accepted or refused. */
  start(): Promise<void> {
    this.running = true;
    const ramped = new Promise<void>((r) => (this.ramped = r));
    for (let i = 0; i < IDLE_CONNECTIONS; i++) void this.connect(i, true);
    return ramped;
  }

  stop(): void {
    this.running = false;
    this.openAtStop = this.open;
    for (const w of this.waiting.splice(0)) w();
    for (const close of this.live) close();
  }

  private async connect(i: number, first = false): Promise<void> {
    if (this.opening >= OPENING) await new Promise<void>((r) => this.waiting.push(r));
    else this.opening++;
    try {
      if (!this.running || this.attempts >= ATTEMPTS) return;
      this.attempts++;
      const from = `127.0.0.${2 + Math.floor(i / PER_ADDRESS)}`;
      const kind = i % 2 === 0 ? 'midHandshake' : 'handshaken';
      const r = kind === 'midHandshake' ? await this.midHandshake(from) : await this.handshaken(from);
      if (first && ++this.firstSettled === IDLE_CONNECTIONS) this.ramped();
      if (typeof r === 'string') return inc(this.refused, r);
      this.accepted[kind]++;
      this.peakOpen = Math.max(this.peakOpen, ++this.open);
      this.live.add(r.close);
      void r.closed.then((why) => {
        this.open--;
        this.live.delete(r.close);
        if (!this.running) return;
        inc(this.closedAfterAccept, why);
        void this.connect(i);
      });
    } finally {
      // Hand the slot to the next connect waiting, or give it back.
      const next = this.waiting.shift();
      if (next) next();
      else this.opening--;
    }
  }

  /** Accepted once the server's hello arrives; nothing is sent back. */
  private midHandshake(from: string) {
    const a = parseAddress(this.address);
    if (!a.ok) throw new Error(a.error);
    const w = watched(webSocketUrl(a.value), from);
    return new Promise<string | { close: () => void; closed: Promise<string> }>((resolve) => {
      w.ws.once('message', () => resolve({ close: () => w.ws.terminate(), closed: w.closed }));
      void w.closed.then(resolve);
    });
  }

  private async handshaken(from: string) {
    try {
      const { c, w } = await dial(this.address, from);
      return { close: () => c.close(), closed: w.closed };
    } catch (e) {
      return (e as Error).message;
    }
  }
}

// ---- GET amplification ----

class Amplifier {
  gets = 0;
  unsentAtStop = 0;
  /** What ended the connection while the attack ran, and when (s after its start); null: still open. */
  closed: { why: string; afterS: number } | null = null;
  /** Bytes the kernels held for the paused connection at the stop: the relay's send queue + ours to read. */
  kernelQueuedAtStop: number | null = null;
  private conn!: { c: RelayClient; w: Watched };
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly auth = crypto.x25519KeyPair();
  private rcvId: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly address: string,
    private readonly relay: [string, number],
  ) {}

  async prepare(): Promise<void> {
    this.conn = await dial(this.address, AMP_ADDRESS);
    const q = await newQueueRetrying(this.conn.c, this.auth);
    this.rcvId = q.rcvId;
    await this.conn.c.send(q.sndId, crypto.randomBytes(AMP_BODY_BYTES));
  }

  get bytesSent(): number {
    return this.conn.w.sent;
  }

  start(): void {
    const t0 = now();
    // A paused socket sees the relay's close (4008) only once it reads past what the relay sent
    // before it, if ever: the relay's own count of such closes is the one to go by.
    void this.conn.w.closed.then((why) => {
      if (this.timer !== undefined) this.closed = { why, afterS: (now() - t0) / 1000 };
    });
    this.conn.w.socket!.pause();
    this.timer = setInterval(() => this.tick(), AMP_INTERVAL_MS);
  }

  private tick(): void {
    const { c, w } = this.conn;
    if (this.gets >= MAX_GETS || w.ws.bufferedAmount >= AMP_MAX_UNSENT || !c.connected) return;
    for (let i = 0; i < GETS_PER_BLOCK; i++) c.get(this.rcvId, this.auth.privateKey).catch(() => {});
    this.gets += GETS_PER_BLOCK;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    const s = this.conn.w.socket!;
    const mine = tcpSocket([s.localAddress!, s.localPort!], this.relay);
    const relays = tcpSocket(this.relay, [s.localAddress!, s.localPort!]);
    if (mine && relays) this.kernelQueuedAtStop = mine.rxQueue + relays.txQueue;
    this.unsentAtStop = this.conn.w.ws.bufferedAmount;
    this.conn.w.ws.terminate();
  }
}

// ---- NEW flood ----

class Flood {
  ok = 0;
  readonly errors: Tally = {};
  unanswered = 0;
  dials = 0;
  readonly closes: Tally = {};
  private running = false;
  private readonly live = new Set<RelayClient>();
  private loops: Promise<void>[] = [];
  private startedAt = 0;
  private stoppedAt = 0;

  constructor(private readonly address: string) {}

  start(): void {
    this.running = true;
    this.startedAt = now();
    this.loops = Array.from({ length: FLOOD_CONNECTIONS }, (_, i) => this.loop(`127.0.2.${1 + i}`));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stoppedAt = now();
    for (const c of this.live) c.close();
    await Promise.all(this.loops);
  }

  get perS(): number {
    return (this.ok + Object.values(this.errors).reduce((a, b) => a + b, 0)) / ((this.stoppedAt - this.startedAt) / 1000);
  }

  private async loop(from: string): Promise<void> {
    const auth = crypto.x25519KeyPair();
    const dh = crypto.x25519KeyPair().publicKey;
    while (this.running && this.dials < FLOOD_DIALS * FLOOD_CONNECTIONS) {
      this.dials++;
      let d: { c: RelayClient; w: Watched };
      try {
        d = await dial(this.address, from);
      } catch (e) {
        inc(this.closes, `dial: ${(e as Error).message}`);
        continue;
      }
      this.live.add(d.c);
      await new Promise<void>((done) => {
        let inFlight = 0;
        const pump = () => {
          while (this.running && d.c.connected && inFlight < FLOOD_WINDOW) {
            inFlight++;
            d.c
              .newQueue(auth, dh)
              .then(
                () => this.ok++,
                (e) => (e instanceof CommandError ? inc(this.errors, e.error) : this.unanswered++),
              )
              .finally(() => {
                inFlight--;
                pump();
                if (inFlight === 0) done();
              });
          }
        };
        pump();
        if (inFlight === 0) done();
      });
      this.live.delete(d.c);
      if (this.running) inc(this.closes, await d.w.closed);
      else d.c.close();
    }
  }
}

// ---- the process ----

const [address] = process.argv.slice(2);
if (!address || !process.send) {
  console.error('usage (with an IPC channel): abuse-attack-child.ts <relay address>');
  process.exit(64);
}
const a = parseAddress(address);
if (!a.ok) throw new Error(a.error);
const relayEnd: [string, number] = [a.value.host, a.value.port];
const idle = new IdleAttack(address);
const amp = new Amplifier(address, relayEnd);
const flood = new Flood(address);
await amp.prepare();
process.on('disconnect', () => process.exit(0));
process.on('message', (m: { t?: string }) => {
  if (m?.t === 'attack') {
    const t = now();
    void Promise.race([idle.start(), new Promise((r) => setTimeout(r, RAMP_MS))]).then(() => {
      amp.start();
      flood.start();
      process.send!({ t: 'attacking', rampS: (now() - t) / 1000, open: idle.open });
    });
  } else if (m?.t === 'stop') {
    amp.stop();
    idle.stop();
    void flood.stop().then(() => {
      process.send!(
        {
          t: 'report',
          idle: {
            attempts: idle.attempts,
            accepted: idle.accepted,
            refused: idle.refused,
            closedAfterAccept: idle.closedAfterAccept,
            peakOpen: idle.peakOpen,
            openAtStop: idle.openAtStop,
          },
          amplify: {
            gets: amp.gets,
            bytesSent: amp.bytesSent,
            unsentAtStop: amp.unsentAtStop,
            kernelQueuedAtStop: amp.kernelQueuedAtStop,
            closed: amp.closed,
          },
          flood: { ok: flood.ok, errors: flood.errors, unanswered: flood.unanswered, dials: flood.dials, closes: flood.closes, perS: flood.perS },
        } satisfies AttackReport,
        () => process.exit(0),
      );
    });
  }
});
const settings = {
  idleConnections: IDLE_CONNECTIONS,
  perAddress: PER_ADDRESS,
  ampBodyBytes: AMP_BODY_BYTES,
  getsPerBlock: GETS_PER_BLOCK,
  ampIntervalMs: AMP_INTERVAL_MS,
  maxGets: MAX_GETS,
  floodConnections: FLOOD_CONNECTIONS,
  floodWindow: FLOOD_WINDOW,
};
export type AttackSettings = typeof settings;
process.send({ t: 'ready', settings });

export interface AttackReport {
  t: 'report';
  idle: {
    attempts: number;
    accepted: { midHandshake: number; handshaken: number };
    refused: Tally;
    closedAfterAccept: Tally;
    peakOpen: number;
    openAtStop: number;
  };
  amplify: {
    gets: number;
    bytesSent: number;
    unsentAtStop: number;
    kernelQueuedAtStop: number | null;
    closed: { why: string; afterS: number } | null;
  };
  flood: { ok: number; errors: Tally; unanswered: number; dials: number; closes: Tally; perS: number };
}
