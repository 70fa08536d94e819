// An FCM test server: Google's OAuth token endpoint (google-oauth.ts) and the
// FCM HTTP v1 send endpoint on loopback, for tests of any FCM client.
//
// HTTP/2 over TLS (the committed self-signed certificate, as the APNs test
// server), HTTP/1.1 too (allowHTTP1: OAuth clients use it). The send endpoint
// answers as Google documents in "FCM error codes" and the v1 REST reference,
// its errors and body checks as fcm-message.ts has them:
//
// POST /v1/projects/<project>/messages:send
//   401 UNAUTHENTICATED          no bearer token, or one unknown, revoked or expired
//   403 PERMISSION_DENIED        the token's scopes lack firebase.messaging (and cloud-platform),
//                                or its service account is of another project
//   400 INVALID_ARGUMENT         not JSON, unknown fields, not exactly one of token/topic/condition,
//                                a malformed registration token, data values not strings, a data
//                                key FCM reserves (from, gcm, google.*), data over 4096 bytes
//                                (2048 to a topic), android.priority not normal|high,
//                                android.ttl not "<seconds>[.fraction]s" or over 4 weeks
//   404 UNREGISTERED             a token unregister()ed
//   403 SENDER_ID_MISMATCH       a token bound by bindToken() to another project
//   200 {"name":"projects/<p>/messages/<id>"}, recorded in `messages`, emitted as 'message'
// A request that passes the checks gets the scripted reply for its token, or the
// next scripted reply if any, else 200. Scripts can also hang a request, drop its
// connection, or delay it; goaway() and dropConnections() act on every connection.
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import http2 from 'node:http2';
import { canonicalError, fcmError, googleError, readSendBody, UNAUTHENTICATED_INVALID, UNAUTHENTICATED_MISSING, type FcmErrorCode } from './fcm-message.ts';
import { GoogleOAuth, type Answer, type Exchange, type ServiceAccountJson, type TokenReply, type TokenRequest } from './google-oauth.ts';
import { ProviderTestServer, readBody, type AnyRequest, type AnyResponse } from './http2-server.ts';
import { Replies } from './replies.ts';

export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const SEND_PATH = /^\/v1\/projects\/([^/]+)\/messages:send$/;
const MAX_BODY = 1 << 20;

/** A scripted answer to a send that passed the checks. */
export type FcmReply =
  /** Google's error for the code (its HTTP status unless `status` says otherwise), or a canonical error for a bare status; 200 delivers. */
  | { status?: number; errorCode?: FcmErrorCode; retryAfter?: number | string; delayMs?: number }
  /** Destroy the request's connection (TCP/TLS, no GOAWAY) while it is in flight. */
  | { drop: true; delayMs?: number }
  /** Never answer (until the connection goes away). */
  | { hang: true };

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

type Events = {
  request: [FcmRequestInfo];
  message: [FcmRecordedMessage];
  response: [FcmExchange];
  token: [TokenRequest];
};

type Accepted = Omit<FcmRecordedMessage, 'name' | 'time' | 'connection' | 'httpVersion'>;

export class FcmTestServer extends ProviderTestServer<Events> {
  readonly messages: FcmRecordedMessage[] = [];
  readonly exchanges: FcmExchange[] = [];
  readonly tokenRequests: TokenRequest[];
  now: () => number;
  delayMs: number;

  private readonly oauth: GoogleOAuth;
  private readonly unregistered = new Set<string>();
  private readonly tokenProjects = new Map<string, string>();
  private readonly replies = new Replies<FcmReply>();
  private messageCount = 0;

  private constructor(opts: FcmTestServerOptions) {
    // HTTP/1.1 too: OAuth clients use it
    super({ allowHTTP1: true, settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 } });
    this.now = opts.now ?? Date.now;
    this.delayMs = opts.delayMs ?? 0;
    this.oauth = new GoogleOAuth({
      now: () => this.now(),
      tokenUri: () => this.tokenUri,
      lifetimeSeconds: opts.tokenLifetimeSeconds ?? 3599,
      onRequest: (r) => this.emit('token', r),
    });
    this.tokenRequests = this.oauth.requests;
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

  /** A new service account the token endpoint trusts, or a further key of one (GoogleOAuth.serviceAccount). */
  serviceAccount(opts: { projectId?: string; clientEmail?: string; keyId?: string } = {}): ServiceAccountJson {
    return this.oauth.serviceAccount(opts);
  }

  /** Deletes a service-account key: assertions signed by it get invalid_grant. */
  revokeKey(keyId: string): void {
    this.oauth.revokeKey(keyId);
  }

  /** Forgets every access token issued: sends with them get 401 UNAUTHENTICATED. */
  revokeAccessTokens(): void {
    this.oauth.revokeAccessTokens();
  }

  /** Ends every access token issued now, by the server clock: sends with them get 401 UNAUTHENTICATED. */
  expireAccessTokens(): void {
    this.oauth.expireAccessTokens();
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
    this.oauth.replies.queue(reply, n);
    return this;
  }

  clearReplies(): this {
    this.replies.clear();
    this.oauth.replies.clear();
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
      const answer = (a: Answer) => {
        settle();
        return write(res, a);
      };
      const ctx: Exchange = { req, body, path, connection, httpVersion: req.httpVersion, answer, drop: () => conn?.socket.destroy() };
      if (path === '/token') this.oauth.serve(ctx);
      else this.sendEndpoint(ctx);
    });
  }

  // ---- POST /v1/projects/<project>/messages:send

  private sendEndpoint(ctx: Exchange): void {
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

  private answerSend(ctx: Exchange, a: Answer, token: string | undefined, bearer: string | undefined, accepted: Accepted | undefined, delayMs: number): void {
    const send = () => {
      const time = this.now();
      let answer = a;
      let name: string | undefined;
      if (a.status === 200 && accepted) {
        name = `projects/${accepted.projectId}/messages/0:${time}${String(++this.messageCount).padStart(6, '0')}%${randomBytes(8).toString('hex')}`;
        answer = { status: 200, body: { name } };
      }
      if (!ctx.answer(answer)) return; // the stream went away meanwhile
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

  private checkSend(ctx: Exchange, bearer: string | undefined): { answer: Answer; token: string | undefined } | Accepted {
    const fail = (answer: Answer, token?: string) => ({ answer, token });
    const m = SEND_PATH.exec(ctx.path);
    if (!m || ctx.req.method !== 'POST') return fail({ status: 404, body: googleError(404, 'NOT_FOUND', 'Requested entity was not found.'), errorCode: 'NOT_FOUND' });
    const project = decodeURIComponent(m[1]!);

    const realm = 'Bearer realm="https://accounts.google.com/"';
    if (!bearer)
      return fail({ status: 401, body: googleError(401, 'UNAUTHENTICATED', UNAUTHENTICATED_MISSING), headers: { 'www-authenticate': realm }, errorCode: 'UNAUTHENTICATED' });
    const grant = this.oauth.grantOf(bearer);
    if (!grant)
      return fail({
        status: 401,
        body: googleError(401, 'UNAUTHENTICATED', UNAUTHENTICATED_INVALID),
        headers: { 'www-authenticate': `${realm}, error="invalid_token"` },
        errorCode: 'UNAUTHENTICATED',
      });
    if (!grant.scopes.includes(FCM_SCOPE) && !grant.scopes.includes(CLOUD_PLATFORM_SCOPE))
      return fail({ status: 403, body: googleError(403, 'PERMISSION_DENIED', 'Request had insufficient authentication scopes.'), errorCode: 'PERMISSION_DENIED' });
    if (grant.projectId !== project)
      return fail({
        status: 403,
        body: googleError(
          403,
          'PERMISSION_DENIED',
          `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${project}' (or it may not exist).`,
        ),
        errorCode: 'PERMISSION_DENIED',
      });

    const read = readSendBody(String(ctx.req.headers['content-type'] ?? ''), ctx.body);
    if ('answer' in read) return fail(read.answer, read.token);
    const { message, text, token } = read;
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
      clientEmail: grant.clientEmail,
    };
  }
}

/** Writes an answer as JSON; false if the request is gone. */
function write(res: AnyResponse, a: Answer): boolean {
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

/** The answer a scripted reply stands for. */
function replyAnswer(reply: Extract<FcmReply, { status?: number }>): Answer {
  const status = reply.status ?? 200;
  if (!reply.errorCode && status === 200) return { status: 200, body: undefined };
  const a = reply.errorCode ? fcmError(reply.errorCode, reply.status) : canonicalError(status);
  if (reply.retryAfter !== undefined) a.headers = { ...a.headers, 'retry-after': String(reply.retryAfter) };
  return a;
}
