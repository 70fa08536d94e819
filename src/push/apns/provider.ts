// ApnsProvider: delivers pushes to Apple over HTTP/2 with token (JWT) auth,
// many concurrent streams over a few connections (src/push/http2/pool.ts).
// Headers, bodies and how each answer maps to a result: docs/push.md §1.
import type { KeyObject } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Provider, PushKind } from '../device.ts';
import { Http2Pool, jsonReason, type Http2Outcome, type Http2PoolOptions, type Http2PoolStats } from '../http2/pool.ts';
import { DELIVERED, http2Result, notSent, retryAfter, type Http2Answer, type StatusTable } from '../outcome.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';
import { ApnsJwt } from './jwt.ts';
import { alertFits, renderApns, type ApnsAlert, type ApnsRendered, type ApnsRenderOptions } from './payload.ts';

export const APNS_HOSTS = {
  production: 'https://api.push.apple.com',
  sandbox: 'https://api.sandbox.push.apple.com',
} as const;

/** Plausible APNs device token sizes (today 32 bytes; Apple says they may grow). */
export const MIN_APNS_TOKEN = 32;
export const MAX_APNS_TOKEN = 100;

export type ApnsTokenProvider = Extract<Provider, 'apns' | 'apns-sandbox'>;

/** Connection options (ca, connections, maxConcurrentStreams, requestTimeoutMs, pingIntervalMs, pingTimeoutMs, keepAlive, log) as in Http2Pool. */
export interface ApnsConfig extends Omit<Http2PoolOptions, 'url' | 'name'> {
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
  /** Renew the provider token after this long (20–60 min, default 50). */
  jwtRefreshMs?: number;
  /** The generic alert of message pushes. */
  alert?: ApnsAlert;
  ttlSeconds?: Partial<Record<PushKind, number>>;
  /** Milliseconds since the epoch (JWT iat, apns-expiration). */
  now?: () => number;
}

export class ApnsProvider implements PushProvider {
  readonly serves: readonly ApnsTokenProvider[];
  readonly url: string;
  readonly jwt: ApnsJwt;
  private readonly cfg: ApnsConfig;
  private readonly now: () => number;
  private readonly pool: Http2Pool;
  private readonly render: ApnsRenderOptions;
  private closed = false;

  constructor(cfg: ApnsConfig) {
    this.cfg = cfg;
    const h = cfg.host;
    this.serves = cfg.serves ?? [h === 'sandbox' ? 'apns-sandbox' : 'apns'];
    if (!cfg.topic) throw new TypeError('APNs topic (bundle ID) is required');
    this.now = cfg.now ?? Date.now;
    this.jwt = new ApnsJwt({
      keyId: cfg.keyId,
      teamId: cfg.teamId,
      key: cfg.key,
      now: this.now,
      ...(cfg.jwtRefreshMs !== undefined ? { refreshAfterMs: cfg.jwtRefreshMs } : {}),
    });
    this.pool = new Http2Pool({
      ...cfg,
      url: h === 'production' ? APNS_HOSTS.production : h === 'sandbox' ? APNS_HOSTS.sandbox : h,
      name: 'apns',
    });
    this.url = this.pool.url;
    if (cfg.alert && !alertFits(cfg.alert)) throw new RangeError("the APNs alert is too long: a message push with it would exceed APNs's 4096 bytes");
    this.render = {
      topic: cfg.topic,
      now: this.now,
      ...(cfg.alert ? { alert: cfg.alert } : {}),
      ...(cfg.ttlSeconds ? { ttlSeconds: cfg.ttlSeconds } : {}),
    };
  }

  get stats(): Http2PoolStats {
    return this.pool.stats;
  }

  async send(req: PushRequest): Promise<PushResult> {
    const refused = this.refuse(req);
    if (refused) return refused;
    let rendered: ApnsRendered;
    try {
      rendered = renderApns(req, this.render);
    } catch (e) {
      return { outcome: 'failed', reason: e instanceof RangeError ? 'PayloadTooLarge' : String(e) };
    }
    const t = req.device.token;
    const path = `/3/device/${Buffer.from(t.buffer, t.byteOffset, t.byteLength).toString('hex')}`;
    const h = rendered.headers;
    // the token is taken when the request leaves the queue, so one renewed meanwhile is used
    const attempt = (again: boolean) =>
      new Promise<{ answer: Http2Outcome; used: string }>((resolve) => {
        let used = '';
        const build = () => {
          used = this.jwt.token;
          const headers: OutgoingHttpHeaders = {
            ':method': 'POST',
            ':path': path,
            authorization: `bearer ${used}`,
            'apns-push-type': h['apns-push-type'],
            'apns-priority': h['apns-priority'],
            'apns-expiration': h['apns-expiration'],
            'apns-topic': h['apns-topic'],
            'content-length': rendered.body.length,
          };
          return { headers, body: rendered.body };
        };
        // the resend goes ahead of those waiting
        this.pool.send(build, (answer) => resolve({ answer, used }), { front: again });
      });
    const r = await this.jwt.send(attempt, isProviderTokenRejected, (first) =>
      this.cfg.log?.warn({ event: 'apns_provider_token_rejected', reason: jsonReason((first as { body: string }).body) }),
    );
    return http2Result(r, this.table, this.now);
  }

  /** Why a push is not even sent, if it is not. */
  private refuse(req: PushRequest): PushResult | undefined {
    const n = req.device.token.length;
    return notSent(this.closed, this.serves, req.device) ?? (n < MIN_APNS_TOKEN || n > MAX_APNS_TOKEN ? { outcome: 'invalid', reason: 'BAD' } : undefined);
  }

  /** Apple's answers. A provider token refused here was refused even when new. */
  private readonly table: StatusTable<Http2Answer> = (r) => {
    const { status } = r;
    if (status === 200) return DELIVERED;
    const reason = jsonReason(r.body) ?? `HTTP ${status}`;
    if (status === 400 && reason === 'BadDeviceToken') return { outcome: 'invalid', reason: 'BAD' };
    if (status === 400 && reason === 'DeviceTokenNotForTopic') return { outcome: 'invalid', reason: 'TOPIC' };
    if (status === 410) return { outcome: 'invalid', reason: reason === 'ExpiredToken' ? 'EXPIRED' : 'UNREGISTERED' };
    // a clock far off, worth retrying; InvalidProviderToken (wrong credentials) fails
    if (status === 403 && reason === 'ExpiredProviderToken') return retryAfter(r, reason, this.now);
    // 503 Shutdown: this connection is going away; send the next ones elsewhere
    if (status === 503) this.pool.retire(r.connection);
    return reason;
  };

  /** Stops taking pushes; queued ones resolve as retry, in-flight ones finish. */
  async close(): Promise<void> {
    this.closed = true;
    await this.pool.close();
  }
}

function isProviderTokenRejected(r: Http2Outcome): r is Http2Answer {
  if (!('status' in r) || r.status !== 403) return false;
  const reason = jsonReason(r.body);
  return reason === 'ExpiredProviderToken' || reason === 'InvalidProviderToken';
}
