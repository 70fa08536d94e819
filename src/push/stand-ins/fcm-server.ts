// An FCM test server: Google's OAuth token endpoint and the FCM HTTP v1 send
// endpoint on loopback, for tests of any FCM client.
//
// HTTP/2 over TLS (the committed self-signed certificate, as the APNs test
// server), HTTP/1.1 too (allowHTTP1: OAuth clients use it). It answers as Google
// documents in "Using OAuth 2.0 for Server to Server Applications", "FCM error
// codes" and the v1 REST reference (Message, AndroidConfig, ErrorCode):
//
// POST /token (application/x-www-form-urlencoded grant_type, assertion)
//   400 unsupported_grant_type   grant_type is not urn:ietf:params:oauth:grant-type:jwt-bearer
//   400 invalid_request          no assertion, or not a form body
//   400 invalid_grant            assertion not an RS256 JWT, iss not a known service account
//                                ("account not found"), kid not one of its keys or a bad
//                                signature ("Invalid JWT Signature."), aud not this token_uri,
//                                iat in the future, exp past or more than an hour after iat
//   400 invalid_scope            no scope, or one that is not a googleapis.com auth scope
//   200 {"access_token","expires_in":3599,"token_type":"Bearer"}; it expires by the server clock
//
// POST /v1/projects/<project>/messages:send (errors in Google's JSON shape
// {"error":{"code","message","status","details"?}})
//   401 UNAUTHENTICATED          no bearer token, or one unknown, revoked or expired
//   403 PERMISSION_DENIED        the token's scopes lack firebase.messaging (and cloud-platform),
//                                or its service account is of another project
//   400 INVALID_ARGUMENT         not JSON, unknown fields, not exactly one of token/topic/condition,
//                                a malformed registration token, data values not strings, a data
//                                key FCM reserves (from, gcm, google.*), data over 4096 bytes
//                                (2048 to a topic), android.priority not normal|high,
//                                android.ttl not "<seconds>[.fraction]s" or over 4 weeks;
//                                details carry the FcmError INVALID_ARGUMENT and, where Google
//                                names it, the google.rpc.BadRequest field
//   404 UNREGISTERED             a token unregister()ed
//   403 SENDER_ID_MISMATCH       a token bound by bindToken() to another project
//   200 {"name":"projects/<p>/messages/<id>"}, recorded in `messages`, emitted as 'message'
// A request that passes the checks gets the scripted reply for its token, or the
// next scripted reply if any, else 200. Scripts can also hang a request, drop its
// connection, or delay it; goaway() and dropConnections() act on every connection.
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import type http from 'node:http';
import http2 from 'node:http2';
import { generatePemKeyPair } from '../../server/identity.ts';
import { decodeJws, verifyJws } from '../jws.ts';
import { ProviderTestServer, readBody, type AnyRequest, type AnyResponse } from './http2-server.ts';
import { Replies } from './replies.ts';


export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';
const SEND_PATH = /^\/v1\/projects\/([^/]+)\/messages:send$/;
/** Loose registration-token syntax: Google documents none. */
const REGISTRATION_TOKEN = /^[A-Za-z0-9_\-:.+/=]{1,4096}$/;
const TTL = /^\d+(\.\d{1,9})?s$/;
const MAX_TTL_SECONDS = 2_419_200;
const MAX_BODY = 1 << 20;

const UNAUTHENTICATED_MISSING =
  'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
const UNAUTHENTICATED_INVALID =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
const SHORT_LIVED =
  'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';

export const FCM_ERROR_CODES = [
  'UNREGISTERED',
  'QUOTA_EXCEEDED',
  'UNAVAILABLE',
  'INTERNAL',
  'SENDER_ID_MISMATCH',
  'THIRD_PARTY_AUTH_ERROR',
  'INVALID_ARGUMENT',
] as const;
export type FcmErrorCode = (typeof FCM_ERROR_CODES)[number];

/** Each FCM error code's HTTP status, canonical status and Google's message. */
const FCM_ERRORS: Record<FcmErrorCode, { code: number; status: string; message: string }> = {
  UNREGISTERED: { code: 404, status: 'NOT_FOUND', message: 'Requested entity was not found.' },
  QUOTA_EXCEEDED: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded for the message target.' },
  UNAVAILABLE: { code: 503, status: 'UNAVAILABLE', message: 'The service is currently unavailable.' },
  INTERNAL: { code: 500, status: 'INTERNAL', message: 'Internal error encountered.' },
  SENDER_ID_MISMATCH: { code: 403, status: 'PERMISSION_DENIED', message: 'SenderId mismatch' },
  THIRD_PARTY_AUTH_ERROR: { code: 401, status: 'UNAUTHENTICATED', message: 'Auth error from APNS or Web Push Service' },
  INVALID_ARGUMENT: { code: 400, status: 'INVALID_ARGUMENT', message: 'The registration token is not a valid FCM registration token' },
};

/** Canonical google.rpc statuses of HTTP codes, for errors without an FCM code. */
const CANONICAL: Record<number, [string, string]> = {
  400: ['INVALID_ARGUMENT', 'Request contains an invalid argument.'],
  401: ['UNAUTHENTICATED', UNAUTHENTICATED_INVALID],
  403: ['PERMISSION_DENIED', 'The caller does not have permission'],
  404: ['NOT_FOUND', 'Requested entity was not found.'],
  409: ['ABORTED', 'The operation was aborted.'],
  429: ['RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).'],
  500: ['INTERNAL', 'Internal error encountered.'],
  501: ['UNIMPLEMENTED', 'Operation is not implemented, or supported, or enabled.'],
  503: ['UNAVAILABLE', 'The service is currently unavailable.'],
  504: ['DEADLINE_EXCEEDED', 'The request timed out.'],
};

/** A service-account key file as Google issues it. */
export interface ServiceAccountJson {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
  auth_provider_x509_cert_url: string;
  client_x509_cert_url: string;
  universe_domain: string;
}

/** A scripted answer to a send that passed the checks. */
export type FcmReply =
  /** Google's error for the code (its HTTP status unless `status` says otherwise), or a canonical error for a bare status; 200 delivers. */
  | { status?: number; errorCode?: FcmErrorCode; retryAfter?: number | string; delayMs?: number }
  /** Destroy the request's connection (TCP/TLS, no GOAWAY) while it is in flight. */
  | { drop: true; delayMs?: number }
  /** Never answer (until the connection goes away). */
  | { hang: true };

/** A scripted answer of the token endpoint, given before the assertion is checked ({status: 200} checks it as usual). */
export type TokenReply =
  | { status: number; error?: string; errorDescription?: string; retryAfter?: number | string; delayMs?: number }
  | { drop: true; delayMs?: number }
  | { hang: true };

export interface FcmTokenRequest {
  time: number;
  status: number;
  /** OAuth error, if refused. */
  error?: string;
  errorDescription?: string;
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** The access token issued. */
  accessToken?: string;
  httpVersion: string;
  connection: number;
}

export interface FcmRecordedMessage {
  /** The registration token (undefined for a topic or condition). */
  token: string | undefined;
  topic?: string;
  condition?: string;
  /** The parsed `message`. */
  message: Record<string, unknown>;
  body: string;
  name: string;
  projectId: string;
  accessToken: string;
  clientEmail: string;
  /** Server clock (ms) when it was accepted. */
  time: number;
  /** Which connection (1, 2, … in order of arrival, token requests' included) carried it. */
  connection: number;
  httpVersion: string;
}

export interface FcmExchange {
  token: string | undefined;
  status: number;
  /** The FCM error code, else the canonical status, of an error. */
  errorCode: string | undefined;
  accessToken: string | undefined;
  time: number;
  connection: number;
}

export interface FcmRequestInfo {
  path: string;
  token: string | undefined;
  connection: number;
  httpVersion: string;
}

export interface FcmTestServerOptions {
  /** Server clock, ms (JWT times, access token expiry). */
  now?: () => number;
  /** Access token lifetime (default 3599, as Google answers). */
  tokenLifetimeSeconds?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 1000). */
  maxConcurrentStreams?: number;
  /** Answer every send this much later (default 0). */
  delayMs?: number;
  host?: string;
  port?: number;
}

interface Account {
  projectId: string;
  keys: Map<string, KeyObject>;
}

interface IssuedToken {
  clientEmail: string;
  projectId: string;
  scopes: string[];
  expiresAt: number;
}

interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  errorCode?: string;
}

type Events = {
  request: [FcmRequestInfo];
  message: [FcmRecordedMessage];
  response: [FcmExchange];
  token: [FcmTokenRequest];
};

const isDict = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const randomDigits = (n: number) => [...randomBytes(n)].map((b) => String(b % 10)).join('');

/** Google's error body. */
export function googleError(code: number, status: string, message: string, details?: unknown[]): { error: Record<string, unknown> } {
  return { error: { code, message, status, ...(details?.length ? { details } : {}) } };
}

const fcmErrorDetail = (errorCode: string) => ({ '@type': FCM_ERROR_TYPE, errorCode });
const badRequestDetail = (field: string, description: string) => ({ '@type': BAD_REQUEST_TYPE, fieldViolations: [{ field, description }] });

/** 400 INVALID_ARGUMENT for a malformed message, with the FcmError and (given a field) the BadRequest detail. */
function invalidArgument(message: string, field?: string): Answer {
  const details: unknown[] = [fcmErrorDetail('INVALID_ARGUMENT')];
  if (field !== undefined) details.push(badRequestDetail(field, message));
  return { status: 400, body: googleError(400, 'INVALID_ARGUMENT', message, details), errorCode: 'INVALID_ARGUMENT' };
}

const MESSAGE_FIELDS = new Set(['name', 'data', 'notification', 'android', 'webpush', 'apns', 'fcm_options', 'fcmOptions', 'token', 'topic', 'condition']);
const ANDROID_FIELDS = new Set([
  'collapse_key',
  'collapseKey',
  'priority',
  'ttl',
  'restricted_package_name',
  'restrictedPackageName',
  'data',
  'notification',
  'fcm_options',
  'fcmOptions',
  'direct_boot_ok',
  'directBootOk',
]);
const RESERVED_DATA_KEY = (k: string) => k === 'from' || k === 'gcm' || k.startsWith('google');

export class FcmTestServer extends ProviderTestServer<Events> {
  readonly messages: FcmRecordedMessage[] = [];
  readonly exchanges: FcmExchange[] = [];
  readonly tokenRequests: FcmTokenRequest[] = [];
  now: () => number;
  delayMs: number;
  tokenLifetimeSeconds: number;

  private readonly accounts = new Map<string, Account>();
  private readonly issued = new Map<string, IssuedToken>();
  private readonly unregistered = new Set<string>();
  private readonly tokenProjects = new Map<string, string>();
  private readonly replies = new Replies<FcmReply>();
  private readonly tokenReplies = new Replies<TokenReply>();
  private messageCount = 0;

  private constructor(opts: FcmTestServerOptions) {
    // HTTP/1.1 too: OAuth clients use it
    super({ allowHTTP1: true, settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 } });
    this.now = opts.now ?? Date.now;
    this.delayMs = opts.delayMs ?? 0;
    this.tokenLifetimeSeconds = opts.tokenLifetimeSeconds ?? 3599;
  }

  static async start(opts: FcmTestServerOptions = {}): Promise<FcmTestServer> {
    return new FcmTestServer(opts).listen(opts);
  }

  get tokenUri(): string {
    return `${this.url}/token`;
  }
  /** TCP connections accepted so far (token requests' included). */
  get connectionsAccepted(): number {
    return this.socketCount;
  }
  /** HTTP/2 connections open now. */
  get connectionsOpen(): number {
    return this.sessions.size;
  }

  // ---- accounts and tokens

  /**
   * A new service account (RSA key pair) the token endpoint trusts, as the key
   * file Google would issue: token_uri points here. Given an existing
   * clientEmail, a further key of that account.
   */
  serviceAccount(opts: { projectId?: string; clientEmail?: string; keyId?: string } = {}): ServiceAccountJson {
    const projectId = opts.projectId ?? `hush-test-${randomBytes(3).toString('hex')}`;
    const clientEmail = opts.clientEmail ?? `firebase-adminsdk-${randomBytes(3).toString('hex').slice(0, 5)}@${projectId}.iam.gserviceaccount.com`;
    const keyId = opts.keyId ?? randomBytes(20).toString('hex');
    const { privateKey, publicKey: publicPem } = generatePemKeyPair('rsa', { modulusLength: 2048 });
    const publicKey = createPublicKey(publicPem);
    let account = this.accounts.get(clientEmail);
    if (!account) this.accounts.set(clientEmail, (account = { projectId, keys: new Map() }));
    account.keys.set(keyId, publicKey);
    return {
      type: 'service_account',
      project_id: account.projectId,
      private_key_id: keyId,
      private_key: privateKey,
      client_email: clientEmail,
      client_id: randomDigits(21),
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: this.tokenUri,
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(clientEmail)}`,
      universe_domain: 'googleapis.com',
    };
  }

  /** Deletes a service-account key: assertions signed by it get invalid_grant. */
  revokeKey(keyId: string): void {
    for (const a of this.accounts.values()) a.keys.delete(keyId);
  }

  /** Forgets every access token issued: sends with them get 401 UNAUTHENTICATED. */
  revokeAccessTokens(): void {
    this.issued.clear();
  }

  /** Ends every access token issued now, by the server clock: sends with them get 401 UNAUTHENTICATED. */
  expireAccessTokens(): void {
    const now = this.now();
    for (const t of this.issued.values()) t.expiresAt = Math.min(t.expiresAt, now);
  }

  /** Later sends to this registration token get 404 UNREGISTERED. */
  unregister(token: string): this {
    this.unregistered.add(token);
    return this;
  }

  /** The token belongs to this project: sends from another one get 403 SENDER_ID_MISMATCH. */
  bindToken(token: string, projectId: string): this {
    this.tokenProjects.set(token, projectId);
    return this;
  }

  // ---- scripting

  /** Answers sends to this registration token so, `times` times (default: until cleared). */
  replyTo(token: string, reply: FcmReply, times = Infinity): this {
    this.replies.to(token, reply, times);
    return this;
  }

  /** Answers the next n sends (that no token script claims) so. */
  replyNext(reply: FcmReply, n = 1): this {
    this.replies.queue(reply, n);
    return this;
  }

  /** Answers the next n token requests so. */
  replyToTokenRequests(reply: TokenReply, n = 1): this {
    this.tokenReplies.queue(reply, n);
    return this;
  }

  clearReplies(): this {
    this.replies.clear();
    this.tokenReplies.clear();
    return this;
  }

  /**
   * Sends GOAWAY on every HTTP/2 connection. With NO_ERROR (the default)
   * requests in flight are still answered and then the connection closes; with
   * an error code it is torn down at once.
   */
  goaway(opts: { code?: number } = {}): void {
    this.goawayAll(opts.code ?? http2.constants.NGHTTP2_NO_ERROR);
  }

  /** Resolves once `n` messages in all were accepted. */
  async waitForMessages(n: number, timeoutMs = 5000): Promise<FcmRecordedMessage[]> {
    return this.waitFor(this.messages, 'message', n, timeoutMs, 'messages');
  }

  // ---- the protocol

  // the compatibility API serves HTTP/2 streams and HTTP/1.1 requests alike
  protected override onRequest(req: AnyRequest, res: AnyResponse): void {
    const conn = this.socketOf(req.socket);
    const connection = conn?.id ?? 0;
    if ('stream' in req) this.noteStream(req.stream);
    res.on('error', () => {});
    const settle = this.admit(res);
    readBody(req, MAX_BODY, (body) => {
      const path = (req.url ?? '').split('?')[0]!;
      const ctx: Ctx = { req, res, body, path, connection, httpVersion: req.httpVersion, settle, drop: () => conn?.socket.destroy() };
      if (path === '/token') this.tokenEndpoint(ctx);
      else this.sendEndpoint(ctx);
    });
  }

  /** Writes an answer; false if the request is gone. */
  private write(ctx: Ctx, a: Answer): boolean {
    ctx.settle();
    const res = ctx.res;
    const gone = 'stream' in res ? res.stream.destroyed || res.stream.closed : res.destroyed;
    if (gone || res.writableEnded) return false;
    const text = JSON.stringify(a.body);
    try {
      (res as http.ServerResponse).writeHead(a.status, {
        'content-type': 'application/json; charset=UTF-8',
        'content-length': Buffer.byteLength(text),
        ...a.headers,
      });
      res.end(text);
    } catch {
      return false;
    }
    return true;
  }

  // ---- POST /token

  private tokenEndpoint(ctx: Ctx): void {
    const record = (a: Answer, extra: Partial<FcmTokenRequest> = {}) => {
      const r: FcmTokenRequest = { time: this.now(), status: a.status, httpVersion: ctx.httpVersion, connection: ctx.connection, ...extra };
      if (a.status !== 200 && isDict(a.body)) {
        if (typeof a.body.error === 'string') r.error = a.body.error;
        if (typeof a.body.error_description === 'string') r.errorDescription = a.body.error_description;
      }
      this.tokenRequests.push(r);
      this.emit('token', r);
    };
    const reply = this.tokenReplies.take();
    if (reply) {
      if ('hang' in reply) return record({ status: 0, body: undefined });
      if ('drop' in reply) {
        record({ status: 0, body: undefined });
        if (reply.delayMs) setTimeout(ctx.drop, reply.delayMs);
        else ctx.drop();
        return;
      }
      if (reply.status !== 200) {
        const a: Answer = {
          status: reply.status,
          body: { error: reply.error ?? (reply.status >= 500 ? 'internal_failure' : 'invalid_request'), error_description: reply.errorDescription ?? 'Scripted failure' },
          ...(reply.retryAfter !== undefined ? { headers: { 'retry-after': String(reply.retryAfter) } } : {}),
        };
        record(a);
        if (reply.delayMs) setTimeout(() => this.write(ctx, a), reply.delayMs);
        else this.write(ctx, a);
        return;
      }
    }
    const result = this.grant(ctx);
    record(result.answer, result.extra);
    this.write(ctx, result.answer);
  }

  private grant(ctx: Ctx): { answer: Answer; extra?: Partial<FcmTokenRequest> } {
    const oauthError = (error: string, description: string, status = 400) => ({ answer: { status, body: { error, error_description: description } } });
    if (ctx.req.method !== 'POST') return oauthError('invalid_request', `Method ${ctx.req.method} not allowed`, 405);
    const type = String(ctx.req.headers['content-type'] ?? '');
    if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded') || !ctx.body) return oauthError('invalid_request', 'Bad Request');
    const form = new URLSearchParams(ctx.body.toString('utf8'));
    const grantType = form.get('grant_type');
    if (grantType !== JWT_BEARER) return oauthError('unsupported_grant_type', `Invalid grant_type: ${grantType ?? ''}`);
    const assertion = form.get('assertion');
    if (!assertion) return oauthError('invalid_request', 'Missing required parameter: assertion');

    const jws = decodeJws(assertion);
    const badSignature = oauthError('invalid_grant', 'Invalid JWT Signature.');
    if ('error' in jws) return badSignature;
    const { header, claims } = jws;
    const extra = { header, claims };
    if (header.alg !== 'RS256') return { ...badSignature, extra };
    const account = typeof claims.iss === 'string' ? this.accounts.get(claims.iss) : undefined;
    if (!account) return { ...oauthError('invalid_grant', 'Invalid grant: account not found'), extra };
    // with a kid, that key; without, any of the account's keys
    const keys = header.kid === undefined ? [...account.keys.values()] : [account.keys.get(String(header.kid))].filter((k) => k !== undefined);
    if (!keys.some((k) => verifyJws(jws, 'RS256', k))) return { ...badSignature, extra };
    if (claims.aud !== this.tokenUri) return { ...oauthError('invalid_grant', 'Invalid JWT: Failed audience check.'), extra };
    const now = Math.floor(this.now() / 1000);
    const { iat, exp } = claims;
    if (typeof iat !== 'number' || typeof exp !== 'number' || iat > now || exp <= now || exp < iat || exp - iat > 3600)
      return { ...oauthError('invalid_grant', SHORT_LIVED), extra };
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
    if (!scopes.length || !scopes.every((s) => s.startsWith('https://www.googleapis.com/auth/')))
      return { ...oauthError('invalid_scope', 'Invalid OAuth scope or ID token audience provided.'), extra };
    const accessToken = `ya29.${randomBytes(96).toString('base64url')}`;
    this.issued.set(accessToken, {
      clientEmail: claims.iss as string,
      projectId: account.projectId,
      scopes,
      expiresAt: this.now() + this.tokenLifetimeSeconds * 1000,
    });
    return {
      answer: { status: 200, body: { access_token: accessToken, expires_in: this.tokenLifetimeSeconds, token_type: 'Bearer' } },
      extra: { ...extra, accessToken },
    };
  }

  // ---- POST /v1/projects/<project>/messages:send

  private sendEndpoint(ctx: Ctx): void {
    const bearer = /^bearer\s+(\S+)$/i.exec(String(ctx.req.headers.authorization ?? ''))?.[1];
    const checked = this.checkSend(ctx, bearer);
    const token = checked.token;
    this.emit('request', { path: ctx.path, token, connection: ctx.connection, httpVersion: ctx.httpVersion });
    if ('answer' in checked) return this.answerSend(ctx, checked.answer, token, bearer, undefined, 0);
    const accepted = checked;
    const reply = this.replies.take(accepted.token);
    if (!reply) return this.answerSend(ctx, { status: 200, body: undefined }, token, bearer, accepted, 0);
    if ('hang' in reply) return;
    if ('drop' in reply) {
      if (reply.delayMs) setTimeout(ctx.drop, reply.delayMs);
      else ctx.drop();
      return;
    }
    const a = replyAnswer(reply);
    this.answerSend(ctx, a, token, bearer, a.status === 200 ? accepted : undefined, reply.delayMs ?? 0);
  }

  private answerSend(ctx: Ctx, a: Answer, token: string | undefined, bearer: string | undefined, accepted: Accepted | undefined, delayMs: number): void {
    const send = () => {
      const time = this.now();
      let answer = a;
      let name: string | undefined;
      if (a.status === 200 && accepted) {
        name = `projects/${accepted.projectId}/messages/0:${time}${String(++this.messageCount).padStart(6, '0')}%${randomBytes(8).toString('hex')}`;
        answer = { status: 200, body: { name } };
      }
      if (!this.write(ctx, answer)) return; // the stream went away meanwhile
      const exchange: FcmExchange = { token, status: a.status, errorCode: a.errorCode, accessToken: bearer, time, connection: ctx.connection };
      this.exchanges.push(exchange);
      this.emit('response', exchange);
      if (accepted && name) {
        const m: FcmRecordedMessage = { ...accepted, name, time, connection: ctx.connection, httpVersion: ctx.httpVersion };
        this.messages.push(m);
        this.emit('message', m);
      }
    };
    const delay = delayMs + this.delayMs;
    if (delay > 0) setTimeout(send, delay);
    else send();
  }

  private checkSend(ctx: Ctx, bearer: string | undefined): { answer: Answer; token: string | undefined } | Accepted {
    const fail = (answer: Answer, token?: string) => ({ answer, token });
    const m = SEND_PATH.exec(ctx.path);
    if (!m || ctx.req.method !== 'POST') return fail({ status: 404, body: googleError(404, 'NOT_FOUND', 'Requested entity was not found.'), errorCode: 'NOT_FOUND' });
    const project = decodeURIComponent(m[1]!);

    const realm = 'Bearer realm="https://accounts.google.com/"';
    if (!bearer)
      return fail({ status: 401, body: googleError(401, 'UNAUTHENTICATED', UNAUTHENTICATED_MISSING), headers: { 'www-authenticate': realm }, errorCode: 'UNAUTHENTICATED' });
    const issued = this.issued.get(bearer);
    if (!issued || this.now() >= issued.expiresAt)
      return fail({
        status: 401,
        body: googleError(401, 'UNAUTHENTICATED', UNAUTHENTICATED_INVALID),
        headers: { 'www-authenticate': `${realm}, error="invalid_token"` },
        errorCode: 'UNAUTHENTICATED',
      });
    if (!issued.scopes.includes(FCM_SCOPE) && !issued.scopes.includes(CLOUD_PLATFORM_SCOPE))
      return fail({ status: 403, body: googleError(403, 'PERMISSION_DENIED', 'Request had insufficient authentication scopes.'), errorCode: 'PERMISSION_DENIED' });
    if (issued.projectId !== project)
      return fail({
        status: 403,
        body: googleError(
          403,
          'PERMISSION_DENIED',
          `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${project}' (or it may not exist).`,
        ),
        errorCode: 'PERMISSION_DENIED',
      });

    const type = String(ctx.req.headers['content-type'] ?? '').toLowerCase();
    if (!type.startsWith('application/json')) return fail(invalidArgument(`Invalid JSON payload received. Unexpected content type: ${type || 'none'}.`));
    if (!ctx.body) return fail(invalidArgument('Request payload size exceeds the limit: 1048576 bytes.'));
    const text = ctx.body.toString('utf8');
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      return fail(invalidArgument('Invalid JSON payload received. Unexpected token.', ''));
    }
    if (!isDict(payload)) return fail(invalidArgument('Invalid JSON payload received. Expected an object.', ''));
    for (const k of Object.keys(payload))
      if (k !== 'message' && k !== 'validate_only' && k !== 'validateOnly')
        return fail(invalidArgument(`Invalid JSON payload received. Unknown name "${k}": Cannot find field.`, ''));
    const message = payload.message;
    if (!isDict(message)) return fail(invalidArgument('Invalid JSON payload received. Expected an object at \'message\'.', 'message'));
    const token = typeof message.token === 'string' ? message.token : undefined;
    const bad = this.checkMessage(message);
    if (bad) return fail(bad, token);

    if (token !== undefined) {
      if (this.unregistered.has(token)) return fail(fcmError('UNREGISTERED'), token);
      const owner = this.tokenProjects.get(token);
      if (owner !== undefined && owner !== project) return fail(fcmError('SENDER_ID_MISMATCH'), token);
    }
    return {
      token,
      ...(typeof message.topic === 'string' ? { topic: message.topic } : {}),
      ...(typeof message.condition === 'string' ? { condition: message.condition } : {}),
      message,
      body: text,
      projectId: project,
      accessToken: bearer,
      clientEmail: issued.clientEmail,
    };
  }

  /** The message's problem as Google reports it, if it has one. */
  private checkMessage(message: Record<string, unknown>): Answer | undefined {
    for (const k of Object.keys(message))
      if (!MESSAGE_FIELDS.has(k)) return invalidArgument(`Invalid JSON payload received. Unknown name "${k}" at 'message': Cannot find field.`, 'message');
    const targets = (['token', 'topic', 'condition'] as const).filter((k) => message[k] !== undefined);
    if (targets.length === 0) return invalidArgument('Recipient of the message is not set.', 'message');
    if (targets.length > 1)
      return invalidArgument(`Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '${targets[1]}'`, 'message');
    const target = targets[0]!;
    if (typeof message[target] !== 'string') return invalidArgument(`Invalid value at 'message.${target}' (TYPE_STRING), ${JSON.stringify(message[target])}`, `message.${target}`);
    if (target === 'token' && !REGISTRATION_TOKEN.test(message.token as string))
      return invalidArgument('The registration token is not a valid FCM registration token', 'message.token');

    const data = (v: unknown, at: string): Answer | { size: number } => {
      if (v === undefined) return { size: 0 };
      if (!isDict(v)) return invalidArgument(`Invalid value at '${at}' (type.googleapis.com/google.protobuf.Struct), ${JSON.stringify(v)}`, at);
      let size = 0;
      let i = 0;
      for (const [k, x] of Object.entries(v)) {
        if (typeof x !== 'string') return invalidArgument(`Invalid value at '${at}[${i}].value' (TYPE_STRING), ${JSON.stringify(x)}`, `${at}[${i}].value`);
        if (RESERVED_DATA_KEY(k)) return invalidArgument(`Invalid data payload key: ${k}`, at);
        size += Buffer.byteLength(k) + Buffer.byteLength(x);
        i++;
      }
      return { size };
    };
    const top = data(message.data, 'message.data');
    if ('status' in top) return top;
    for (const k of ['notification', 'webpush', 'apns', 'fcm_options', 'fcmOptions'] as const)
      if (message[k] !== undefined && !isDict(message[k])) return invalidArgument(`Invalid value at 'message.${k}', ${JSON.stringify(message[k])}`, `message.${k}`);

    let androidSize = 0;
    const android = message.android;
    if (android !== undefined) {
      if (!isDict(android)) return invalidArgument(`Invalid value at 'message.android', ${JSON.stringify(android)}`, 'message.android');
      for (const k of Object.keys(android))
        if (!ANDROID_FIELDS.has(k)) return invalidArgument(`Invalid JSON payload received. Unknown name "${k}" at 'message.android': Cannot find field.`, 'message.android');
      const p = android.priority;
      if (p !== undefined && !(typeof p === 'string' && ['normal', 'high'].includes(p.toLowerCase())))
        return invalidArgument(
          `Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), ${JSON.stringify(p)}`,
          'message.android.priority',
        );
      const ttl = android.ttl;
      if (ttl !== undefined) {
        if (typeof ttl !== 'string' || !TTL.test(ttl))
          return invalidArgument(`Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), ${JSON.stringify(ttl)}`, 'message.android.ttl');
        if (Number.parseFloat(ttl) > MAX_TTL_SECONDS) return invalidArgument('TTL must be a duration between 0 and 2419200 seconds (4 weeks).', 'message.android.ttl');
      }
      for (const k of ['collapse_key', 'collapseKey', 'restricted_package_name', 'restrictedPackageName'] as const)
        if (android[k] !== undefined && typeof android[k] !== 'string')
          return invalidArgument(`Invalid value at 'message.android.${k}' (TYPE_STRING), ${JSON.stringify(android[k])}`, `message.android.${k}`);
      const ad = data(android.data, 'message.android.data');
      if ('status' in ad) return ad;
      androidSize = ad.size;
    }
    // Google counts keys and values; android.data replaces data on Android. Its answer names no field.
    const limit = target === 'topic' ? 2048 : 4096;
    if (Math.max(top.size, androidSize) > limit) return invalidArgument('Request contains an invalid argument.');
    return undefined;
  }
}

interface Ctx {
  req: AnyRequest;
  res: AnyResponse;
  /** Undefined if over MAX_BODY. */
  body: Buffer | undefined;
  path: string;
  connection: number;
  httpVersion: string;
  settle: () => void;
  /** Destroys the request's TCP connection. */
  drop: () => void;
}

type Accepted = Omit<FcmRecordedMessage, 'name' | 'time' | 'connection' | 'httpVersion'>;

/** Google's answer for an FCM error code. */
function fcmError(code: FcmErrorCode, status?: number): Answer {
  const e = FCM_ERRORS[code];
  const httpStatus = status ?? e.code;
  return { status: httpStatus, body: googleError(httpStatus, e.status, e.message, [fcmErrorDetail(code)]), errorCode: code };
}

function replyAnswer(reply: Extract<FcmReply, { status?: number }>): Answer {
  const extra = reply.retryAfter !== undefined ? { 'retry-after': String(reply.retryAfter) } : undefined;
  let a: Answer;
  if (reply.errorCode) a = fcmError(reply.errorCode, reply.status);
  else {
    const status = reply.status ?? 200;
    if (status === 200) return { status: 200, body: undefined };
    const [canonical, message] = CANONICAL[status] ?? ['UNKNOWN', 'Unknown error.'];
    a = { status, body: googleError(status, canonical, message), errorCode: canonical };
    if (status === 401) a.headers = { 'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' };
  }
  if (extra) a.headers = { ...a.headers, ...extra };
  return a;
}
