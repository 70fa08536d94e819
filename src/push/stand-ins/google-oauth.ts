// Google's OAuth token endpoint as the FCM test server (fcm-server.ts) serves
// it, at /token: service accounts it trusts and the access tokens it issues,
// as Google documents in "Using OAuth 2.0 for Server to Server Applications":
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
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { generatePemKeyPair } from '../../server/identity.ts';
import { decodeJws, verifyJws } from '../jws.ts';
import type { AnyRequest } from './http2-server.ts';
import { Replies } from './replies.ts';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const SHORT_LIVED =
  'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';

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

/** A scripted answer of the token endpoint, given before the assertion is checked ({status: 200} checks it as usual). */
export type TokenReply =
  | { status: number; error?: string; errorDescription?: string; retryAfter?: number | string; delayMs?: number }
  | { drop: true; delayMs?: number }
  | { hang: true };

export interface TokenRequest {
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

/** An access token issued, and what it grants. */
export interface Grant {
  clientEmail: string;
  projectId: string;
  scopes: string[];
  expiresAt: number;
}

/** A JSON answer of the server. */
export interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** What the server records of an error: the FCM error code, else the canonical status. */
  errorCode?: string;
}

/** A request to the server, its body read. */
export interface Exchange {
  req: AnyRequest;
  /** Undefined if over the server's body limit. */
  body: Buffer | undefined;
  path: string;
  connection: number;
  httpVersion: string;
  /** Writes an answer; false if the request is gone. */
  answer: (a: Answer) => boolean;
  /** Destroys the request's TCP connection. */
  drop: () => void;
}

export interface GoogleOAuthOptions {
  /** Server clock, ms (JWT times, access token expiry). */
  now: () => number;
  /** This endpoint's URL: key files' token_uri, the assertions' aud. */
  tokenUri: () => string;
  /** Access token lifetime. */
  lifetimeSeconds: number;
  /** Each token request, once recorded. */
  onRequest: (r: TokenRequest) => void;
}

interface Account {
  projectId: string;
  keys: Map<string, KeyObject>;
}

interface OAuthError {
  error: string;
  error_description: string;
}

const randomDigits = (n: number) => [...randomBytes(n)].map((b) => String(b % 10)).join('');

export class GoogleOAuth {
  readonly requests: TokenRequest[] = [];
  /** Scripted answers of the token endpoint. */
  readonly replies = new Replies<TokenReply>();
  private readonly accounts = new Map<string, Account>();
  private readonly issued = new Map<string, Grant>();

  constructor(private readonly opts: GoogleOAuthOptions) {}

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
      token_uri: this.opts.tokenUri(),
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(clientEmail)}`,
      universe_domain: 'googleapis.com',
    };
  }

  /** Deletes a service-account key: assertions signed by it get invalid_grant. */
  revokeKey(keyId: string): void {
    for (const a of this.accounts.values()) a.keys.delete(keyId);
  }

  /** Forgets every access token issued. */
  revokeAccessTokens(): void {
    this.issued.clear();
  }

  /** Ends every access token issued now, by the server clock. */
  expireAccessTokens(): void {
    const now = this.opts.now();
    for (const t of this.issued.values()) t.expiresAt = Math.min(t.expiresAt, now);
  }

  /** What an access token grants, unless it is unknown, revoked or expired. */
  grantOf(accessToken: string): Grant | undefined {
    const grant = this.issued.get(accessToken);
    return grant && this.opts.now() < grant.expiresAt ? grant : undefined;
  }

  /** Answers a request to the token endpoint: the scripted reply, if any, else the assertion checked. */
  serve(ctx: Exchange): void {
    const record = (a: Answer, extra: Partial<TokenRequest> = {}) => {
      const r: TokenRequest = { time: this.opts.now(), status: a.status, httpVersion: ctx.httpVersion, connection: ctx.connection, ...extra };
      const refusal = a.status !== 200 ? (a.body as OAuthError | undefined) : undefined;
      if (refusal) {
        r.error = refusal.error;
        r.errorDescription = refusal.error_description;
      }
      this.requests.push(r);
      this.opts.onRequest(r);
    };
    const reply = this.replies.take();
    if (reply) {
      if ('hang' in reply) return record({ status: 0, body: undefined });
      if ('drop' in reply) {
        record({ status: 0, body: undefined });
        if (reply.delayMs) setTimeout(ctx.drop, reply.delayMs);
        else ctx.drop();
        return;
      }
      if (reply.status !== 200) {
        const body: OAuthError = {
          error: reply.error ?? (reply.status >= 500 ? 'internal_failure' : 'invalid_request'),
          error_description: reply.errorDescription ?? 'Scripted failure',
        };
        const a: Answer = { status: reply.status, body, ...(reply.retryAfter !== undefined ? { headers: { 'retry-after': String(reply.retryAfter) } } : {}) };
        record(a);
        if (reply.delayMs) setTimeout(() => ctx.answer(a), reply.delayMs);
        else ctx.answer(a);
        return;
      }
    }
    const result = this.grant(ctx);
    record(result.answer, result.extra);
    ctx.answer(result.answer);
  }

  private grant(ctx: Exchange): { answer: Answer; extra?: Partial<TokenRequest> } {
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
    if (claims.aud !== this.opts.tokenUri()) return { ...oauthError('invalid_grant', 'Invalid JWT: Failed audience check.'), extra };
    const now = Math.floor(this.opts.now() / 1000);
    const { iat, exp } = claims;
    if (typeof iat !== 'number' || typeof exp !== 'number' || iat > now || exp <= now || exp < iat || exp - iat > 3600)
      return { ...oauthError('invalid_grant', SHORT_LIVED), extra };
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
    if (!scopes.length || !scopes.every((s) => s.startsWith('https://www.googleapis.com/auth/')))
      return { ...oauthError('invalid_scope', 'Invalid OAuth scope or ID token audience provided.'), extra };
    const accessToken = `ya29.${randomBytes(96).toString('base64url')}`;
    const lifetime = this.opts.lifetimeSeconds;
    this.issued.set(accessToken, { clientEmail: claims.iss as string, projectId: account.projectId, scopes, expiresAt: this.opts.now() + lifetime * 1000 });
    return {
      answer: { status: 200, body: { access_token: accessToken, expires_in: lifetime, token_type: 'Bearer' } },
      extra: { ...extra, accessToken },
    };
  }
}
