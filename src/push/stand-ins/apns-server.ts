// An APNs test server: Apple's provider API on loopback, for tests of any APNs client.
//
// It speaks the real wire protocol — HTTP/2 over TLS (the committed self-signed
// certificate in fixtures/, for localhost and 127.0.0.1), POST /3/device/<token>,
// ES256 provider tokens — and answers as Apple documents in "Sending notification
// requests to APNs" and "Handling notification responses from APNs":
//
//   405 MethodNotAllowed        :method is not POST
//   404 BadPath                 :path is not /3/device/<token>
//   400 MissingDeviceToken      /3/device/ with no token
//   400 DuplicateHeaders        an apns-* or authorization header repeated
//   403 MissingProviderToken    no authorization header
//   403 InvalidProviderToken    not a bearer ES256 JWT, unknown kid, iss not the key's team,
//                               bad signature, iat missing or in the future
//   403 ExpiredProviderToken    iat more than an hour ago
//   400 MissingTopic            no apns-topic
//   400 TopicDisallowed         apns-topic not one of the configured topics
//   400 InvalidPushType         apns-push-type not one of Apple's types
//   400 BadPriority             apns-priority not 1, 5 or 10
//   400 BadExpirationDate       apns-expiration not a non-negative integer
//   400 BadMessageId            apns-id not a UUID
//   400 BadCollapseId           apns-collapse-id over 64 bytes
//   400 BadDeviceToken          device token not 64 hex digits
//   413 PayloadTooLarge         body over 4096 bytes (5120 for voip)
//   400 PayloadEmpty            empty body; also (Apple documents no separate reason)
//                               a body that is not a JSON object with an `aps` dictionary
//
// Errors carry {"reason": …} (and "timestamp" in ms for 410), every response an
// apns-id (the request's, or a new UUID-shaped one). A request that passes all
// checks gets the scripted reply for its token or the next scripted reply if
// any, else 200; each 200 is recorded in `pushes` (unless `record: false`),
// counted in `counts` and emitted as 'push'. Scripts can also hang
// a request, drop its connection, reset its stream, send GOAWAY on its
// connection, or delay it; replyRandomly() answers a share of all requests
// with faults; goaway() and dropConnections() act on every open connection.
//
// Light enough to measure clients against (bench/push.ts): a provider token is
// verified once per distinct token string (the verdict cached, bounded; only its
// age is checked per request), as Apple verifies it once per connection; the
// body is parsed once (the payload check); apns-ids come from a counter; a push
// record is built only when kept (`record`) or listened for.
//
// Flow control: Apple does not publish its HTTP/2 windows. Node's default
// connection receive window (65,535 bytes) would hold a client to ~22 pushes
// of 3 KB in flight per connection, making the test server, not the client,
// the bottleneck. So the connection window defaults to maxConcurrentStreams ×
// 5120 bytes (the largest payload, VoIP's): every allowed stream can carry a
// full body without waiting for WINDOW_UPDATE. `connectionWindowSize` and
// `streamWindowSize` (default Node's 65,535: above any payload) change them.
import { createPublicKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { generatePemKeyPair } from '../../server/identity.ts';
import { decodeJws, verifyJws } from '../jws.ts';
import { ProviderTestServer } from './http2-server.ts';
import { Replies } from './replies.ts';


export const APNS_PUSH_TYPES = [
  'alert',
  'background',
  'location',
  'voip',
  'complication',
  'fileprovider',
  'mdm',
  'liveactivity',
  'pushtotalk',
  'widgets',
  'controls',
] as const;
const PUSH_TYPES: ReadonlySet<string> = new Set(APNS_PUSH_TYPES);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PRIORITIES: ReadonlySet<string> = new Set(['1', '5', '10']);
/** Largest body Apple takes for a VoIP push; the largest of any push type. */
const MAX_PAYLOAD_ANY = 5120;
/** Verdicts on provider tokens kept (oldest dropped first): a bound, not a limit on clients. */
const VERIFIED_CACHE = 10_000;
const DEVICE_TOKEN = /^[0-9a-f]{64}$/i;
const PATH_PREFIX = '/3/device/';
/** Reason for a body that is not a JSON object with `aps`: Apple documents none of its own. */
export const INVALID_PAYLOAD_REASON = 'PayloadEmpty';

/** A team's APNs auth key: the .p8 the provider signs with, the public key Apple verifies with. */
export interface ApnsTeamKey {
  teamId: string;
  keyId: string;
  /** PKCS#8 PEM, as Apple's .p8 download. */
  privateKey: string;
  /** SPKI PEM. */
  publicKey: string;
}

const appleId = () => {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return [...randomBytes(10)].map((b) => A[b % A.length]).join('');
};

/** A new EC P-256 key pair in Apple's format, with random 10-character team and key IDs unless given. */
export function createApnsKey(opts: { teamId?: string; keyId?: string } = {}): ApnsTeamKey {
  return { teamId: opts.teamId ?? appleId(), keyId: opts.keyId ?? appleId(), ...generatePemKeyPair('ec', { namedCurve: 'prime256v1' }) };
}

/** A scripted answer to a request that passed the checks. */
export type ApnsReply =
  | { status: number; reason?: string; retryAfter?: number | string; timestamp?: number; delayMs?: number }
  /** Destroy the request's connection (TCP/TLS, no GOAWAY) while it is in flight. */
  | { drop: true; delayMs?: number }
  /** Never answer (until the connection goes away). */
  | { hang: true }
  /** Reset the request's stream (RST_STREAM, default INTERNAL_ERROR) instead of answering. */
  | { reset: true; code?: number }
  /**
   * GOAWAY (NO_ERROR, {"reason"} as its data) on the request's connection, which
   * then closes: this request is refused (RST_STREAM REFUSED_STREAM), the
   * connection's other requests still answered.
   */
  | { goaway: true; reason?: string };

export interface ApnsJwtClaims {
  kid: string;
  iss: string;
  iat: number;
}

export interface ApnsRecordedPush {
  /** The device token, as in the path. */
  token: string;
  /** Request headers, pseudo-headers and authorization left out. */
  headers: Record<string, string>;
  /** The parsed JSON body. */
  payload: { aps: Record<string, unknown> } & Record<string, unknown>;
  body: string;
  apnsId: string;
  jwt: ApnsJwtClaims & { token: string };
  /** Server clock (ms) when it was accepted. */
  time: number;
  /** Which connection (1, 2, … in order of arrival) carried it. */
  connection: number;
}

export interface ApnsExchange {
  token: string | undefined;
  status: number;
  reason: string | undefined;
  apnsId: string;
  time: number;
  connection: number;
}

export interface ApnsRequestInfo {
  token: string | undefined;
  headers: IncomingHttpHeaders;
  connection: number;
}

export interface ApnsTestServerOptions {
  /** Allowed apns-topic values (bundle IDs). */
  topics: string[];
  /** Team keys whose tokens are accepted; more with server.keys.create()/add(). */
  keys?: Array<Pick<ApnsTeamKey, 'teamId' | 'keyId' | 'publicKey'>>;
  /** Server clock, ms (JWT age, timestamps). */
  now?: () => number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 1000, like Apple). */
  maxConcurrentStreams?: number;
  /** A provider token older than this is expired (default 3600). */
  tokenMaxAgeSeconds?: number;
  /** Answer every request this much later (default 0). */
  delayMs?: number;
  /**
   * HTTP/2 connection receive window in bytes (default maxConcurrentStreams × 5120: never the
   * bottleneck; Apple's value is not public). Node's own default, 65,535, caps a connection at
   * ~22 pushes of 3 KB in flight.
   */
  connectionWindowSize?: number;
  /** HTTP/2 per-stream receive window in bytes (default 65,535, Node's: more than any payload). */
  streamWindowSize?: number;
  /**
   * Keep every accepted push in `pushes` and every answer in `exchanges` (default true).
   * Off for load runs, whose memory would otherwise grow; the events and `counts` still tell.
   */
  record?: boolean;
  host?: string;
  port?: number;
}

interface Check {
  status: number;
  reason: string;
}

/** A request stream, from its HEADERS to its answer. */
interface Incoming {
  stream: ServerHttp2Stream;
  headers: IncomingHttpHeaders;
  /** Node's raw header list (not in @types/node): it shows repeated headers. */
  rawHeaders: string[];
  connection: number;
  /** The body, up to 64 KiB: its first chunk, or all of them once there is a second. */
  first: Buffer | undefined;
  more: Buffer[] | undefined;
  size: number;
  /** No longer counted in `pending`. */
  settled: boolean;
}

interface Answering {
  r: Incoming;
  token: string | undefined;
  requestId: string;
  accepted: Accepted | undefined;
}

const noop = () => {};
const EMPTY = Buffer.alloc(0);
const fail = (status: number, reason: string): Check => ({ status, reason });
const isDict = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A request that passed every check: what its push record is made of, if one is made. */
interface Accepted {
  token: string;
  payload: ApnsRecordedPush['payload'];
  body: string;
  auth: ApnsJwtClaims;
}

function recordOf(a: Accepted, headers: IncomingHttpHeaders, apnsId: string, time: number, connection: number): ApnsRecordedPush {
  const recorded: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && k !== 'authorization' && v !== undefined) recorded[k] = String(v);
  return {
    token: a.token.toLowerCase(),
    headers: recorded,
    payload: a.payload,
    body: a.body,
    apnsId,
    jwt: { ...a.auth, token: String(headers.authorization).slice('bearer '.length) },
    time,
    connection,
  };
}

type Events = {
  request: [ApnsRequestInfo];
  push: [ApnsRecordedPush];
  response: [ApnsExchange];
};

export class ApnsTestServer extends ProviderTestServer<Events> {
  readonly pushes: ApnsRecordedPush[] = [];
  readonly exchanges: ApnsExchange[] = [];
  readonly topics: Set<string>;
  /** Requests answered so far: accepted (200) and the rest. */
  readonly counts = { accepted: 0, rejected: 0 };
  record: boolean;
  now: () => number;
  delayMs: number;
  tokenMaxAgeSeconds: number;
  /** Team keys by key ID. */
  readonly keys = {
    /** Creates a team key, trusts it, and returns it (with the .p8 for the provider). */
    create: (opts: { teamId?: string; keyId?: string } = {}): ApnsTeamKey => {
      const k = createApnsKey(opts);
      this.keys.add(k);
      return k;
    },
    add: (k: Pick<ApnsTeamKey, 'teamId' | 'keyId' | 'publicKey'>): void => {
      this.teamKeys.set(k.keyId, { teamId: k.teamId, key: createPublicKey(k.publicKey) });
      // cached verdicts may now be wrong (an unknown kid became known)
      this.verified.clear();
    },
    remove: (keyId: string): void => {
      this.teamKeys.delete(keyId);
      this.verified.clear();
    },
  };

  private readonly teamKeys = new Map<string, { teamId: string; key: KeyObject }>();
  /**
   * Verdicts by authorization header value (the token with its scheme): Apple too verifies a
   * token once, not per request. Only the age is checked per request.
   */
  private readonly verified = new Map<string, ApnsJwtClaims | Check>();
  /** apns-ids we make: a random UUID's first 24 characters and a counter (randomUUID per answer costs). */
  private readonly idPrefix = randomUUID().slice(0, 24);
  private idCounter = randomBytes(6).readUIntBE(0, 6);
  private readonly replies = new Replies<ApnsReply>();

  private constructor(opts: ApnsTestServerOptions) {
    const maxStreams = opts.maxConcurrentStreams ?? 1000;
    super({
      allowHTTP1: false,
      settings: {
        maxConcurrentStreams: maxStreams,
        ...(opts.streamWindowSize !== undefined ? { initialWindowSize: opts.streamWindowSize } : {}),
      },
      connectionWindowSize: Math.min(2 ** 31 - 1, opts.connectionWindowSize ?? Math.max(65_535, maxStreams * MAX_PAYLOAD_ANY)),
    });
    this.topics = new Set(opts.topics);
    this.now = opts.now ?? Date.now;
    this.delayMs = opts.delayMs ?? 0;
    this.tokenMaxAgeSeconds = opts.tokenMaxAgeSeconds ?? 3600;
    this.record = opts.record ?? true;
    for (const k of opts.keys ?? []) this.keys.add(k);
  }

  static async start(opts: ApnsTestServerOptions): Promise<ApnsTestServer> {
    return new ApnsTestServer(opts).listen(opts);
  }

  /** Connections accepted so far. */
  get connectionsAccepted(): number {
    return this.sessionCount;
  }
  get connectionsOpen(): number {
    return this.sessions.size;
  }

  // ---- scripting

  /** Answers requests for this device token (hex) so, `times` times (default: until cleared). */
  replyTo(token: string, reply: ApnsReply, times = Infinity): this {
    this.replies.to(token.toLowerCase(), reply, times);
    return this;
  }

  /** Answers the next n requests (that no token script claims) so. */
  replyNext(reply: ApnsReply, n = 1): this {
    this.replies.queue(reply, n);
    return this;
  }

  /**
   * Answers a random `share` (0..1) of the requests no other script claims with
   * what `pick` returns (provider trouble at a rate, for load runs); 0 stops it.
   */
  replyRandomly(share: number, pick: () => ApnsReply, rng: () => number = Math.random): this {
    this.replies.randomly(share, pick, rng);
    return this;
  }

  clearReplies(): this {
    this.replies.clear();
    return this;
  }

  /**
   * Sends GOAWAY on every open connection, with {"reason"} as its data. With
   * NO_ERROR (the default) requests in flight are still answered and then the
   * connection closes; with an error code the connection is torn down at once.
   */
  goaway(opts: { code?: number; reason?: string } = {}): void {
    this.goawayAll(opts.code ?? http2.constants.NGHTTP2_NO_ERROR, opts.reason ? Buffer.from(JSON.stringify({ reason: opts.reason })) : undefined);
  }

  /** Resolves once `n` pushes in all were accepted. */
  async waitForPushes(n: number, timeoutMs = 5000): Promise<ApnsRecordedPush[]> {
    return this.waitFor(this.pushes, 'push', n, timeoutMs, 'pushes');
  }

  // ---- the protocol
  // Per request: one record and three listeners; everything else is methods and module
  // functions (closures made per request cost, more so under tsx, which names each one).

  protected override onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    const info = this.noteStream(stream);
    const r: Incoming = { stream, headers, rawHeaders, connection: info?.id ?? 0, first: undefined, more: undefined, size: 0, settled: false };
    stream.on('error', noop);
    stream.on('data', (c: Buffer) => {
      r.size += c.length;
      if (r.size > 65536) return;
      // a body is one DATA frame as a rule: no array, no copy then
      if (!r.first) r.first = c;
      else (r.more ??= [r.first]).push(c);
    });
    this.inFlight++;
    stream.on('close', () => this.settle(r));
    stream.on('end', () => this.handle(r));
  }

  private settle(r: Incoming): void {
    if (r.settled) return;
    r.settled = true;
    this.inFlight--;
  }

  /** A new apns-id: unique per server, UUID-shaped. */
  private newId(): string {
    this.idCounter = (this.idCounter + 1) % 2 ** 48;
    return this.idPrefix + this.idCounter.toString(16).padStart(12, '0');
  }

  private handle(r: Incoming): void {
    const { headers } = r;
    const path = String(headers[':path'] ?? '');
    const token = path.startsWith(PATH_PREFIX) ? path.slice(PATH_PREFIX.length) : undefined;
    if (this.listenerCount('request') > 0) this.emit('request', { token, headers, connection: r.connection });
    const givenId = headers['apns-id'];
    const ex: Answering = { r, token, requestId: typeof givenId === 'string' && UUID.test(givenId) ? givenId : this.newId(), accepted: undefined };

    const body = r.more ? Buffer.concat(r.more) : (r.first ?? EMPTY);
    const check = this.check(headers, r.rawHeaders, token, body, r.size);
    if ('status' in check) return this.answer(ex, check.status, check.reason);
    ex.accepted = check;

    const reply = this.replies.take(token!.toLowerCase());
    if (!reply) return this.answer(ex, 200);
    if ('hang' in reply) return;
    if ('reset' in reply) return void r.stream.close(reply.code ?? http2.constants.NGHTTP2_INTERNAL_ERROR);
    if ('goaway' in reply) return this.goawayOn(r, reply.reason);
    if ('drop' in reply) {
      const drop = () => {
        const session = r.stream.session;
        const sock = this.socketOf(session?.socket);
        if (sock) sock.socket.destroy();
        else session?.destroy();
      };
      if (reply.delayMs) setTimeout(drop, reply.delayMs);
      else drop();
      return;
    }
    if (reply.status !== 200) ex.accepted = undefined;
    this.answer(ex, reply.status, reply.status === 200 ? undefined : (reply.reason ?? 'InternalServerError'), reply);
  }

  private goawayOn(r: Incoming, reason: string | undefined): void {
    const session = r.stream.session;
    const info = session && this.sessions.get(session);
    if (session && info && !session.closed && !session.destroyed)
      // last-stream-id: every stream it has seen, so none is both answered and refused
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, info.maxStreamId, reason ? Buffer.from(JSON.stringify({ reason })) : undefined);
    r.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    session?.close();
  }

  private answer(ex: Answering, status: number, reason?: string, extra: { retryAfter?: number | string; timestamp?: number; delayMs?: number } = {}): void {
    const delay = (extra.delayMs ?? 0) + this.delayMs;
    if (delay > 0) setTimeout(() => this.respond(ex, status, reason, extra), delay);
    else this.respond(ex, status, reason, extra);
  }

  private respond(ex: Answering, status: number, reason: string | undefined, extra: { retryAfter?: number | string; timestamp?: number }): void {
    const { r } = ex;
    const { stream } = r;
    this.settle(r);
    if (stream.destroyed || stream.closed) return;
    const h: Record<string, string | number> = { ':status': status, 'apns-id': ex.requestId };
    if (extra.retryAfter !== undefined) h['retry-after'] = String(extra.retryAfter);
    const time = this.now();
    let out: string | undefined;
    if (status !== 200) {
      h['content-type'] = 'application/json';
      out = JSON.stringify(status === 410 ? { reason, timestamp: extra.timestamp ?? time } : { reason });
    }
    try {
      stream.respond(h, { endStream: out === undefined });
      if (out !== undefined) stream.end(out);
    } catch {
      return; // the stream went away meanwhile
    }
    const push = status === 200 && ex.accepted !== undefined;
    if (push) this.counts.accepted++;
    else this.counts.rejected++;
    if (this.record || this.listenerCount('response') > 0) {
      const exchange: ApnsExchange = { token: ex.token, status, reason, apnsId: ex.requestId, time, connection: r.connection };
      if (this.record) this.exchanges.push(exchange);
      this.emit('response', exchange);
    }
    if (push && (this.record || this.listenerCount('push') > 0)) {
      const p = recordOf(ex.accepted!, r.headers, ex.requestId, time, r.connection);
      if (this.record) this.pushes.push(p);
      this.emit('push', p);
    }
  }

  private check(headers: IncomingHttpHeaders, rawHeaders: string[], token: string | undefined, body: Buffer, size: number): Check | Accepted {
    if (headers[':method'] !== 'POST') return fail(405, 'MethodNotAllowed');
    if (token === undefined || token.includes('/') || token.includes('?')) return fail(404, 'BadPath');
    if (token === '') return fail(400, 'MissingDeviceToken');

    // a handful of apns-* headers at most: an array beats a Set
    const seen: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = String(rawHeaders[i]).toLowerCase();
      if (!(name.startsWith('apns-') || name === 'authorization')) continue;
      if (seen.includes(name)) return fail(400, 'DuplicateHeaders');
      seen.push(name);
    }

    const auth = this.authenticate(headers.authorization);
    if ('status' in auth) return auth;

    const topic = headers['apns-topic'];
    if (typeof topic !== 'string' || topic === '') return fail(400, 'MissingTopic');
    if (!this.topics.has(topic)) return fail(400, 'TopicDisallowed');
    const pushType = headers['apns-push-type'];
    if (pushType !== undefined && (typeof pushType !== 'string' || !PUSH_TYPES.has(pushType))) return fail(400, 'InvalidPushType');
    const priority = headers['apns-priority'];
    if (priority !== undefined && !PRIORITIES.has(String(priority))) return fail(400, 'BadPriority');
    const expiration = headers['apns-expiration'];
    if (expiration !== undefined && !/^\d{1,12}$/.test(String(expiration))) return fail(400, 'BadExpirationDate');
    const id = headers['apns-id'];
    if (id !== undefined && !(typeof id === 'string' && UUID.test(id))) return fail(400, 'BadMessageId');
    const collapse = headers['apns-collapse-id'];
    if (collapse !== undefined && Buffer.byteLength(String(collapse)) > 64) return fail(400, 'BadCollapseId');
    if (!DEVICE_TOKEN.test(token)) return fail(400, 'BadDeviceToken');

    if (size > (pushType === 'voip' ? MAX_PAYLOAD_ANY : 4096)) return fail(413, 'PayloadTooLarge');
    if (size === 0) return fail(400, 'PayloadEmpty');
    const text = body.toString('utf8');
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      return fail(400, INVALID_PAYLOAD_REASON);
    }
    if (!isDict(payload) || !isDict(payload.aps)) return fail(400, INVALID_PAYLOAD_REASON);
    return { token, payload: payload as ApnsRecordedPush['payload'], body: text, auth };
  }

  private authenticate(header: string | undefined): Check | ApnsJwtClaims {
    if (!header) return fail(403, 'MissingProviderToken');
    let claims = this.verified.get(header);
    if (!claims) {
      const m = /^bearer (.+)$/i.exec(header);
      claims = (m && this.verifyJwt(m[1]!)) || fail(403, 'InvalidProviderToken');
      // bounded: the oldest verdict goes first (a Map iterates in insertion order)
      if (this.verified.size >= VERIFIED_CACHE) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(header, claims);
    }
    if ('status' in claims) return claims;
    const now = Math.floor(this.now() / 1000);
    if (claims.iat > now) return fail(403, 'InvalidProviderToken');
    if (now - claims.iat > this.tokenMaxAgeSeconds) return fail(403, 'ExpiredProviderToken');
    return claims;
  }

  private verifyJwt(jwt: string): ApnsJwtClaims | undefined {
    const jws = decodeJws(jwt);
    if ('error' in jws) return undefined;
    const { header, claims } = jws;
    if (typeof header.kid !== 'string') return undefined;
    const team = this.teamKeys.get(header.kid);
    if (!team || claims.iss !== team.teamId || typeof claims.iat !== 'number' || !Number.isInteger(claims.iat)) return undefined;
    return verifyJws(jws, 'ES256', team.key) ? { kid: header.kid, iss: team.teamId, iat: claims.iat } : undefined;
  }
}
