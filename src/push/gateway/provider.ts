// GatewayProvider: a notification server's push provider that forwards every
// push to a remote push gateway (src/gateway/server.ts) over HTTP/2, so the
// notification server needs no Apple or Google credentials of its own.
//
//   200 + PushResult   that result, as the gateway's provider gave it
//   429 (rate/quota)   retry, after retry-after
//   5xx, lost          retry (a lost request may have been delivered)
//   401, 4xx           failed: our key is refused or the request is malformed
import { Http2Pool, jsonReason, type Http2PoolOptions, type Http2PoolStats } from '../http2/pool.ts';
import { PROVIDERS, type Provider } from '../device.ts';
import { http2Result, type Answer } from '../outcome.ts';
import type { PushProvider, PushRequest, PushResult } from '../provider.ts';
import { decodePushResult, encodePushRequest, PUSH_PATH } from './protocol.ts';

/** Connection options as in Http2Pool; keepAlive is on by default: the gateway is ours, and PINGs keep an idle link (through a load balancer, a NAT) alive and checked. */
export interface GatewayClientConfig extends Omit<Http2PoolOptions, 'name'> {
  /** The key `hush gateway add-server` printed for this notification server. */
  key: string;
  /** Token providers to send through the gateway (default: every one but 'test'). */
  serves?: readonly Provider[];
  now?: () => number;
}

export class GatewayProvider implements PushProvider {
  readonly serves: readonly Provider[];
  private readonly pool: Http2Pool;
  private readonly authorization: string;
  private readonly now: () => number;

  constructor(cfg: GatewayClientConfig) {
    this.serves = cfg.serves ?? PROVIDERS.filter((p) => p !== 'test');
    this.pool = new Http2Pool({ keepAlive: true, ...cfg, name: 'gateway' });
    this.authorization = `Bearer ${cfg.key}`;
    this.now = cfg.now ?? Date.now;
  }

  get stats(): Http2PoolStats {
    return this.pool.stats;
  }

  async send(req: PushRequest): Promise<PushResult> {
    const body = encodePushRequest(req);
    const headers = {
      ':method': 'POST',
      ':path': PUSH_PATH,
      authorization: this.authorization,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    return http2Result(await this.pool.request(() => ({ headers, body })), gatewayAnswer, this.now, fromGateway);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

const fromGateway = (why: string): string => `gateway: ${why}`;

/** The gateway's answers: 200 carries the result its provider gave. */
function gatewayAnswer({ status, body }: Answer): PushResult | string {
  if (status === 200) {
    const result = decodePushResult(body);
    return result.ok ? result.value : { outcome: 'failed', reason: fromGateway(result.error) };
  }
  return fromGateway(jsonReason(body, 'error') ?? `HTTP ${status}`);
}
