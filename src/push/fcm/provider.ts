// FcmProvider: delivers pushes to Firebase Cloud Messaging (HTTP v1 API) over
// HTTP/2, many concurrent streams over a few connections (src/push/http2/pool.ts),
// authorized by an OAuth2 access token from a service account (./oauth.ts).
// A push whose stream died with its connection resolves as 'retry' (it may or
// may not have reached Google), never silently lost.
//
// Responses (Google's "FCM error codes" and the ErrorCode reference): the FCM
// code is error.details[] {"@type": …FcmError, "errorCode"}, else error.status.
//   200                                   delivered
//   404 UNREGISTERED                      invalid UNREGISTERED
//   400 INVALID_ARGUMENT                  invalid BAD (see below)
//   403 SENDER_ID_MISMATCH                invalid TOPIC: the token belongs to another Firebase project
//   401 UNAUTHENTICATED                   access token refused: a new one, sent again at once (once); then failed
//   401 THIRD_PARTY_AUTH_ERROR            failed (the project's APNs/Web Push credentials; not ours to fix here)
//   429 QUOTA_EXCEEDED, 503 UNAVAILABLE, 500 INTERNAL, other 5xx
//                                         retry (afterMs from retry-after)
//   other                                 failed with the code
// The token endpoint failing: retry (network, 5xx) or failed (4xx: the credentials).
import type { Provider, PushKind } from '../device.ts';
import { Http2Pool, type Http2Outcome, type Http2PoolOptions, type Http2PoolStats } from '../http2/pool.ts';
import { DELIVERED, http2Result, notSent, retryAfter, retryResult, type Http2Answer, type StatusTable } from '../outcome.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';
import { FcmAccessToken, type AccessTokenResult } from './oauth.ts';
import { checkFcmTtl, fcmBody, fcmRegistrationToken } from './payload.ts';

export const FCM_ENDPOINT = 'https://fcm.googleapis.com';

/** Connection options (ca, connections, maxConcurrentStreams, requestTimeoutMs, pingIntervalMs, pingTimeoutMs, keepAlive, log) as in Http2Pool; ca and requestTimeoutMs apply to the token endpoint too. */
export interface FcmConfig extends Omit<Http2PoolOptions, 'url' | 'name'> {
  /** The service-account key file: parsed JSON or its text. Its token_uri is where access tokens come from. */
  serviceAccount: object | string;
  /** FCM's origin (default https://fcm.googleapis.com), e.g. a test server's. */
  endpoint?: string;
  ttlSeconds?: Partial<Record<PushKind, number>>;
  /** Milliseconds since the epoch (assertion iat, token expiry, retry-after dates). */
  now?: () => number;
}

/** An FCM error response, as far as it is read. */
export interface FcmErrorInfo {
  /** The FcmError errorCode from details, if any. */
  errorCode?: string;
  /** The canonical status (INVALID_ARGUMENT, NOT_FOUND, …), if any. */
  status?: string;
  message?: string;
  /** google.rpc.BadRequest field violations: which request fields were refused. */
  fields: string[];
}

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';

/** Reads Google's error JSON ({"error":{"code","message","status","details":[…]}}); tolerant of anything else. */
export function parseFcmError(body: string): FcmErrorInfo {
  const info: FcmErrorInfo = { fields: [] };
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return info;
  }
  const e = j && typeof j === 'object' ? (j as { error?: unknown }).error : undefined;
  if (!e || typeof e !== 'object') return info;
  const { status, message, details } = e as { status?: unknown; message?: unknown; details?: unknown };
  if (typeof status === 'string') info.status = status;
  if (typeof message === 'string') info.message = message;
  if (Array.isArray(details))
    for (const d of details) {
      if (!d || typeof d !== 'object') continue;
      const x = d as { '@type'?: unknown; errorCode?: unknown; fieldViolations?: unknown };
      if (x['@type'] === FCM_ERROR_TYPE && typeof x.errorCode === 'string') info.errorCode = x.errorCode;
      if (x['@type'] === BAD_REQUEST_TYPE && Array.isArray(x.fieldViolations))
        for (const v of x.fieldViolations) {
          const f = v && typeof v === 'object' ? (v as { field?: unknown }).field : undefined;
          if (typeof f === 'string') info.fields.push(f);
        }
    }
  return info;
}

export class FcmProvider implements PushProvider {
  readonly serves: readonly Provider[] = ['fcm'];
  readonly url: string;
  readonly projectId: string;
  readonly auth: FcmAccessToken;
  private readonly cfg: FcmConfig;
  private readonly now: () => number;
  private readonly pool: Http2Pool;
  private readonly path: string;
  private closed = false;

  constructor(cfg: FcmConfig) {
    this.cfg = cfg;
    this.now = cfg.now ?? Date.now;
    for (const s of Object.values(cfg.ttlSeconds ?? {})) if (s !== undefined) checkFcmTtl(s);
    this.auth = new FcmAccessToken({
      serviceAccount: cfg.serviceAccount,
      now: this.now,
      ...(cfg.ca ? { ca: cfg.ca } : {}),
      ...(cfg.requestTimeoutMs !== undefined ? { requestTimeoutMs: cfg.requestTimeoutMs } : {}),
      ...(cfg.log ? { log: cfg.log } : {}),
    });
    this.projectId = this.auth.serviceAccount.project_id;
    this.path = `/v1/projects/${encodeURIComponent(this.projectId)}/messages:send`;
    this.pool = new Http2Pool({ ...cfg, url: cfg.endpoint ?? FCM_ENDPOINT, name: 'fcm' });
    this.url = this.pool.url;
  }

  get stats(): Http2PoolStats {
    return this.pool.stats;
  }

  async send(req: PushRequest): Promise<PushResult> {
    const refused = notSent(this.closed, this.serves, req.device);
    if (refused) return refused;
    const registration = fcmRegistrationToken(req.device.token);
    if (registration === undefined) return { outcome: 'invalid', reason: 'BAD' };
    let body: string;
    try {
      body = fcmBody(registration, req, this.cfg.ttlSeconds ? { ttlSeconds: this.cfg.ttlSeconds } : {});
    } catch (e) {
      return { outcome: 'failed', reason: e instanceof RangeError ? 'payload too large' : String(e) };
    }
    const contentLength = Buffer.byteLength(body);

    let fetched = await this.auth.get();
    if (!fetched.ok) return tokenFailure(fetched);
    const attempt = async (again: boolean): Promise<{ answer: Http2Outcome | TokenFailure; used?: string }> => {
      if (again) {
        fetched = await this.auth.get();
        if (!fetched.ok) return { answer: fetched };
      }
      let used = '';
      const build = () => {
        // the token current when the request leaves (a renewed one at once), else the one fetched for it
        used = this.auth.peek() ?? (fetched as Extract<AccessTokenResult, { ok: true }>).token;
        return {
          headers: {
            ':method': 'POST',
            ':path': this.path,
            authorization: `Bearer ${used}`,
            'content-type': 'application/json; charset=utf-8',
            'content-length': contentLength,
          },
          body,
        };
      };
      // the resend goes ahead of those waiting
      const answer = await this.pool.request(build, { front: again });
      return { answer, used };
    };
    const r = await this.auth.send(attempt, isTokenRejected, () => this.cfg.log?.warn({ event: 'fcm_access_token_rejected' }));
    return 'ok' in r ? tokenFailure(r) : http2Result(r, this.table, this.now);
  }

  /** Google's answers, by FCM error code. */
  private readonly table: StatusTable<Http2Answer> = (r) => {
    const { status } = r;
    if (status === 200) return DELIVERED;
    const e = parseFcmError(r.body);
    // a fresh token refused too: the service account lacks access (or a clock far off)
    if (isTokenRejected(r, e)) return { outcome: 'failed', reason: 'UNAUTHENTICATED' };
    const code = e.errorCode ?? e.status ?? `HTTP ${status}`;
    switch (code) {
      // only with FCM's own code: a bare 404 NOT_FOUND is likelier a wrong endpoint or project
      // than a dead token, and failing a push is recoverable where invalidating a token is not
      case 'UNREGISTERED':
        return { outcome: 'invalid', reason: 'UNREGISTERED' };
      case 'INVALID_ARGUMENT':
        // Google answers so for a malformed token and for a malformed message alike; ours is
        // fixed and accepted (a test proves it), and a field violation naming another field
        // than the token says which of the two it is
        if (e.fields.some((f) => f !== 'message.token')) return { outcome: 'failed', reason: `INVALID_ARGUMENT (${e.fields.join(', ')})` };
        return { outcome: 'invalid', reason: 'BAD' };
      case 'SENDER_ID_MISMATCH':
        return { outcome: 'invalid', reason: 'TOPIC' };
      case 'QUOTA_EXCEEDED':
      case 'RESOURCE_EXHAUSTED':
      case 'UNAVAILABLE':
      case 'INTERNAL':
        // whatever the status
        return retryAfter(r, code, this.now);
    }
    return code;
  };

  /** Stops taking pushes; queued ones resolve as retry, in-flight ones finish. */
  async close(): Promise<void> {
    this.closed = true;
    this.auth.close();
    await this.pool.close();
  }
}

type TokenFailure = Extract<AccessTokenResult, { ok: false }>;

/** 401 for our access token (not THIRD_PARTY_AUTH_ERROR, which is about the project's APNs/Web Push keys); e: the body, parsed already. */
function isTokenRejected(r: Http2Outcome | TokenFailure, e?: FcmErrorInfo): boolean {
  return 'status' in r && r.status === 401 && (e ?? parseFcmError(r.body)).errorCode !== 'THIRD_PARTY_AUTH_ERROR';
}

function tokenFailure(r: TokenFailure): PushResult {
  return r.outcome === 'failed' ? { outcome: 'failed', reason: r.reason } : retryResult(r.reason, r.afterMs);
}
