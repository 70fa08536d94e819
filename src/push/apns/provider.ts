// ApnsProvider: delivers pushes to Apple over HTTP/2 with token (JWT) auth.
//
// A few long-lived connections carry many concurrent streams (one per push):
// at most maxConcurrentStreams per connection, and never more than the server's
// SETTINGS allow; the rest wait in a FIFO queue. A connection that receives
// GOAWAY, fails or closes is replaced on the next send; a push whose stream
// died with its connection resolves as 'retry' (it may or may not have reached
// Apple), never silently lost. Every push resolves within requestTimeoutMs.
//
// Responses (Apple's "Handling notification responses from APNs"):
//   200                                   delivered
//   400 BadDeviceToken                    invalid BAD
//   400 DeviceTokenNotForTopic            invalid TOPIC
//   410 ExpiredToken                      invalid EXPIRED
//   410 Unregistered (or any other 410)   invalid UNREGISTERED
//   403 ExpiredProviderToken / InvalidProviderToken
//                                         new JWT, sent again at once (once); then retry / failed
//   413 PayloadTooLarge                   failed
//   429, 5xx                              retry (afterMs from retry-after)
//   other 4xx                             failed with Apple's reason
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { Provider } from '../../ntf/protocol.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';
import { ApnsJwt } from './jwt.ts';
import { renderApns, type ApnsAlert, type ApnsRendered } from './payload.ts';
import type { PushKind } from '../../ntf/push.ts';

export const APNS_HOSTS = {
  production: 'https://api.push.apple.com',
  sandbox: 'https://api.sandbox.push.apple.com',
} as const;

/** Plausible APNs device token sizes (today 32 bytes; Apple says they may grow). */
export const MIN_APNS_TOKEN = 32;
export const MAX_APNS_TOKEN = 100;

export type ApnsTokenProvider = Extract<Provider, 'apns' | 'apns-sandbox'>;

export interface ApnsConfig {
  /** Apple's production or sandbox service, or a URL (e.g. a test server's). */
  host: 'production' | 'sandbox' | (string & {});
  keyId: string;
  teamId: string;
  /** The .p8 key (PKCS#8 PEM). */
  key: string | KeyObject;
  /** The app's bundle ID (apns-topic). */
  topic: string;
  /** Device token providers served: ['apns'] for production, ['apns-sandbox'] for development builds. */
  serves?: readonly ApnsTokenProvider[];
  /** Trusted CA certificates (PEM), for a test server; Apple's are trusted by default. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** HTTP/2 connections to keep (default 1). */
  connections?: number;
  /** Streams in flight per connection at most (default 1000; the server's SETTINGS may allow fewer). */
  maxConcurrentStreams?: number;
  /** A push not answered by then resolves as retry (default 10 s), queueing included. */
  requestTimeoutMs?: number;
  /** PING idle connections this often to find dead ones (default 60 s; 0 = never). */
  pingIntervalMs?: number;
  /** Renew the provider token after this long (20–60 min, default 50). */
  jwtRefreshMs?: number;
  /** The generic alert of message pushes. */
  alert?: ApnsAlert;
  ttlSeconds?: Partial<Record<PushKind, number>>;
  /** Milliseconds since the epoch (JWT iat, apns-expiration). */
  now?: () => number;
  log?: Logger;
}

export interface ApnsStats {
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
  /** A PING is out to see whether the connection is alive. */
  probing: boolean;
}

interface Pending {
  path: string;
  rendered: ApnsRendered;
  resolve: (r: PushResult) => void;
  timer: NodeJS.Timeout;
  done: boolean;
  stream?: ClientHttp2Stream;
  conn?: Conn;
  /** The 403 provider-token resend was used. */
  authRetried: boolean;
}

const { NGHTTP2_CANCEL } = http2.constants;

export class ApnsProvider implements PushProvider {
  readonly serves: readonly ApnsTokenProvider[];
  readonly url: string;
  readonly jwt: ApnsJwt;
  private readonly cfg: ApnsConfig;
  private readonly maxStreams: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly slots: Array<Conn | undefined>;
  private readonly open = new Set<Conn>();
  private queue: Pending[] = [];
  private queueHead = 0;
  private inFlight = 0;
  private opened = 0;
  private closed = false;
  private readonly pinger: NodeJS.Timeout | undefined;

  constructor(cfg: ApnsConfig) {
    this.cfg = cfg;
    const h = cfg.host;
    this.url = h === 'production' ? APNS_HOSTS.production : h === 'sandbox' ? APNS_HOSTS.sandbox : new URL(h).origin;
    this.serves = cfg.serves ?? [cfg.host === 'sandbox' ? 'apns-sandbox' : 'apns'];
    if (!cfg.topic) throw new TypeError('APNs topic (bundle ID) is required');
    const connections = cfg.connections ?? 1;
    this.maxStreams = cfg.maxConcurrentStreams ?? 1000;
    if (!(Number.isInteger(connections) && connections >= 1)) throw new RangeError('connections must be a positive integer');
    if (!(Number.isInteger(this.maxStreams) && this.maxStreams >= 1)) throw new RangeError('maxConcurrentStreams must be a positive integer');
    this.timeoutMs = cfg.requestTimeoutMs ?? 10_000;
    this.now = cfg.now ?? Date.now;
    this.jwt = new ApnsJwt({
      keyId: cfg.keyId,
      teamId: cfg.teamId,
      key: cfg.key,
      now: this.now,
      ...(cfg.jwtRefreshMs !== undefined ? { refreshAfterMs: cfg.jwtRefreshMs } : {}),
    });
    this.slots = new Array<Conn | undefined>(connections).fill(undefined);
    const ping = cfg.pingIntervalMs ?? 60_000;
    if (ping > 0) {
      this.pinger = setInterval(() => this.pingIdle(), ping);
      this.pinger.unref();
    }
  }

  get stats(): ApnsStats {
    return { connectionsOpened: this.opened, connectionsOpen: this.open.size, inFlight: this.inFlight, queued: this.queue.length - this.queueHead };
  }

  send(req: PushRequest): Promise<PushResult> {
    if (this.closed) return Promise.resolve({ outcome: 'retry', reason: 'provider closed' });
    if (!(this.serves as readonly Provider[]).includes(req.device.provider))
      return Promise.resolve({ outcome: 'failed', reason: `provider ${req.device.provider} not served` });
    const t = req.device.token;
    if (t.length < MIN_APNS_TOKEN || t.length > MAX_APNS_TOKEN) return Promise.resolve({ outcome: 'invalid', reason: 'BAD' });
    let rendered: ApnsRendered;
    try {
      rendered = renderApns(req, {
        topic: this.cfg.topic,
        now: this.now,
        ...(this.cfg.alert ? { alert: this.cfg.alert } : {}),
        ...(this.cfg.ttlSeconds ? { ttlSeconds: this.cfg.ttlSeconds } : {}),
      });
    } catch (e) {
      return Promise.resolve({ outcome: 'failed', reason: e instanceof RangeError ? 'PayloadTooLarge' : String(e) });
    }
    const path = `/3/device/${Buffer.from(t.buffer, t.byteOffset, t.byteLength).toString('hex')}`;
    return new Promise<PushResult>((resolve) => {
      const p: Pending = { path, rendered, resolve, done: false, authRetried: false, timer: undefined as unknown as NodeJS.Timeout };
      p.timer = setTimeout(() => this.timedOut(p), this.timeoutMs);
      this.queue.push(p);
      this.pump();
    });
  }

  /** Stops taking pushes; queued ones resolve as retry, in-flight ones finish. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pinger) clearInterval(this.pinger);
    for (let i = this.queueHead; i < this.queue.length; i++) this.finish(this.queue[i]!, { outcome: 'retry', reason: 'provider closed' });
    this.queue = [];
    this.queueHead = 0;
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
      let c: Conn | undefined;
      try {
        c = this.pickConnection();
      } catch (e) {
        // http2.connect refused its options (a bad CA, say): nothing queued can go
        const reason = `connect: ${e instanceof Error ? e.message : String(e)}`;
        this.cfg.log?.error({ event: 'apns_connect_failed', err: reason });
        for (let i = this.queueHead; i < this.queue.length; i++) this.finish(this.queue[i]!, { outcome: 'failed', reason });
        this.queue = [];
        this.queueHead = 0;
        return;
      }
      if (!c) break;
      this.dequeue();
      this.dispatch(p, c);
    }
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
    if (this.closed) return this.finish(p, { outcome: 'retry', reason: 'provider closed' });
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
    const session = http2.connect(this.url, {
      ...(this.cfg.ca ? { ca: this.cfg.ca } : {}),
      peerMaxConcurrentStreams: 1,
    });
    // one stream until the server's SETTINGS say how many it takes (APNs may start at 1)
    const c: Conn = { id, session, active: 0, usable: true, remoteMax: 1, probing: false };
    this.open.add(c);
    const log = this.cfg.log;
    log?.debug({ event: 'apns_connecting', conn: id });
    // a connection that cannot even be set up (a black hole, a stuck handshake) is given up
    const connectTimer = setTimeout(() => {
      if (!session.connecting) return;
      log?.warn({ event: 'apns_connect_timeout', conn: id });
      c.usable = false;
      session.destroy();
    }, Math.min(this.timeoutMs, 10_000));
    connectTimer.unref();
    session.on('connect', () => {
      clearTimeout(connectTimer);
      log?.info({ event: 'apns_connected', conn: id });
    });
    session.on('remoteSettings', (s) => {
      c.remoteMax = s.maxConcurrentStreams ?? Infinity;
      this.pump();
    });
    session.on('goaway', (code, lastStreamId, data) => {
      c.usable = false;
      log?.info({ event: 'apns_goaway', conn: id, code, lastStreamId, reason: goawayReason(data) });
      setImmediate(() => this.pump());
    });
    session.on('error', (err) => {
      c.usable = false;
      log?.warn({ event: 'apns_connection_error', conn: id, err: err.message });
    });
    session.on('frameError', (type, code) => log?.warn({ event: 'apns_frame_error', conn: id, type, code }));
    session.on('close', () => {
      clearTimeout(connectTimer);
      c.usable = false;
      this.open.delete(c);
      log?.debug({ event: 'apns_closed', conn: id });
      setImmediate(() => this.pump());
    });
    return c;
  }

  private dispatch(p: Pending, c: Conn): void {
    const token = this.jwt.token;
    let stream: ClientHttp2Stream;
    try {
      stream = c.session.request({
        ':method': 'POST',
        ':path': p.path,
        authorization: `bearer ${token}`,
        ...p.rendered.headers,
        'content-length': Buffer.byteLength(p.rendered.body),
      });
    } catch (e) {
      if (c.session.closed || c.session.destroyed) {
        // the session closed under us: nothing was sent, so another connection may take it
        this.retire(c);
        this.requeueFront(p);
      } else this.finish(p, { outcome: 'failed', reason: `request rejected: ${(e as { code?: string }).code ?? String(e)}` });
      return;
    }
    c.active++;
    this.inFlight++;
    p.stream = stream;
    p.conn = c;
    let status: number | undefined;
    let headers: IncomingHttpHeaders = {};
    let body = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      headers = h;
      status = Number(h[':status']);
    });
    stream.on('data', (chunk: string) => {
      if (body.length < 65536) body += chunk;
    });
    stream.on('error', () => {}); // seen as a close without a response
    stream.on('close', () => {
      c.active--;
      this.inFlight--;
      p.stream = undefined;
      p.conn = undefined;
      if (!p.done) {
        if (status === undefined) this.finish(p, { outcome: 'retry', reason: lostReason(stream.rstCode, c) }); else this.answered(p, status, headers, body, token, c);
      }
      this.pump();
    });
    stream.end(p.rendered.body);
  }

  private answered(p: Pending, status: number, headers: IncomingHttpHeaders, body: string, token: string, c: Conn): void {
    if (status === 200) return this.finish(p, { outcome: 'delivered' });
    const reason = errorReason(body) ?? `HTTP ${status}`;
    const afterMs = retryAfterMs(headers['retry-after'], this.now());
    const retry = (r: string): PushResult => (afterMs !== undefined ? { outcome: 'retry', reason: r, afterMs } : { outcome: 'retry', reason: r });
    if (status === 403 && (reason === 'ExpiredProviderToken' || reason === 'InvalidProviderToken')) {
      this.jwt.invalidate(token);
      if (!p.authRetried) {
        p.authRetried = true;
        this.cfg.log?.warn({ event: 'apns_provider_token_rejected', reason });
        this.requeueFront(p);
        return;
      }
      // a fresh token refused too: a clock far off (expired) or wrong credentials (invalid)
      return this.finish(p, reason === 'ExpiredProviderToken' ? retry(reason) : { outcome: 'failed', reason });
    }
    if (status === 400 && reason === 'BadDeviceToken') return this.finish(p, { outcome: 'invalid', reason: 'BAD' });
    if (status === 400 && reason === 'DeviceTokenNotForTopic') return this.finish(p, { outcome: 'invalid', reason: 'TOPIC' });
    if (status === 410) return this.finish(p, { outcome: 'invalid', reason: reason === 'ExpiredToken' ? 'EXPIRED' : 'UNREGISTERED' });
    if (status === 429 || status >= 500) {
      // 503 Shutdown: this connection is going away; send the next ones elsewhere
      if (status === 503) this.retire(c);
      return this.finish(p, retry(reason));
    }
    return this.finish(p, { outcome: 'failed', reason });
  }

  private timedOut(p: Pending): void {
    if (p.done) return;
    const c = p.conn;
    p.stream?.close(NGHTTP2_CANCEL);
    this.finish(p, { outcome: 'retry', reason: 'timeout' });
    // a silent server or a dead network path: find out, rather than time out every push on it
    if (c) this.probe(c);
  }

  /** No new streams on this connection; it closes once its streams are done. */
  private retire(c: Conn): void {
    c.usable = false;
    if (!c.session.closed && !c.session.destroyed) shut(c.session);
  }

  /** PINGs the connection; one that does not answer within the request timeout is torn down (its pushes: retry). */
  private probe(c: Conn): void {
    if (c.probing || c.session.closed || c.session.destroyed || c.session.connecting) return;
    c.probing = true;
    const kill = () => {
      c.usable = false;
      if (!c.session.destroyed) c.session.destroy();
    };
    const deadline = setTimeout(() => {
      this.cfg.log?.warn({ event: 'apns_ping_timeout', conn: c.id });
      kill();
    }, Math.min(this.timeoutMs, 10_000));
    deadline.unref();
    try {
      c.session.ping((err) => {
        clearTimeout(deadline);
        c.probing = false;
        if (err) kill();
      });
    } catch {
      clearTimeout(deadline);
      c.probing = false;
      kill();
    }
  }

  private finish(p: Pending, r: PushResult): void {
    if (p.done) return;
    p.done = true;
    clearTimeout(p.timer);
    p.resolve(r);
  }

  private pingIdle(): void {
    for (const c of this.open) if (c.usable && c.active === 0) this.probe(c);
  }
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

/** Why a stream closed without an answer: it may or may not have reached Apple, except when refused. */
function lostReason(rstCode: number | undefined, c: Conn): string {
  const { NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants;
  if (rstCode === NGHTTP2_REFUSED_STREAM) return 'stream refused';
  if (!c.usable || c.session.closed || c.session.destroyed || rstCode === NGHTTP2_CANCEL || rstCode === NGHTTP2_NO_ERROR || rstCode === undefined)
    return 'connection lost';
  return `stream reset (${rstCode})`;
}

function errorReason(body: string): string | undefined {
  if (!body) return undefined;
  try {
    const j: unknown = JSON.parse(body);
    const r = j && typeof j === 'object' ? (j as { reason?: unknown }).reason : undefined;
    return typeof r === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

function goawayReason(data: Buffer | undefined): string | undefined {
  return data && data.length ? errorReason(data.toString('utf8')) : undefined;
}

/** retry-after as delay-seconds or an HTTP date, in ms from now. */
export function retryAfterMs(v: string | string[] | undefined, now: number): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
