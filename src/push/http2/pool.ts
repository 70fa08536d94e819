// Http2Pool: requests to one origin over a few long-lived HTTP/2 connections,
// as APNs, FCM and the push gateway all want.
//
// Each connection carries many concurrent streams: at most maxConcurrentStreams,
// and never more than the server's SETTINGS allow; the rest wait in a FIFO
// queue. A connection that receives GOAWAY, fails or closes is replaced on the
// next request. A request whose stream died with its connection resolves as
// lost (it may or may not have reached the server), never silently dropped;
// every request resolves within requestTimeoutMs, queueing included.
//
// Liveness: a dead link (a NAT that forgot us, a partition) sends no FIN, so
// a connection that has received nothing for pingIntervalMs while requests
// wait on it (or at all, with keepAlive) is PINGed, and destroyed if the PING
// is not answered within pingTimeoutMs: its requests resolve as lost and the
// next request opens a new connection. Idle connections are not PINGed by
// default: push services (FCM) answer PINGs on idle connections with GOAWAY
// ENHANCE_YOUR_CALM, and a dead idle connection is found by its next request.
//
// The send path is a provider's hot path (thousands a second): no timer per
// request or connection (one sweep finds the overdue requests and the silent
// connections), no closure per stream (the listeners are shared and find their
// request on the stream), and a request goes straight to a connection when
// nothing waits before it.
import http2, {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';

export interface Http2PoolOptions {
  /** The origin requests go to (scheme, host, port). */
  url: string;
  /** Names the pool in log events: `<name>_connected`, … */
  name: string;
  /** Trusted CA certificates (PEM), for a test server; the system's are trusted by default. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Connections to keep (default 1). */
  connections?: number;
  /** Streams in flight per connection at most (default 1000; the server's SETTINGS may allow fewer). */
  maxConcurrentStreams?: number;
  /** A request not answered by then resolves as lost (default 10 s). */
  requestTimeoutMs?: number;
  /** PING a connection that has received nothing for this long while requests wait on it (default 5 s; 0 = never). */
  pingIntervalMs?: number;
  /** A PING not answered by then destroys its connection (default 5 s). */
  pingTimeoutMs?: number;
  /** PING connections with no request in flight too (default false): for a server of ours, not a push service. */
  keepAlive?: boolean;
  /** Resolves the host (e.g. refusing private addresses). */
  lookup?: LookupFunction;
  log?: Logger;
}

export interface Http2Request {
  /** Pseudo-headers included (':method', ':path'). */
  headers: OutgoingHttpHeaders;
  body: string | Uint8Array;
}

export type Http2Outcome =
  /** The server answered. */
  | { status: number; headers: IncomingHttpHeaders; body: string; connection: number }
  /** No answer: connection lost, stream reset, timeout, pool closed. The server may have seen it. */
  | { lost: string }
  /** It could not be sent and never will be (the connection options are refused). */
  | { failed: string };

export interface Http2PoolStats {
  /** Connections opened so far. */
  connectionsOpened: number;
  /** Connections open now (draining ones included). */
  connectionsOpen: number;
  inFlight: number;
  queued: number;
}

interface Conn {
  id: number;
  session: ClientHttp2Session;
  active: number;
  /** False once it got GOAWAY, failed or closed: no new streams. */
  usable: boolean;
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS, once known. */
  remoteMax: number;
  /** Something arrived since the last sweep (a response, data, SETTINGS, a PING or its ack). */
  heard: boolean;
  /** When it last received anything, or its first waiting request left (performance.now()). */
  quietSince: number;
  /** A PING is out: the connection is destroyed if no ack by then. */
  pingDeadline: number | undefined;
}

class Pending {
  status: number | undefined = undefined;
  headers: IncomingHttpHeaders | undefined = undefined;
  chunks: Buffer[] | undefined = undefined;
  size = 0;
  done = false;
  stream: ClientHttp2Stream | undefined = undefined;
  conn: Conn | undefined = undefined;
  constructor(
    /** Called when the request is sent, so headers carry what is current then (a fresh JWT, say). */
    readonly build: () => Http2Request,
    readonly callback: (r: Http2Outcome) => void,
    readonly deadline: number,
    readonly pool: Http2Pool,
  ) {}
}

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants;
/** Response bodies kept at most: error bodies are small; anything longer is not ours to read. */
const MAX_BODY = 65536;
const PENDING = Symbol('pending');
type TaggedStream = ClientHttp2Stream & { [PENDING]: Pending };

// Stream listeners, shared by all streams; `this` is the stream.
function onResponse(this: TaggedStream, headers: IncomingHttpHeaders): void {
  const p = this[PENDING];
  p.conn!.heard = true;
  p.headers = headers;
  p.status = Number(headers[':status']);
}
function onData(this: TaggedStream, chunk: Buffer): void {
  const p = this[PENDING];
  p.conn!.heard = true;
  if (p.size >= MAX_BODY) return;
  (p.chunks ??= []).push(chunk);
  p.size += chunk.length;
}
function ignore(): void {} // a stream error is seen as a close without a response
function onClose(this: TaggedStream): void {
  const p = this[PENDING];
  p.pool.streamClosed(p, this);
}

export class Http2Pool {
  readonly url: string;
  private readonly opts: Http2PoolOptions;
  private readonly maxStreams: number;
  private readonly timeoutMs: number;
  private readonly pingMs: number;
  private readonly pingTimeoutMs: number;
  private readonly sweepMs: number;
  private readonly slots: Array<Conn | undefined>;
  private readonly open = new Set<Conn>();
  /** Every request not finished: queued or in flight. */
  private readonly pending = new Set<Pending>();
  private queue: Pending[] = [];
  private queueHead = 0;
  private inFlight = 0;
  private opened = 0;
  private closed = false;
  /** The one timer: runs while requests are pending, a PING is out, or keep-alive connections are open. */
  private sweeper: NodeJS.Timeout | undefined;
  private lastSweep = 0;

  constructor(opts: Http2PoolOptions) {
    this.opts = opts;
    this.url = new URL(opts.url).origin;
    const connections = opts.connections ?? 1;
    this.maxStreams = opts.maxConcurrentStreams ?? 1000;
    if (!(Number.isInteger(connections) && connections >= 1)) throw new RangeError('connections must be a positive integer');
    if (!(Number.isInteger(this.maxStreams) && this.maxStreams >= 1)) throw new RangeError('maxConcurrentStreams must be a positive integer');
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.pingMs = opts.pingIntervalMs ?? 5_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 5_000;
    if (!(this.pingMs >= 0 && this.pingTimeoutMs > 0)) throw new RangeError('pingIntervalMs must be >= 0 and pingTimeoutMs positive');
    this.slots = new Array<Conn | undefined>(connections).fill(undefined);
    const finest = Math.min(this.timeoutMs, this.pingTimeoutMs, this.pingMs || Infinity);
    this.sweepMs = Math.max(5, Math.min(250, finest / 4));
  }

  get stats(): Http2PoolStats {
    return { connectionsOpened: this.opened, connectionsOpen: this.open.size, inFlight: this.inFlight, queued: this.queue.length - this.queueHead };
  }

  /** request() as a promise. */
  request(build: () => Http2Request, opts: { front?: boolean } = {}): Promise<Http2Outcome> {
    return new Promise((resolve) => this.send(build, resolve, opts));
  }

  /**
   * Sends a request when a stream is free; `callback` gets the outcome, once.
   * `front` puts it before those waiting (a resend that already waited its turn once).
   */
  send(build: () => Http2Request, callback: (r: Http2Outcome) => void, opts: { front?: boolean } = {}): void {
    if (this.closed) return callback({ lost: 'closed' });
    const p = new Pending(build, callback, performance.now() + this.timeoutMs, this);
    this.pending.add(p);
    // a pending request keeps the process alive (and the sweep finds it if its server falls silent)
    this.sweeping().ref();
    if (this.queueHead === this.queue.length) {
      // nothing waits: straight to a connection if one has room
      const c = this.pickConnectionSafely();
      if (c === null) return;
      if (c) return this.dispatch(p, c);
    }
    if (opts.front) this.requeueFront(p);
    else this.queue.push(p);
    this.pump();
  }

  /** No new streams on this connection (e.g. the server said it is shutting down); it closes once its streams are done. */
  retire(connection: number): void {
    for (const c of this.open) if (c.id === connection) this.retireConn(c);
  }

  /** Stops taking requests; queued ones resolve as lost, in-flight ones finish. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failQueued({ lost: 'closed' });
    await Promise.all(
      [...this.open].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.session.closed || c.session.destroyed) return resolve();
            c.session.once('close', () => resolve());
            shut(c.session);
          }),
      ),
    );
  }

  // ---- dispatch

  private pump(): void {
    while (this.queueHead < this.queue.length) {
      const p = this.queue[this.queueHead]!;
      if (p.done) {
        this.dequeue();
        continue;
      }
      const c = this.pickConnectionSafely();
      if (!c) return;
      this.dequeue();
      this.dispatch(p, c);
    }
  }

  /** A connection with a free stream, undefined if none, null if connecting is refused (everything queued failed). */
  private pickConnectionSafely(): Conn | undefined | null {
    try {
      return this.pickConnection();
    } catch (e) {
      // http2.connect refused its options (a bad CA, say): nothing can go
      const reason = `connect: ${e instanceof Error ? e.message : String(e)}`;
      this.opts.log?.error({ event: `${this.opts.name}_connect_failed`, err: reason });
      for (const p of [...this.pending]) if (!p.stream) this.finish(p, { failed: reason });
      this.queue = [];
      this.queueHead = 0;
      return null;
    }
  }

  private failQueued(r: Http2Outcome): void {
    for (let i = this.queueHead; i < this.queue.length; i++) this.finish(this.queue[i]!, r);
    this.queue = [];
    this.queueHead = 0;
  }

  private dequeue(): void {
    this.queueHead++;
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private requeueFront(p: Pending): void {
    if (this.closed) return this.finish(p, { lost: 'closed' });
    if (this.queueHead > 0) this.queue[--this.queueHead] = p;
    else this.queue.unshift(p);
  }

  private pickConnection(): Conn | undefined {
    if (this.closed) return undefined;
    let best: Conn | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      let c = this.slots[i];
      if (!c || !c.usable) c = this.slots[i] = this.connect();
      if (c.active < Math.min(this.maxStreams, c.remoteMax) && (!best || c.active < best.active)) best = c;
    }
    return best;
  }

  private connect(): Conn {
    const id = ++this.opened;
    const name = this.opts.name;
    const session = http2.connect(this.url, {
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
      ...(this.opts.lookup ? { lookup: this.opts.lookup } : {}),
      peerMaxConcurrentStreams: 1,
    });
    // one stream until the server's SETTINGS say how many it takes (APNs may start at 1)
    const c: Conn = { id, session, active: 0, usable: true, remoteMax: 1, heard: false, quietSince: performance.now(), pingDeadline: undefined };
    this.open.add(c);
    if (this.opts.keepAlive) this.sweeping();
    const log = this.opts.log;
    log?.debug({ event: `${name}_connecting`, conn: id });
    // a connection that cannot even be set up (a black hole, a stuck handshake) is given up
    const connectTimer = setTimeout(() => {
      if (!session.connecting) return;
      log?.warn({ event: `${name}_connect_timeout`, conn: id });
      c.usable = false;
      session.destroy();
    }, Math.min(this.timeoutMs, 10_000));
    connectTimer.unref();
    session.on('connect', () => {
      clearTimeout(connectTimer);
      log?.info({ event: `${name}_connected`, conn: id });
    });
    session.on('ping', () => (c.heard = true));
    session.on('remoteSettings', (s) => {
      c.heard = true;
      c.remoteMax = s.maxConcurrentStreams ?? Infinity;
      this.pump();
    });
    session.on('goaway', (code, lastStreamId, data) => {
      c.usable = false;
      log?.info({ event: `${name}_goaway`, conn: id, code, lastStreamId, reason: data?.length ? jsonReason(data.toString('utf8')) : undefined });
      setImmediate(() => this.pump());
    });
    session.on('error', (err) => {
      c.usable = false;
      log?.warn({ event: `${name}_connection_error`, conn: id, err: err.message });
    });
    session.on('frameError', (type, code) => log?.warn({ event: `${name}_frame_error`, conn: id, type, code }));
    session.on('close', () => {
      clearTimeout(connectTimer);
      c.usable = false;
      this.open.delete(c);
      log?.debug({ event: `${name}_closed`, conn: id });
      setImmediate(() => this.pump());
    });
    return c;
  }

  private dispatch(p: Pending, c: Conn): void {
    let req: Http2Request;
    let stream: ClientHttp2Stream;
    try {
      req = p.build();
      stream = c.session.request(req.headers);
    } catch (e) {
      if (c.session.closed || c.session.destroyed) {
        // the session closed under us: nothing was sent, so another connection may take it
        this.retireConn(c);
        this.requeueFront(p);
        setImmediate(() => this.pump());
      } else this.finish(p, { failed: `request rejected: ${(e as { code?: string }).code ?? String(e)}` });
      return;
    }
    // silence counts from when the first request started waiting, not from the last answer before it
    if (c.active++ === 0) c.quietSince = performance.now();
    this.inFlight++;
    p.stream = stream;
    p.conn = c;
    (stream as TaggedStream)[PENDING] = p;
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('error', ignore);
    stream.on('close', onClose);
    stream.end(req.body);
  }

  /** @internal the 'close' of a request's stream. */
  streamClosed(p: Pending, stream: ClientHttp2Stream): void {
    const c = p.conn!;
    c.active--;
    this.inFlight--;
    p.stream = undefined;
    p.conn = undefined;
    if (p.status === undefined) this.finish(p, { lost: lostReason(stream.rstCode, c) });
    else {
      const body = p.chunks ? Buffer.concat(p.chunks).toString('utf8') : '';
      this.finish(p, { status: p.status, headers: p.headers!, body, connection: c.id });
    }
    this.pump();
  }

  /** The sweep timer, started if it is not running; unref'd: only pending requests keep the process alive. */
  private sweeping(): NodeJS.Timeout {
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
      this.sweeper.unref();
    }
    return this.sweeper;
  }

  /** Requests past their deadline resolve as lost (their connections are probed); silent connections are PINGed. */
  private sweep(): void {
    const now = performance.now();
    for (const p of this.pending) {
      if (p.deadline > now) continue;
      const c = p.conn;
      p.stream?.close(NGHTTP2_CANCEL);
      this.finish(p, { lost: 'timeout' });
      // a silent server or a dead network path: find out, rather than time out every request on it
      if (c) this.probe(c, now);
    }
    // After a blocked event loop, an ack may be read but not yet handled: judge PINGs at the next sweep.
    const late = now - this.lastSweep > 2 * this.sweepMs;
    this.lastSweep = now;
    let pinging = false;
    for (const c of this.open) {
      if (c.heard) {
        c.heard = false;
        c.quietSince = now;
      }
      if (c.pingDeadline === undefined && this.pingMs > 0 && (c.active > 0 || this.opts.keepAlive) && now - c.quietSince >= this.pingMs)
        this.probe(c, now);
      if (c.pingDeadline !== undefined && now >= c.pingDeadline && !late) {
        this.opts.log?.warn({ event: `${this.opts.name}_ping_timeout`, conn: c.id });
        kill(c);
      }
      if (c.pingDeadline !== undefined) pinging = true;
    }
    if (this.pending.size === 0) {
      if (!pinging && !(this.opts.keepAlive && this.open.size > 0)) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      } else this.sweeper!.unref();
    }
  }

  private retireConn(c: Conn): void {
    c.usable = false;
    if (!c.session.closed && !c.session.destroyed) shut(c.session);
  }

  /** PINGs the connection; the sweep tears it down (its requests: lost) if the ack is not back by pingTimeoutMs. */
  private probe(c: Conn, now: number): void {
    if (c.pingDeadline !== undefined || c.session.closed || c.session.destroyed || c.session.connecting) return;
    c.pingDeadline = now + this.pingTimeoutMs;
    this.sweeping();
    try {
      c.session.ping((err) => {
        c.pingDeadline = undefined;
        if (err) kill(c);
        else c.heard = true;
      });
    } catch {
      c.pingDeadline = undefined;
      kill(c);
    }
  }

  private finish(p: Pending, r: Http2Outcome): void {
    if (p.done) return;
    p.done = true;
    this.pending.delete(p);
    p.callback(r);
  }
}

/** Tears a dead connection down: its streams close unanswered (lost), and the next request opens another. */
function kill(c: Conn): void {
  c.usable = false;
  c.pingDeadline = undefined;
  if (!c.session.destroyed) c.session.destroy();
}

/**
 * Closes a session gracefully (its streams finish first). One still connecting
 * is destroyed instead: Node's close() on it neither emits 'close' nor lets go
 * of the socket.
 */
function shut(session: ClientHttp2Session): void {
  if (session.connecting) session.destroy();
  else session.close();
}

/** Why a stream closed without an answer: it may or may not have reached the server, except when refused. */
function lostReason(rstCode: number | undefined, c: Conn): string {
  if (rstCode === NGHTTP2_REFUSED_STREAM) return 'stream refused';
  if (!c.usable || c.session.closed || c.session.destroyed || rstCode === NGHTTP2_CANCEL || rstCode === NGHTTP2_NO_ERROR || rstCode === undefined)
    return 'connection lost';
  return `stream reset (${rstCode})`;
}

/** A string field of a JSON error body ({"reason": …} from Apple), if there is one. */
export function jsonReason(body: string, field = 'reason'): string | undefined {
  if (!body) return undefined;
  try {
    const j: unknown = JSON.parse(body);
    const r = j && typeof j === 'object' ? (j as Record<string, unknown>)[field] : undefined;
    return typeof r === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}
