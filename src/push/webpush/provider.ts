// WebPushProvider: delivers pushes to Web Push services (RFC 8030) — browser
// vendors' and UnifiedPush servers alike — encrypted (RFC 8291 aes128gcm) and
// signed (RFC 8292 VAPID). Transport, headers and answers: docs/push.md §3.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { toBase64Url } from '../../core/encoding.ts';
import type { Provider, PushKind } from '../device.ts';
import { Http2Pool } from '../http2/pool.ts';
import { answerResult, DELIVERED, http2Result, notSent, PROVIDER_CLOSED, retryResult, type Answer } from '../outcome.ts';
import { DEFAULT_TTL_SECONDS, type PushProvider, type PushRequest, type PushResult } from '../provider.ts';
import { isPublicAddress, NOT_PUBLIC, publicOnlyLookup } from '../../server/address-guard.ts';
import { encryptWebPush } from './ece.ts';
import { decodeWebPushSubscription } from './subscription.ts';
import { VapidSigner } from './vapid.ts';

/** The Topic of message pushes: a newer one replaces an undelivered older one. */
export const MESSAGE_TOPIC = 'msg';

export type Urgency = 'very-low' | 'low' | 'normal' | 'high';

export interface WebPushConfig {
  vapid: {
    /** P-256 private key: PKCS#8 PEM, KeyObject, or web-push's raw base64url scalar. */
    privateKey: string | KeyObject;
    /** mailto: or https: contact for push service operators. */
    subject: string;
    /** JWT lifetime (default 12 h, at most 24 h). */
    lifetimeSeconds?: number;
  };
  /** Trusted CA certificates (PEM), for a test server; the system's are trusted by default. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Connections per push service origin (default 64); further pushes wait for one. */
  maxSockets?: number;
  /** A push not answered by then resolves as retry (default 10 s), waiting for a connection included. */
  requestTimeoutMs?: number;
  ttlSeconds?: Partial<Record<PushKind, number>>;
  /** An origin's idle connections are closed after this long without a push (default 5 min). */
  idleOriginMs?: number;
  /**
   * Allow endpoints on loopback and private networks (default false: such a
   * push fails, see src/server/address-guard.ts). For tests and local UnifiedPush distributors.
   */
  allowPrivateNetworks?: boolean;
  /** Milliseconds since the epoch (VAPID exp, Retry-After dates). */
  now?: () => number;
  log?: Logger;
}

export interface WebPushHeaders {
  'content-encoding': 'aes128gcm';
  'content-type': 'application/octet-stream';
  ttl: string;
  urgency: Urgency;
  topic?: string;
}

/** Request headers of a push of this kind, VAPID and length left out. */
export function webPushHeaders(kind: PushKind, ttlSeconds?: Partial<Record<PushKind, number>>): WebPushHeaders {
  const h: WebPushHeaders = {
    'content-encoding': 'aes128gcm',
    'content-type': 'application/octet-stream',
    ttl: String(ttlSeconds?.[kind] ?? DEFAULT_TTL_SECONDS[kind]),
    urgency: kind === 'message' ? 'high' : 'normal',
  };
  if (kind === 'message') h.topic = MESSAGE_TOPIC;
  return h;
}

/** A push service's answers (RFC 8030), as a StatusTable. */
export function webPushAnswer({ status, body }: Answer): PushResult | string {
  if (status >= 200 && status < 300) return DELIVERED;
  if (status === 404) return { outcome: 'invalid', reason: 'UNREGISTERED' };
  if (status === 410) return { outcome: 'invalid', reason: 'EXPIRED' };
  if (status === 413) return { outcome: 'failed', reason: 'PayloadTooLarge' };
  if (status >= 300 && status < 400) return { outcome: 'failed', reason: `HTTP ${status} redirect not followed` };
  const text = body.trim();
  return `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`;
}

interface Pending {
  resolve: (r: PushResult) => void;
  timer: NodeJS.Timeout | undefined;
  req?: http.ClientRequest;
  done: boolean;
}

/**
 * A push service origin: HTTP/2 (one connection, many streams) when it offers
 * h2 by ALPN, as browser vendors' services do, else HTTP/1.1 keep-alive.
 */
interface Origin {
  /** Until the ALPN probe is done. */
  probe?: Promise<void>;
  pool?: Http2Pool;
  agent?: http.Agent;
  lastUsed: number;
  inFlight: number;
}

export interface WebPushStats {
  inFlight: number;
  /** Push service origins with an agent now. */
  origins: number;
}

/** A subscription as sent to: decoded (and its key checked) once per token array, which a notification server keeps. */
interface Target {
  url: URL;
  p256dh: Uint8Array;
  auth: Uint8Array;
}
const targets = new WeakMap<Uint8Array, Target | null>();
function targetOf(token: Uint8Array): Target | undefined {
  let t = targets.get(token);
  if (t === undefined) {
    const sub = decodeWebPushSubscription(token);
    t = sub.ok ? { url: new URL(sub.value.endpoint), p256dh: sub.value.p256dh, auth: sub.value.auth } : null;
    targets.set(token, t);
  }
  return t ?? undefined;
}

export class WebPushProvider implements PushProvider {
  readonly serves: readonly Provider[] = ['webpush'];
  readonly vapid: VapidSigner;
  private readonly cfg: WebPushConfig;
  private readonly timeoutMs: number;
  private readonly maxSockets: number;
  private readonly idleOriginMs: number;
  private readonly now: () => number;
  private readonly origins = new Map<string, Origin>();
  private readonly pending = new Set<Pending>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(cfg: WebPushConfig) {
    this.cfg = cfg;
    this.now = cfg.now ?? Date.now;
    this.vapid = new VapidSigner({
      privateKey: cfg.vapid.privateKey,
      subject: cfg.vapid.subject,
      now: this.now,
      ...(cfg.vapid.lifetimeSeconds !== undefined ? { lifetimeSeconds: cfg.vapid.lifetimeSeconds } : {}),
    });
    this.timeoutMs = cfg.requestTimeoutMs ?? 10_000;
    this.maxSockets = cfg.maxSockets ?? 64;
    this.idleOriginMs = cfg.idleOriginMs ?? 5 * 60_000;
    if (!(Number.isInteger(this.maxSockets) && this.maxSockets >= 1)) throw new RangeError('maxSockets must be a positive integer');
    if (!(this.timeoutMs > 0)) throw new RangeError('requestTimeoutMs must be positive');
    for (const [kind, ttl] of Object.entries(cfg.ttlSeconds ?? {}))
      if (!(Number.isInteger(ttl) && ttl >= 0)) throw new RangeError(`ttlSeconds.${kind} must be a non-negative integer (RFC 8030 TTL)`);
    // many UnifiedPush servers each with a few idle keep-alive sockets would add up
    this.sweeper = setInterval(() => this.sweep(), Math.min(this.idleOriginMs, 60_000));
    this.sweeper.unref();
  }

  /** The applicationServerKey apps must subscribe with. */
  get applicationServerKey(): string {
    return this.vapid.publicKey;
  }

  get stats(): WebPushStats {
    return { inFlight: this.pending.size, origins: this.origins.size };
  }

  send(req: PushRequest): Promise<PushResult> {
    const refused = notSent(this.closed, this.serves, req.device);
    if (refused) return Promise.resolve(refused);
    const target = targetOf(req.device.token);
    if (!target) return Promise.resolve({ outcome: 'invalid', reason: 'BAD' });
    const { url, p256dh, auth } = target;
    let body: Uint8Array;
    try {
      body = encryptWebPush({ plaintext: new TextEncoder().encode(toBase64Url(req.data)), uaPublic: p256dh, authSecret: auth });
    } catch (e) {
      if (e instanceof RangeError) return Promise.resolve({ outcome: 'failed', reason: 'PayloadTooLarge' });
      return Promise.resolve({ outcome: 'invalid', reason: 'BAD' });
    }
    // an IP literal is connected to without a lookup, so it is checked here
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (!this.cfg.allowPrivateNetworks && (net.isIP(literal) ? !isPublicAddress(literal) : literal === 'localhost'))
      return Promise.resolve({ outcome: 'failed', reason: 'endpoint is not on a public network' });
    const headers: http.OutgoingHttpHeaders = {
      ...webPushHeaders(req.kind, this.cfg.ttlSeconds),
      authorization: this.vapid.authorization(url.origin),
      'content-length': body.length,
    };
    const origin = this.originFor(url);
    if (!origin.probe) return this.post(origin, url, headers, body, req.kind);
    return origin.probe.then(() => this.post(origin, url, headers, body, req.kind));
  }

  private post(origin: Origin, url: URL, headers: http.OutgoingHttpHeaders, body: Uint8Array, kind: PushKind): Promise<PushResult> {
    if (this.closed) return Promise.resolve(PROVIDER_CLOSED);
    return new Promise<PushResult>((resolve) => {
      const p: Pending = { resolve, done: false, timer: undefined };
      this.pending.add(p);
      origin.inFlight++;
      const finish = (r: PushResult) => {
        if (p.done) return;
        p.done = true;
        clearTimeout(p.timer);
        this.pending.delete(p);
        origin.inFlight--;
        origin.lastUsed = this.now();
        if (r.outcome !== 'delivered') this.logResult(kind, r);
        resolve(r);
      };
      p.resolve = finish;
      if (origin.pool) {
        // the pool times requests out itself
        const request = { headers: { ':method': 'POST', ':path': `${url.pathname}${url.search}`, ...headers }, body };
        return origin.pool.send(() => request, (r) => finish(http2Result(r, webPushAnswer, this.now)));
      }
      p.timer = setTimeout(() => {
        finish(retryResult('timeout'));
        p.req?.destroy();
      }, this.timeoutMs);
      let request: http.ClientRequest;
      try {
        request = (url.protocol === 'https:' ? https.request : http.request)(url, { method: 'POST', agent: origin.agent!, headers });
      } catch (e) {
        return finish({ outcome: 'failed', reason: `request rejected: ${(e as { code?: string }).code ?? String(e)}` });
      }
      p.req = request;
      request.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          res.resume(); // nothing to read, but the socket is free only once the body is consumed
          return finish(DELIVERED);
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 512) text += c;
        });
        const answered = () => finish(answerResult({ status, headers: res.headers, body: text }, webPushAnswer, this.now));
        res.on('end', answered);
        res.on('error', answered);
        res.on('close', answered);
      });
      request.on('error', (e: NodeJS.ErrnoException) =>
        finish(e.code === NOT_PUBLIC ? { outcome: 'failed', reason: 'endpoint is not on a public network' } : retryResult(`network: ${e.code ?? e.message}`)),
      );
      request.end(body);
    });
  }

  /** Stops taking pushes; those in flight resolve as retry; connections are closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of [...this.pending]) {
      p.resolve(PROVIDER_CLOSED);
      p.req?.destroy();
    }
    for (const o of this.origins.values()) this.closeOrigin(o);
    this.origins.clear();
  }

  private closeOrigin(o: Origin): void {
    o.agent?.destroy();
    void o.pool?.close();
  }

  private originFor(url: URL): Origin {
    let o = this.origins.get(url.origin);
    if (o) return o;
    const lookup = this.cfg.allowPrivateNetworks ? {} : { lookup: publicOnlyLookup };
    const ca = this.cfg.ca ? { ca: this.cfg.ca } : {};
    const origin: Origin = { lastUsed: this.now(), inFlight: 0 };
    const h1 = () => {
      const opts = { keepAlive: true, maxSockets: this.maxSockets, scheduling: 'lifo' as const, ...lookup };
      origin.agent = url.protocol === 'https:' ? new https.Agent({ ...opts, ...ca }) : new http.Agent(opts);
    };
    if (url.protocol !== 'https:') h1();
    else
      origin.probe = alpnOf(url, this.timeoutMs, { ...ca, ...lookup }).then((alpn) => {
        delete origin.probe;
        if (alpn === 'h2')
          origin.pool = new Http2Pool({ url: url.origin, name: 'webpush', requestTimeoutMs: this.timeoutMs, log: this.cfg.log, ...ca, ...lookup });
        else {
          h1();
          // unreachable now: probe again on a later push rather than settle for HTTP/1.1
          if (alpn === undefined) this.origins.delete(url.origin);
        }
      });
    this.origins.set(url.origin, origin);
    return origin;
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, o] of this.origins)
      if (o.inFlight === 0 && !o.probe && now - o.lastUsed > this.idleOriginMs) {
        this.closeOrigin(o);
        this.origins.delete(key);
      }
  }

  // Logs carry the kind and the outcome only: an endpoint (or a self-hosted
  // UnifiedPush server's origin) identifies a user.
  private logResult(kind: PushKind, r: PushResult): void {
    const log = this.cfg.log;
    if (!log) return;
    if (r.outcome === 'delivered') return;
    if (r.outcome === 'failed' && /^HTTP 40[13]/.test(r.reason)) log.warn({ event: 'webpush_vapid_refused', kind, reason: r.reason });
    else log.debug({ event: 'webpush_not_delivered', kind, outcome: r.outcome, reason: r.reason });
  }
}

/** The protocol a push service's origin offers by ALPN: 'h2', 'http/1.1', or undefined if it could not be reached. */
function alpnOf(url: URL, timeoutMs: number, opts: Pick<tls.ConnectionOptions, 'ca' | 'lookup'>): Promise<'h2' | 'http/1.1' | undefined> {
  return new Promise((resolve) => {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const socket = tls.connect({
      host,
      port: Number(url.port || 443),
      ALPNProtocols: ['h2', 'http/1.1'],
      ...(net.isIP(host) ? {} : { servername: host }),
      ...opts,
    });
    const done = (alpn: 'h2' | 'http/1.1' | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alpn);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('secureConnect', () => done(socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1'));
    socket.once('error', () => done(undefined));
  });
}
