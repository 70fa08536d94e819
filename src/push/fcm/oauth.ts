// OAuth2 access tokens for FCM from a Google service account (Google's
// "Using OAuth 2.0 for Server to Server Applications"):
//
//   POST <token_uri>   application/x-www-form-urlencoded
//     grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>
//   JWT  header {"alg":"RS256","typ":"JWT","kid":<private_key_id>}
//        claims {"iss":<client_email>,"scope":<FCM scope>,"aud":<token_uri>,"iat":now,"exp":now+3600}
//   200  {"access_token":…,"expires_in":3599,"token_type":"Bearer"}
//   4xx  {"error":"invalid_grant","error_description":…}
//
// One access token serves every send until less than 5 minutes of it remain;
// concurrent sends that find none share one fetch. The fetch uses node:https
// (global fetch cannot take a custom CA, which a test server needs).
import { createPrivateKey, type KeyObject } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import { Credential, type Issued } from '../credential.ts';
import { signJws } from '../jws.ts';
import { retryAfterMs } from '../outcome.ts';

export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Google refuses assertions that live longer than an hour. */
export const ASSERTION_LIFETIME_SECONDS = 3600;
/** An access token is renewed once less than this remains of it. */
export const REFRESH_MARGIN_MS = 5 * 60_000;

/** The fields of a service-account key file (the JSON Firebase lets you download) that are used here. */
export interface ServiceAccount {
  type: 'service_account';
  project_id: string;
  client_email: string;
  /** RSA private key, PKCS#8 PEM. */
  private_key: string;
  private_key_id: string;
  token_uri: string;
}

const REQUIRED = ['project_id', 'client_email', 'private_key', 'private_key_id', 'token_uri'] as const;

/**
 * Reads and checks a service account (the parsed JSON or its text). Throws a
 * TypeError naming what is wrong; never echoes the private key.
 */
export function parseServiceAccount(input: unknown): ServiceAccount {
  let v = input;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw new TypeError('FCM service account: not valid JSON');
    }
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError('FCM service account: expected a JSON object');
  const o = v as Record<string, unknown>;
  if (o.type !== 'service_account')
    throw new TypeError(`FCM service account: "type" must be "service_account", got ${o.type === undefined ? 'nothing' : JSON.stringify(o.type)}`);
  const missing = REQUIRED.filter((k) => typeof o[k] !== 'string' || (o[k] as string).trim() === '');
  if (missing.length) throw new TypeError(`FCM service account: missing ${missing.map((k) => `"${k}"`).join(', ')}`);
  let uri: URL;
  try {
    uri = new URL(o.token_uri as string);
  } catch {
    throw new TypeError('FCM service account: "token_uri" is not a URL');
  }
  if (uri.protocol !== 'https:' && uri.protocol !== 'http:') throw new TypeError('FCM service account: "token_uri" must be an https URL');
  const sa: ServiceAccount = {
    type: 'service_account',
    project_id: o.project_id as string,
    client_email: o.client_email as string,
    private_key: o.private_key as string,
    private_key_id: o.private_key_id as string,
    token_uri: o.token_uri as string,
  };
  loadServiceAccountKey(sa.private_key);
  return sa;
}

/** The service account's RSA private key (PKCS#8 PEM). */
export function loadServiceAccountKey(pem: string): KeyObject {
  let k: KeyObject;
  try {
    k = createPrivateKey(pem);
  } catch {
    throw new TypeError('FCM service account: "private_key" is not a PEM private key');
  }
  if (k.asymmetricKeyType !== 'rsa') throw new TypeError('FCM service account: "private_key" must be an RSA key (RS256)');
  return k;
}

/** Signs the RS256 JWT assertion the token endpoint exchanges for an access token. */
export function signAssertion(sa: ServiceAccount, key: KeyObject, iatSeconds: number, scope = FCM_SCOPE): string {
  const claims = { iss: sa.client_email, scope, aud: sa.token_uri, iat: iatSeconds, exp: iatSeconds + ASSERTION_LIFETIME_SECONDS };
  return signJws({ alg: 'RS256', typ: 'JWT', kid: sa.private_key_id }, claims, key);
}

export type AccessTokenResult =
  | { ok: true; token: string; expiresAt: number }
  /** retry: the endpoint or the network failed; failed: the credentials were refused (a 4xx such as invalid_grant). */
  | { ok: false; outcome: 'retry' | 'failed'; reason: string; afterMs?: number };

export interface FcmAccessTokenOptions {
  serviceAccount: ServiceAccount | object | string;
  /** Trusted CA certificates (PEM) for the token endpoint, for a test server. */
  ca?: string | Buffer | Array<string | Buffer>;
  scope?: string;
  /** A token request not answered by then is given up (retry); default 10 s. */
  requestTimeoutMs?: number;
  /** After a failed fetch, sends get the same answer this long without a new fetch (default 5 s; 0 = always fetch). */
  failureHoldMs?: number;
  /** Milliseconds since the epoch (assertion iat, token expiry). */
  now?: () => number;
  log?: Logger;
}

type Failure = Extract<AccessTokenResult, { ok: false }>;

/** The cached access token of one service account; invalidate(token) after the send endpoint refused it (401). */
export class FcmAccessToken extends Credential<string> {
  readonly serviceAccount: ServiceAccount;
  /** Token requests made (for metrics and tests). */
  fetches = 0;
  private readonly key: KeyObject;
  private readonly opts: FcmAccessTokenOptions;
  private readonly timeoutMs: number;
  private readonly failureHoldMs: number;
  private lastFailure: { result: Failure; until: number } | undefined;
  private readonly requests = new Set<http.ClientRequest>();
  private closed = false;

  constructor(opts: FcmAccessTokenOptions) {
    super(opts.now);
    this.opts = opts;
    this.serviceAccount = parseServiceAccount(opts.serviceAccount);
    this.key = loadServiceAccountKey(this.serviceAccount.private_key);
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.failureHoldMs = opts.failureHoldMs ?? 5000;
  }

  /** The cached token if it is still valid (even if due for renewal), without fetching. */
  peek(): string | undefined {
    return this.unexpired()?.value;
  }

  /** The token to send with: the cached one, or one fetched now (one fetch however many callers). */
  async get(): Promise<AccessTokenResult> {
    const r = await this.obtain(() => this.renew());
    return r.ok ? { ok: true, token: r.value, expiresAt: r.expiresAt } : this.fallback(r);
  }

  /** A new token, unless a failure is still held (its answer given again without a fetch) or the provider closed. */
  private async renew(): Promise<({ ok: true } & Issued<string>) | Failure> {
    const held = this.lastFailure;
    if (held && this.now() < held.until) return held.result;
    if (this.closed) return { ok: false, outcome: 'retry', reason: 'provider closed' };
    const r = await this.fetch();
    this.lastFailure = r.ok || this.failureHoldMs <= 0 ? undefined : { result: r, until: this.now() + this.failureHoldMs };
    return r;
  }

  /** Aborts a token request in flight; later calls answer retry. */
  close(): void {
    this.closed = true;
    for (const r of this.requests) r.destroy(new Error('closed'));
  }

  /** A failed renewal while the old token still has a minute left: keep using it. */
  private fallback(r: Failure): AccessTokenResult {
    const c = this.unexpired();
    return c && this.now() < c.expiresAt - 60_000 ? { ok: true, token: c.value, expiresAt: c.expiresAt } : r;
  }

  private async fetch(): Promise<({ ok: true } & Issued<string>) | Failure> {
    this.fetches++;
    const sa = this.serviceAccount;
    const started = this.now();
    const assertion = signAssertion(sa, this.key, Math.floor(started / 1000), this.opts.scope ?? FCM_SCOPE);
    const form = new URLSearchParams({ grant_type: JWT_BEARER_GRANT, assertion }).toString();
    const res = await this.post(sa.token_uri, form);
    const log = this.opts.log;
    if ('error' in res) {
      log?.warn({ event: 'fcm_token_fetch_failed', err: res.error });
      return { ok: false, outcome: 'retry', reason: `oauth: ${res.error}` };
    }
    let json: Record<string, unknown> = {};
    try {
      const v: unknown = JSON.parse(res.body);
      if (v && typeof v === 'object') json = v as Record<string, unknown>;
    } catch {
      // not JSON: judged by status alone
    }
    if (res.status === 200) {
      const token = json.access_token;
      const expiresIn = json.expires_in;
      if (typeof token !== 'string' || token === '' || typeof expiresIn !== 'number' || !(expiresIn > 0)) {
        log?.warn({ event: 'fcm_token_fetch_failed', status: 200, err: 'malformed token response' });
        return { ok: false, outcome: 'retry', reason: 'oauth: malformed token response' };
      }
      // lifetime counted from when we asked, so a slow answer errs on the early side
      const lifetime = expiresIn * 1000;
      const expiresAt = started + lifetime;
      // a token that lives less than twice the margin (none from Google) is renewed at half-life
      const renewAt = expiresAt - Math.min(REFRESH_MARGIN_MS, lifetime / 2);
      log?.info({ event: 'fcm_token_fetched', expiresIn });
      return { ok: true, value: token, issuedAt: started, expiresAt, renewAt };
    }
    const error = typeof json.error === 'string' ? json.error : `HTTP ${res.status}`;
    const description = typeof json.error_description === 'string' ? `: ${json.error_description}` : '';
    const reason = `oauth: ${error}${description}`;
    log?.warn({ event: 'fcm_token_fetch_failed', status: res.status, err: `${error}${description}` });
    // 4xx is Google refusing these credentials (invalid_grant, invalid_client, …): no use trying again soon;
    // 408/429 and 5xx pass
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) return { ok: false, outcome: 'failed', reason };
    const afterMs = retryAfterMs(res.retryAfter, this.now());
    return afterMs !== undefined ? { ok: false, outcome: 'retry', reason, afterMs } : { ok: false, outcome: 'retry', reason };
  }

  private post(uri: string, form: string): Promise<{ status: number; body: string; retryAfter?: string } | { error: string }> {
    return new Promise((resolve) => {
      const url = new URL(uri);
      const mod = url.protocol === 'http:' ? http : https;
      let req: http.ClientRequest;
      try {
        req = mod.request(url, {
          method: 'POST',
          // one request an hour: no connection kept
          agent: false,
          ...(this.opts.ca && url.protocol === 'https:' ? { ca: this.opts.ca } : {}),
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form), accept: 'application/json' },
        });
      } catch (e) {
        return resolve({ error: e instanceof Error ? e.message : String(e) });
      }
      this.requests.add(req);
      let settled = false;
      const done = (r: { status: number; body: string; retryAfter?: string } | { error: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.requests.delete(req);
        resolve(r);
      };
      const timer = setTimeout(() => {
        done({ error: 'timeout' });
        req.destroy();
      }, this.timeoutMs);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (body.length < 65536) body += c;
        });
        res.on('end', () => {
          const ra = res.headers['retry-after'];
          done({ status: res.statusCode ?? 0, body, ...(ra !== undefined ? { retryAfter: ra } : {}) });
        });
        res.on('error', (e) => done({ error: e.message }));
      });
      req.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
      req.end(form);
    });
  }
}

