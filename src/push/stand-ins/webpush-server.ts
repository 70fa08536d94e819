// A Web Push test service: a browser vendor's push service (RFC 8030) on
// loopback, and the browser behind it, for tests of any Web Push client.
//
// subscribe() does what a browser does for PushManager.subscribe(): a P-256
// key pair and a 16-byte auth secret (RFC 8291 §2–3), optionally locked to an
// application server key (RFC 8292 §4), and returns PushSubscription.toJSON().
// The private key stays here, so each accepted push is decrypted and recorded
// with its plaintext, as the service worker would see it.
//
// HTTPS (HTTP/2, or HTTP/1.1 by ALPN) with the committed self-signed certificate (fixtures/), or plain
// HTTP (`tls: false`) like a local UnifiedPush distributor. POST /push/<id>:
//
//   405  not POST
//   404  no such subscription (any other path, too)
//   410  the subscription was unsubscribed (autopush, FCM and Apple answer so)
//   401  locked subscription, no vapid credentials      RFC 8292 §4.2
//   403  vapid credentials invalid: unparsable, t or k missing, bad signature,
//        alg not ES256, aud not this service's origin, exp missing, past, or
//        more than 24 h ahead, sub missing or not mailto:/https:, or k not the
//        key a locked subscription was made with       RFC 8292 §2, §4.2
//        (sub is a MAY in §2.1, but Apple's and Mozilla's services refuse a JWT
//        without one; `requireSub: false` accepts it)
//   400  TTL missing or not delta-seconds               RFC 8030 §5.2
//   400  Urgency not very-low|low|normal|high           RFC 8030 §5.3
//   400  Topic over 32 chars or not base64url           RFC 8030 §5.4
//   415  Content-Encoding not aes128gcm (with Accept-Encoding: aes128gcm):
//        RFC 9110 §15.5.16 names 415 for a content coding the server does not
//        take; the body is opaque otherwise, so it is not a malformed request
//   413  body over 4096 bytes                           RFC 8030 §7.2 (≤ 4096 must pass)
//   400  empty body (UnifiedPush: 1..4096), k equal to the body's keyid
//        (RFC 8292 §3.2 SHOULD), or a body that does not decrypt (RFC 8291)
//   201  accepted, with Location (the push message resource) and TTL
//
// A vapid credential is verified once per distinct (t, k) and the verdict
// cached: clients reuse their JWT (RFC 8292 §4 encourages it), and this server
// must stay light enough to measure clients against. exp is checked per request.
//
// A request that passes all checks gets the scripted reply for its endpoint, or
// the next scripted reply if any, else 201; an accepted (2xx) push is recorded
// in `messages` and emitted as 'message'. Scripts can also hang a request, drop
// its connection, or delay the answer.
import { createECDH, createPublicKey, randomBytes, type ECDH, type KeyObject } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import { fromBase64Url } from '../../core/encoding.ts';
import { decodeJws, verifyJws } from '../jws.ts';
import { decryptWebPush, MAX_PUSH_BODY, readWebPushHeader, WebPushDecryptError } from '../webpush/ece.ts';
import type { WebPushSubscriptionJSON } from '../webpush/subscription.ts';
import { MAX_VAPID_LIFETIME_SECONDS, vapidSubjectProblem } from '../webpush/vapid.ts';
import { ProviderTestServer, readBody, type AnyRequest, type AnyResponse } from './http2-server.ts';
import { Replies } from './replies.ts';


export { MAX_PUSH_BODY };
export const URGENCIES = ['very-low', 'low', 'normal', 'high'] as const;
export type WebPushUrgency = (typeof URGENCIES)[number];
const URGENCY_SET: ReadonlySet<string> = new Set(URGENCIES);
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;
const TTL = /^\d{1,10}$/;
const PATH = /^\/push\/([A-Za-z0-9_-]+)$/;
/** Verdicts on vapid credentials kept (oldest dropped first): a bound on memory, not on clients. */
const VERIFIED_CACHE = 10_000;

/** A scripted answer to a request that passed the checks. */
export type WebPushReply =
  | { status: number; retryAfter?: number | string; delayMs?: number; reason?: string }
  /** Destroy the request's connection while it is in flight. */
  | { drop: true; delayMs?: number }
  /** Never answer (until the connection goes away). */
  | { hang: true };

export interface VapidClaims {
  aud: string | string[];
  exp: number;
  sub?: string;
}

export interface WebPushRecordedMessage {
  endpoint: string;
  /** The decrypted push message (empty with `decrypt: false`). */
  plaintext: Uint8Array;
  /** Request headers, authorization left out (a push service never forwards it: RFC 8292 §4.2). */
  headers: Record<string, string>;
  ttl: number;
  urgency: WebPushUrgency;
  topic: string | undefined;
  /** The vapid credentials it came with, for tests (the user agent never sees them). */
  vapid: { token: string; key: string; claims: VapidClaims } | undefined;
  /** Server clock (ms) when it was accepted. */
  time: number;
  /** Which connection (1, 2, … in order of arrival) carried it. */
  connection: number;
}

export interface WebPushExchange {
  endpoint: string | undefined;
  status: number;
  reason: string | undefined;
  time: number;
  connection: number;
}

export interface WebPushTestServerOptions {
  /** HTTPS with the test certificate (default), or plain HTTP. */
  tls?: boolean;
  host?: string;
  port?: number;
  /** Server clock, ms (JWT exp, record times). */
  now?: () => number;
  /** Refuse a JWT without a mailto:/https: sub (default true, as Apple and Mozilla do). */
  requireSub?: boolean;
  /** Longest TTL kept; a longer one is lowered and the response's TTL says so (RFC 8030 §5.2). Default 28 days. */
  maxTtlSeconds?: number;
  /** Answer every request this much later (default 0). */
  delayMs?: number;
  /** Keep accepted messages in `messages` and answers in `exchanges` (default true; off for load runs). */
  record?: boolean;
  /**
   * Decrypt each body as the browser would (default true). Off, the server is the push
   * service alone (which cannot read messages either): the header is still checked, the
   * ECDH per message is saved for load runs, and recorded plaintexts are empty.
   */
  decrypt?: boolean;
}

interface Subscription {
  id: string;
  endpoint: string;
  ecdh: ECDH;
  p256dh: Buffer;
  auth: Buffer;
  /** The application server key it is locked to (65 bytes). */
  locked: Buffer | undefined;
  gone: boolean;
}

interface Refusal {
  status: number;
  reason: string;
}

type Verdict = { ok: true; key: Buffer; claims: VapidClaims } | { ok: false; reason: string };

type Events = {
  request: [{ endpoint: string | undefined; headers: IncomingHttpHeaders; connection: number }];
  message: [WebPushRecordedMessage];
  response: [WebPushExchange];
};

const EMPTY = Buffer.alloc(0);

export class WebPushTestServer extends ProviderTestServer<Events> {
  readonly tls: boolean;
  readonly messages: WebPushRecordedMessage[] = [];
  readonly exchanges: WebPushExchange[] = [];
  /** Requests answered so far: accepted (2xx) and the rest; and JWT signatures verified. */
  readonly counts = { accepted: 0, rejected: 0, verified: 0 };
  now: () => number;
  delayMs: number;
  requireSub: boolean;
  maxTtlSeconds: number;
  record: boolean;
  decrypt: boolean;

  private readonly subs = new Map<string, Subscription>();
  private readonly verified = new Map<string, Verdict>();
  private readonly replies = new Replies<WebPushReply>();
  private readonly connectionIds = new WeakMap<object, number>();
  private connectionCount = 0;
  private messageCounter = 0;

  private constructor(opts: WebPushTestServerOptions) {
    // over TLS, HTTP/2 or HTTP/1.1 by ALPN, as browser vendors' push services offer both
    super({ tls: opts.tls ?? true, allowHTTP1: true });
    this.tls = opts.tls ?? true;
    this.now = opts.now ?? Date.now;
    this.delayMs = opts.delayMs ?? 0;
    this.requireSub = opts.requireSub ?? true;
    this.maxTtlSeconds = opts.maxTtlSeconds ?? 28 * 24 * 3600;
    this.record = opts.record ?? true;
    this.decrypt = opts.decrypt ?? true;
  }

  static async start(opts: WebPushTestServerOptions = {}): Promise<WebPushTestServer> {
    return new WebPushTestServer(opts).listen(opts);
  }

  /** Connections accepted so far (counted at their first request). */
  get connectionsAccepted(): number {
    return this.connectionCount;
  }
  get connectionsOpen(): number {
    return this.sockets.size;
  }

  // ---- the browser side

  /**
   * A new subscription, as PushManager.subscribe() makes it; with
   * applicationServerKey (base64url, 65 bytes) it is locked to that VAPID key.
   */
  subscribe(opts: { applicationServerKey?: string } = {}): WebPushSubscriptionJSON {
    let locked: Buffer | undefined;
    if (opts.applicationServerKey !== undefined) {
      const k = fromBase64Url(opts.applicationServerKey);
      if (!k || k.length !== 65 || k[0] !== 0x04) throw new TypeError('applicationServerKey must be a 65-byte uncompressed P-256 point');
      locked = Buffer.from(k);
    }
    const ecdh = createECDH('prime256v1');
    ecdh.generateKeys();
    // ~160 random bits, as UnifiedPush asks of endpoints
    const id = randomBytes(20).toString('base64url');
    const sub: Subscription = { id, endpoint: `${this.url}/push/${id}`, ecdh, p256dh: ecdh.getPublicKey(), auth: randomBytes(16), locked, gone: false };
    this.subs.set(id, sub);
    return { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh.toString('base64url'), auth: sub.auth.toString('base64url') } };
  }

  /** Ends a subscription: pushes to it get 410 Gone from now on. */
  unsubscribe(endpoint: string): void {
    const sub = this.subscriptionOf(endpoint);
    if (sub) sub.gone = true;
  }

  /** Forgets a subscription entirely: pushes to it get 404. */
  forget(endpoint: string): void {
    const sub = this.subscriptionOf(endpoint);
    if (sub) this.subs.delete(sub.id);
  }

  /** The messages accepted for one endpoint. */
  messagesFor(endpoint: string): WebPushRecordedMessage[] {
    return this.messages.filter((m) => m.endpoint === endpoint);
  }

  // ---- scripting

  /** Answers requests to this endpoint so, `times` times (default: until cleared). */
  replyTo(endpoint: string, reply: WebPushReply, times = Infinity): this {
    this.replies.to(endpoint, reply, times);
    return this;
  }

  /** Answers the next n requests (that no endpoint script claims) so. */
  replyNext(reply: WebPushReply, n = 1): this {
    this.replies.queue(reply, n);
    return this;
  }

  clearReplies(): this {
    this.replies.clear();
    return this;
  }

  /** Resolves once `n` messages in all were accepted. */
  async waitForMessages(n: number, timeoutMs = 5000): Promise<WebPushRecordedMessage[]> {
    return this.waitFor(this.messages, 'message', n, timeoutMs, 'messages');
  }

  // ---- the protocol

  private subscriptionOf(endpoint: string): Subscription | undefined {
    const prefix = `${this.url}/push/`;
    return endpoint.startsWith(prefix) ? this.subs.get(endpoint.slice(prefix.length)) : undefined;
  }

  private connectionOf(req: AnyRequest): number {
    // HTTP/2: one session per connection (req.socket is a proxy per stream)
    const key: object = 'stream' in req ? req.stream.session ?? req.stream : req.socket;
    let id = this.connectionIds.get(key);
    if (id === undefined) this.connectionIds.set(key, (id = ++this.connectionCount));
    return id;
  }

  protected override onRequest(req: AnyRequest, res: AnyResponse): void {
    const connection = this.connectionOf(req);
    const settle = this.admit(res);
    // a body over MAX_PUSH_BODY is refused (413) before it is looked at
    readBody(req, MAX_PUSH_BODY, (body, size) => this.handle(req, res, body ?? EMPTY, size, connection, settle));
  }

  private handle(req: AnyRequest, res: AnyResponse, body: Buffer, size: number, connection: number, settle: () => void): void {
    const m = PATH.exec(req.url ?? '');
    const sub = m ? this.subs.get(m[1]!) : undefined;
    const endpoint = sub?.endpoint;
    this.emit('request', { endpoint, headers: req.headers, connection });

    let accepted: Omit<WebPushRecordedMessage, 'time' | 'connection'> | undefined;
    const answer = (status: number, reason?: string, extra: { retryAfter?: number | string; delayMs?: number; headers?: Record<string, string> } = {}) => {
      const send = () => {
        settle();
        if (res.destroyed || res.writableEnded) return;
        const time = this.now();
        const h: Record<string, string> = { ...extra.headers };
        if (extra.retryAfter !== undefined) h['retry-after'] = String(extra.retryAfter);
        const ok = status >= 200 && status < 300;
        let out = '';
        if (ok && accepted) h.location = `${this.url}/m/${(++this.messageCounter).toString(36)}`;
        if (ok && accepted) h.ttl = String(accepted.ttl);
        if (!ok) {
          h['content-type'] = 'application/json';
          out = JSON.stringify({ code: status, reason });
        }
        h['content-length'] = String(Buffer.byteLength(out));
        try {
          res.writeHead(status, h);
          res.end(out);
        } catch {
          return; // the connection went away meanwhile
        }
        if (ok) this.counts.accepted++;
        else this.counts.rejected++;
        const exchange: WebPushExchange = { endpoint, status, reason, time, connection };
        if (this.record) this.exchanges.push(exchange);
        this.emit('response', exchange);
        if (ok && accepted) {
          const msg: WebPushRecordedMessage = { ...accepted, time, connection };
          if (this.record) this.messages.push(msg);
          this.emit('message', msg);
        }
      };
      const delay = (extra.delayMs ?? 0) + this.delayMs;
      if (delay > 0) setTimeout(send, delay);
      else send();
    };

    const check = this.check(req, sub, body, size);
    if ('status' in check) {
      const headers: Record<string, string> = {};
      if (check.status === 415) headers['accept-encoding'] = 'aes128gcm';
      if (check.status === 405) headers.allow = 'POST';
      return answer(check.status, check.reason, { headers });
    }
    accepted = check;

    const reply = this.replies.take(endpoint!);
    if (!reply) return answer(201);
    if ('hang' in reply) return;
    if ('drop' in reply) {
      const drop = () => ('stream' in req ? req.stream.session?.destroy() : req.socket.destroy());
      if (reply.delayMs) setTimeout(drop, reply.delayMs);
      else drop();
      return;
    }
    if (reply.status < 200 || reply.status >= 300) accepted = undefined;
    answer(reply.status, reply.reason ?? (reply.status >= 300 ? http.STATUS_CODES[reply.status] : undefined), reply);
  }

  private check(
    req: AnyRequest,
    sub: Subscription | undefined,
    body: Buffer,
    size: number,
  ): Refusal | Omit<WebPushRecordedMessage, 'time' | 'connection'> {
    const fail = (status: number, reason: string): Refusal => ({ status, reason });
    const h = req.headers;
    if (req.method !== 'POST') return fail(405, 'method not allowed');
    if (!sub) return fail(404, 'no such subscription');
    if (sub.gone) return fail(410, 'subscription is gone');

    const auth = this.authenticate(h.authorization);
    if (auth === 'absent') {
      if (sub.locked) return fail(401, 'vapid credentials required');
    } else if (!auth.ok) return fail(403, auth.reason);
    else if (sub.locked && !sub.locked.equals(auth.key)) return fail(403, 'vapid key is not the one the subscription was made with');

    const ttlHeader = h.ttl;
    if (ttlHeader === undefined) return fail(400, 'TTL header required');
    if (typeof ttlHeader !== 'string' || !TTL.test(ttlHeader)) return fail(400, 'TTL must be delta-seconds');
    const urgency: unknown = h.urgency ?? 'normal';
    if (typeof urgency !== 'string' || !URGENCY_SET.has(urgency)) return fail(400, 'bad Urgency');
    const topic = h.topic as string | string[] | undefined;
    if (topic !== undefined && (typeof topic !== 'string' || !TOPIC.test(topic))) return fail(400, 'Topic must be 1..32 base64url characters');
    if (h['content-encoding'] !== 'aes128gcm') return fail(415, 'Content-Encoding must be aes128gcm');
    if (size > MAX_PUSH_BODY) return fail(413, `body over ${MAX_PUSH_BODY} bytes`);
    if (size === 0) return fail(400, 'empty body');

    let plaintext: Uint8Array;
    try {
      const { keyid } = readWebPushHeader(body);
      if (auth !== 'absent' && auth.ok && auth.key.equals(keyid)) return fail(400, 'vapid key equals the encryption key');
      plaintext = this.decrypt ? decryptWebPush(body, { uaPrivate: sub.ecdh, uaPublic: sub.p256dh, authSecret: sub.auth }) : new Uint8Array(0);
    } catch (e) {
      if (e instanceof WebPushDecryptError) return fail(400, `undecryptable: ${e.message}`);
      throw e;
    }

    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) if (k !== 'authorization' && v !== undefined) headers[k] = String(v);
    const vapid = auth !== 'absent' && auth.ok ? { token: auth.t, key: auth.k, claims: auth.claims } : undefined;
    return {
      endpoint: sub.endpoint,
      plaintext,
      headers,
      ttl: Math.min(Number(ttlHeader), this.maxTtlSeconds),
      urgency: urgency as WebPushUrgency,
      topic,
      vapid,
    };
  }

  /** 'absent' if there are no vapid credentials, else the (cached) verdict, exp checked now. */
  private authenticate(header: string | undefined): 'absent' | Exclude<Verdict, { ok: true }> | (Extract<Verdict, { ok: true }> & { t: string; k: string }) {
    if (header === undefined) return 'absent';
    const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(header.trim());
    // another scheme (the draft's "WebPush") is no vapid authentication
    if (!m || m[1]!.toLowerCase() !== 'vapid') return 'absent';
    const params = parseAuthParams(m[2] ?? '');
    if (!params) return { ok: false, reason: 'malformed vapid credentials' };
    const t = params.get('t');
    const k = params.get('k');
    if (t === undefined || k === undefined) return { ok: false, reason: 'vapid credentials need t and k' };
    const cacheKey = `${t} ${k}`;
    let verdict = this.verified.get(cacheKey);
    if (!verdict) {
      verdict = this.verifyJwt(t, k);
      if (this.verified.size >= VERIFIED_CACHE) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(cacheKey, verdict);
    }
    if (!verdict.ok) return verdict;
    const now = Math.floor(this.now() / 1000);
    if (now >= verdict.claims.exp) return { ok: false, reason: 'JWT expired' };
    if (verdict.claims.exp - now > MAX_VAPID_LIFETIME_SECONDS) return { ok: false, reason: 'JWT exp more than 24 h ahead' };
    return { ...verdict, t, k };
  }

  /** Everything about a credential that does not depend on the time. */
  private verifyJwt(t: string, k: string): Verdict {
    const bad = (reason: string): Verdict => ({ ok: false, reason });
    const keyBytes = fromBase64Url(k);
    if (!keyBytes || keyBytes.length !== 65 || keyBytes[0] !== 0x04) return bad('k is not a base64url uncompressed P-256 point');
    let key: KeyObject;
    try {
      const b = Buffer.from(keyBytes);
      key = createPublicKey({
        key: { kty: 'EC', crv: 'P-256', x: b.subarray(1, 33).toString('base64url'), y: b.subarray(33).toString('base64url') },
        format: 'jwk',
      });
    } catch {
      return bad('k is not a point on P-256');
    }
    const jws = decodeJws(t);
    if ('error' in jws) return bad(`JWT ${jws.error}`);
    const { header, claims } = jws;
    if (header.alg !== 'ES256') return bad('JWT alg must be ES256');
    if (header.typ !== undefined && String(header.typ).toUpperCase() !== 'JWT') return bad('JWT typ must be JWT');
    if (jws.signature.length !== 64) return bad('JWT signature is not 64 bytes (r ‖ s)');
    this.counts.verified++;
    if (!verifyJws(jws, 'ES256', key)) return bad('JWT signature does not verify with k');
    const aud = claims.aud;
    const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined;
    if (!auds) return bad('JWT aud missing');
    if (!auds.includes(this.url)) return bad(`JWT aud is not ${this.url}`);
    const exp = claims.exp;
    if (typeof exp !== 'number' || !Number.isInteger(exp)) return bad('JWT exp missing or not an integer');
    const sub = claims.sub;
    if (sub !== undefined || this.requireSub) {
      const problem = vapidSubjectProblem(sub);
      if (problem) return bad(`JWT sub: ${problem}`);
    }
    return { ok: true, key: Buffer.from(keyBytes), claims: { aud: aud as string | string[], exp, ...(typeof sub === 'string' ? { sub } : {}) } };
  }
}

/**
 * RFC 9110 §11.2 auth-params: `name = (token | quoted-string)`, comma-separated,
 * whitespace around. Names are case-insensitive; a repeated one, or anything
 * else, makes the credentials malformed (undefined).
 */
function parseAuthParams(s: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  const re = /[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)|"((?:[^"\\]|\\.)*)")[ \t]*(,|$)/y;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) return undefined;
    const name = m[1]!.toLowerCase();
    if (out.has(name)) return undefined;
    out.set(name, m[2] ?? m[3]!.replace(/\\(.)/g, '$1'));
    at = re.lastIndex;
    if (m[4] === '' && at < s.length) return undefined;
  }
  return out;
}
