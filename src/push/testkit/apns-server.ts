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
// apns-id (the request's, or a new UUID). A request that passes all checks gets
// the scripted reply for its token or the next scripted reply if any, else 200;
// each 200 is recorded in `pushes` and emitted as 'push'. Scripts can also hang
// a request, drop its connection, or delay it; goaway() and dropConnections()
// act on every open connection.
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID, verify, type KeyObject } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import http2, { type Http2Session, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

const fixture = (name: string) => fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
/** The test server's certificate (self-signed, localhost and 127.0.0.1): trust it as the CA. */
export const TEST_CERT = fixture('localhost.crt');
const TEST_CERT_KEY = fixture('localhost.key');

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
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    teamId: opts.teamId ?? appleId(),
    keyId: opts.keyId ?? appleId(),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A scripted answer to a request that passed the checks. */
export type ApnsReply =
  | { status: number; reason?: string; retryAfter?: number | string; timestamp?: number; delayMs?: number }
  /** Destroy the request's connection (TCP/TLS, no GOAWAY) while it is in flight. */
  | { drop: true; delayMs?: number }
  /** Never answer (until the connection goes away). */
  | { hang: true };

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
  host?: string;
  port?: number;
}

interface Script {
  reply: ApnsReply;
  times: number;
}

interface Check {
  status: number;
  reason: string;
}

type Events = {
  request: [ApnsRequestInfo];
  push: [ApnsRecordedPush];
  response: [ApnsExchange];
};

export class ApnsTestServer extends EventEmitter<Events> {
  readonly ca = TEST_CERT;
  readonly pushes: ApnsRecordedPush[] = [];
  readonly exchanges: ApnsExchange[] = [];
  readonly topics: Set<string>;
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
      this.verified.clear();
    },
    remove: (keyId: string): void => {
      this.teamKeys.delete(keyId);
      this.verified.clear();
    },
  };

  private readonly server: Http2SecureServer;
  private readonly teamKeys = new Map<string, { teamId: string; key: KeyObject }>();
  /** Tokens whose signature was checked: Apple too verifies a token once, not per request. */
  private readonly verified = new Map<string, ApnsJwtClaims | Check>();
  private readonly tokenScripts = new Map<string, Script>();
  private nextScripts: Script[] = [];
  private readonly sessions = new Map<Http2Session, { id: number; maxStreamId: number }>();
  private readonly sockets = new Map<string, TLSSocket>();
  private connectionCount = 0;
  private inFlight = 0;
  private address: AddressInfo | undefined;

  private constructor(opts: ApnsTestServerOptions) {
    super();
    this.topics = new Set(opts.topics);
    this.now = opts.now ?? Date.now;
    this.delayMs = opts.delayMs ?? 0;
    this.tokenMaxAgeSeconds = opts.tokenMaxAgeSeconds ?? 3600;
    for (const k of opts.keys ?? []) this.keys.add(k);
    this.server = http2.createSecureServer({
      cert: TEST_CERT,
      key: TEST_CERT_KEY,
      allowHTTP1: false,
      settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 },
    });
    this.server.on('secureConnection', (sock: TLSSocket) => {
      const k = `${sock.remoteAddress}:${sock.remotePort}`;
      this.sockets.set(k, sock);
      sock.on('close', () => this.sockets.delete(k));
    });
    this.server.on('session', (s) => {
      this.sessions.set(s, { id: ++this.connectionCount, maxStreamId: 0 });
      s.on('error', () => {});
      s.on('close', () => this.sessions.delete(s));
    });
    // Node passes the raw header list too (not in @types/node): it shows repeated headers
    this.server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders?: string[]) =>
      this.onStream(stream, headers, rawHeaders ?? []),
    );
    this.server.on('sessionError', () => {});
  }

  static async start(opts: ApnsTestServerOptions): Promise<ApnsTestServer> {
    const s = new ApnsTestServer(opts);
    s.server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
    await once(s.server, 'listening');
    s.address = s.server.address() as AddressInfo;
    return s;
  }

  get host(): string {
    return this.address!.address;
  }
  get port(): number {
    return this.address!.port;
  }
  /** https://127.0.0.1:<port> */
  get url(): string {
    return `https://${this.host}:${this.port}`;
  }
  /** Connections accepted so far. */
  get connectionsAccepted(): number {
    return this.connectionCount;
  }
  get connectionsOpen(): number {
    return this.sessions.size;
  }
  /** Requests received and not answered yet. */
  get pending(): number {
    return this.inFlight;
  }

  // ---- scripting

  /** Answers requests for this device token (hex) so, `times` times (default: until cleared). */
  replyTo(token: string, reply: ApnsReply, times = Infinity): this {
    this.tokenScripts.set(token.toLowerCase(), { reply, times });
    return this;
  }

  /** Answers the next n requests (that no token script claims) so. */
  replyNext(reply: ApnsReply, n = 1): this {
    if (n > 0) this.nextScripts.push({ reply, times: n });
    return this;
  }

  clearReplies(): this {
    this.tokenScripts.clear();
    this.nextScripts = [];
    return this;
  }

  /**
   * Sends GOAWAY on every open connection, with {"reason"} as its data. With
   * NO_ERROR (the default) requests in flight are still answered and then the
   * connection closes; with an error code the connection is torn down at once.
   */
  goaway(opts: { code?: number; reason?: string } = {}): void {
    const code = opts.code ?? http2.constants.NGHTTP2_NO_ERROR;
    const data = opts.reason ? Buffer.from(JSON.stringify({ reason: opts.reason })) : undefined;
    for (const [s, info] of this.sessions) {
      if (s.closed || s.destroyed) continue;
      s.goaway(code, info.maxStreamId, data);
      if (code === http2.constants.NGHTTP2_NO_ERROR) s.close();
      else setTimeout(() => s.destroy(), 10).unref();
    }
  }

  /** Cuts every connection (the TLS socket, no GOAWAY), with whatever is in flight. */
  dropConnections(): void {
    for (const sock of this.sockets.values()) sock.destroy();
  }

  /** Resolves once `n` pushes in all were accepted. */
  async waitForPushes(n: number, timeoutMs = 5000): Promise<ApnsRecordedPush[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.pushes.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`waited for ${n} pushes, got ${this.pushes.length}`);
      await Promise.race([once(this, 'push'), new Promise((r) => setTimeout(r, Math.min(left, 100)))]);
    }
    return this.pushes.slice(0, n);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions.keys()) s.destroy();
    for (const sock of this.sockets.values()) sock.destroy();
    await closed;
  }

  // ---- the protocol

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    const session = stream.session;
    const info = session ? this.sessions.get(session) : undefined;
    if (info && stream.id !== undefined && stream.id > info.maxStreamId) info.maxStreamId = stream.id;
    const connection = info?.id ?? 0;
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 65536) chunks.push(c);
    });
    this.inFlight++;
    let settled = false;
    const settle = () => {
      if (!settled) {
        settled = true;
        this.inFlight--;
      }
    };
    stream.on('close', settle);
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      this.handle(stream, headers, rawHeaders, body, size, connection, settle);
    });
  }

  private handle(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
    body: Buffer,
    size: number,
    connection: number,
    settle: () => void,
  ): void {
    const path = String(headers[':path'] ?? '');
    const token = path.startsWith(PATH_PREFIX) ? path.slice(PATH_PREFIX.length) : undefined;
    this.emit('request', { token, headers, connection });
    const requestId = typeof headers['apns-id'] === 'string' && UUID.test(headers['apns-id']) ? headers['apns-id'] : randomUUID();
    let accepted: Omit<ApnsRecordedPush, 'apnsId' | 'time' | 'connection'> | undefined;

    const answer = (status: number, reason?: string, extra: { retryAfter?: number | string; timestamp?: number; delayMs?: number } = {}) => {
      const send = () => {
        settle();
        if (stream.destroyed || stream.closed) return;
        const h: Record<string, string | number> = { ':status': status, 'apns-id': requestId };
        if (extra.retryAfter !== undefined) h['retry-after'] = String(extra.retryAfter);
        let out: string | undefined;
        if (status !== 200) {
          h['content-type'] = 'application/json';
          out = JSON.stringify(status === 410 ? { reason, timestamp: extra.timestamp ?? this.now() } : { reason });
        }
        const exchange: ApnsExchange = { token, status, reason, apnsId: requestId, time: this.now(), connection };
        try {
          stream.respond(h, { endStream: out === undefined });
          if (out !== undefined) stream.end(out);
        } catch {
          return; // the stream went away meanwhile
        }
        this.exchanges.push(exchange);
        this.emit('response', exchange);
        if (status === 200 && accepted) {
          this.pushes.push({ ...accepted, apnsId: requestId, time: exchange.time, connection });
          this.emit('push', this.pushes[this.pushes.length - 1]!);
        }
      };
      const delay = (extra.delayMs ?? 0) + this.delayMs;
      if (delay > 0) setTimeout(send, delay);
      else send();
    };

    const check = this.check(headers, rawHeaders, token, body, size);
    if ('status' in check) return answer(check.status, check.reason);
    accepted = check;

    const reply = this.scripted(token!);
    if (!reply) return answer(200);
    if ('hang' in reply) return;
    if ('drop' in reply) {
      const drop = () => {
        const sock = this.socketOf(stream.session);
        if (sock) sock.destroy();
        else stream.session?.destroy();
      };
      if (reply.delayMs) setTimeout(drop, reply.delayMs);
      else drop();
      return;
    }
    if (reply.status !== 200) accepted = undefined;
    answer(reply.status, reply.status === 200 ? undefined : (reply.reason ?? 'InternalServerError'), reply);
  }

  private check(
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
    token: string | undefined,
    body: Buffer,
    size: number,
  ): Check | Omit<ApnsRecordedPush, 'apnsId' | 'time' | 'connection'> {
    const fail = (status: number, reason: string): Check => ({ status, reason });
    if (headers[':method'] !== 'POST') return fail(405, 'MethodNotAllowed');
    if (token === undefined || token.includes('/') || token.includes('?')) return fail(404, 'BadPath');
    if (token === '') return fail(400, 'MissingDeviceToken');

    const seen = new Set<string>();
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = String(rawHeaders[i]).toLowerCase();
      if (!(name.startsWith('apns-') || name === 'authorization')) continue;
      if (seen.has(name)) return fail(400, 'DuplicateHeaders');
      seen.add(name);
    }

    const auth = this.authenticate(headers.authorization);
    if ('status' in auth) return auth;

    const topic = headers['apns-topic'];
    if (typeof topic !== 'string' || topic === '') return fail(400, 'MissingTopic');
    if (!this.topics.has(topic)) return fail(400, 'TopicDisallowed');
    const pushType = headers['apns-push-type'];
    if (pushType !== undefined && (typeof pushType !== 'string' || !PUSH_TYPES.has(pushType))) return fail(400, 'InvalidPushType');
    const priority = headers['apns-priority'];
    if (priority !== undefined && !['1', '5', '10'].includes(String(priority))) return fail(400, 'BadPriority');
    const expiration = headers['apns-expiration'];
    if (expiration !== undefined && !/^\d{1,12}$/.test(String(expiration))) return fail(400, 'BadExpirationDate');
    const id = headers['apns-id'];
    if (id !== undefined && !(typeof id === 'string' && UUID.test(id))) return fail(400, 'BadMessageId');
    const collapse = headers['apns-collapse-id'];
    if (collapse !== undefined && Buffer.byteLength(String(collapse)) > 64) return fail(400, 'BadCollapseId');
    if (!DEVICE_TOKEN.test(token)) return fail(400, 'BadDeviceToken');

    if (size > (pushType === 'voip' ? 5120 : 4096)) return fail(413, 'PayloadTooLarge');
    if (size === 0) return fail(400, 'PayloadEmpty');
    const text = body.toString('utf8');
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      return fail(400, INVALID_PAYLOAD_REASON);
    }
    const isDict = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isDict(payload) || !isDict(payload.aps)) return fail(400, INVALID_PAYLOAD_REASON);

    const recorded: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && k !== 'authorization' && v !== undefined) recorded[k] = String(v);
    return {
      token: token.toLowerCase(),
      headers: recorded,
      payload: payload as ApnsRecordedPush['payload'],
      body: text,
      jwt: { ...auth, token: String(headers.authorization).slice('bearer '.length) },
    };
  }

  private authenticate(header: string | undefined): Check | ApnsJwtClaims {
    if (!header) return { status: 403, reason: 'MissingProviderToken' };
    const invalid: Check = { status: 403, reason: 'InvalidProviderToken' };
    const m = /^bearer (.+)$/i.exec(header);
    if (!m) return invalid;
    const jwt = m[1]!;
    let claims = this.verified.get(jwt);
    if (!claims) {
      claims = this.verifyJwt(jwt) ?? invalid;
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(jwt, claims);
    }
    if ('status' in claims) return claims;
    const now = Math.floor(this.now() / 1000);
    if (claims.iat > now) return invalid;
    if (now - claims.iat > this.tokenMaxAgeSeconds) return { status: 403, reason: 'ExpiredProviderToken' };
    return claims;
  }

  private verifyJwt(jwt: string): ApnsJwtClaims | undefined {
    const parts = jwt.split('.');
    if (parts.length !== 3) return undefined;
    const json = (s: string): Record<string, unknown> | undefined => {
      try {
        const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
        return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
      } catch {
        return undefined;
      }
    };
    const header = json(parts[0]!);
    const claims = json(parts[1]!);
    if (!header || !claims || header.alg !== 'ES256' || typeof header.kid !== 'string') return undefined;
    const team = this.teamKeys.get(header.kid);
    if (!team || claims.iss !== team.teamId || typeof claims.iat !== 'number' || !Number.isInteger(claims.iat)) return undefined;
    const sig = Buffer.from(parts[2]!, 'base64url');
    if (sig.length !== 64) return undefined;
    const ok = verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), { key: team.key, dsaEncoding: 'ieee-p1363' }, sig);
    return ok ? { kid: header.kid, iss: team.teamId, iat: claims.iat } : undefined;
  }

  private scripted(token: string): ApnsReply | undefined {
    const key = token.toLowerCase();
    const byToken = this.tokenScripts.get(key);
    if (byToken) {
      if (--byToken.times <= 0) this.tokenScripts.delete(key);
      return byToken.reply;
    }
    const next = this.nextScripts[0];
    if (next) {
      if (--next.times <= 0) this.nextScripts.shift();
      return next.reply;
    }
    return undefined;
  }

  private socketOf(session: Http2Session | undefined): TLSSocket | undefined {
    if (!session) return undefined;
    const s = session.socket;
    return this.sockets.get(`${s.remoteAddress}:${s.remotePort}`);
  }
}
