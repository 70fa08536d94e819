// GatewayServer: the push gateway's HTTPS service (HTTP/2, and HTTP/1.1 over
// TLS for simple clients). It holds the push credentials; notification servers
// it has authorized hand it pushes (src/push/gateway/protocol.ts), each under its
// own rate limit and daily quota. Device tokens may come sealed to the
// gateway's key; it opens them here and nowhere else.
import { createHash } from 'node:crypto';
import http2, { type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import { toBase64Url } from '../core/encoding.ts';
import type { Provider } from '../push/device.ts';
import type { PushProvider, PushRequest, PushResult } from '../push/provider.ts';
import { capConnectionsPerAddress } from '../server/connection-limits.ts';
import { DEFAULT_CONNECTIONS_PER_ADDRESS, DEFAULT_IDLE_MS, Limiter, MAX_STREAMS_PER_CONNECTION, type Limits } from './limits.ts';
import { GatewayMetrics } from './metrics.ts';
import { decodePushRequest, encodePushResult, INFO_PATH, MAX_REQUEST_BYTES, PUSH_PATH, type GatewayInfo } from '../push/gateway/protocol.ts';
import { openDeviceToken } from '../push/gateway/sealed-token.ts';

/** A notification server the gateway serves. */
export interface ServerAccount extends Limits {
  /** The operator's name for it (metrics, logs). */
  name: string;
  /** SHA-256 of its key, hex: the gateway keeps no key in clear. */
  keyHash: string;
}

export interface GatewayServerOptions {
  host: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The X25519 key device tokens are sealed to. */
  sealKey: KeyPair;
  crypto: CryptoSuite;
  providers: PushProvider[];
  servers: ServerAccount[];
  /** Pushes in flight at most, all servers together; more get 503 (default 10000). */
  maxInFlight?: number;
  /** TCP connections per client address; 0: no cap (default DEFAULT_CONNECTIONS_PER_ADDRESS). */
  maxConnectionsPerAddress?: number;
  /** A connection with no request or response bytes for this long is closed (default DEFAULT_IDLE_MS). */
  idleTimeoutMs?: number;
  log?: Logger;
  now?: () => number;
}

/** A server key: what `hush gateway add-server` prints and the notification server sends. */
export const keyHash = (key: string): string => createHash('sha256').update(key).digest('hex');

interface Account {
  name: string;
  limiter: Limiter;
}

export class GatewayServer {
  readonly metrics = new GatewayMetrics();
  private readonly opts: GatewayServerOptions;
  private readonly accounts = new Map<string, Account>();
  private readonly providers = new Map<Provider, PushProvider>();
  private readonly maxInFlight: number;
  private inFlight = 0;
  private server: Http2Server | Http2SecureServer | undefined;
  private port = 0;

  constructor(opts: GatewayServerOptions) {
    this.opts = opts;
    this.maxInFlight = opts.maxInFlight ?? 10_000;
    for (const s of opts.servers) {
      if (!/^[0-9a-f]{64}$/.test(s.keyHash)) throw new TypeError(`server ${s.name}: keyHash must be 64 hex digits`);
      this.accounts.set(s.keyHash, { name: s.name, limiter: new Limiter(s, opts.now) });
    }
    for (const p of opts.providers) for (const name of p.serves) this.providers.set(name, p);
  }

  get info(): GatewayInfo {
    const vapidKey = this.opts.providers.find((p) => p.applicationServerKey)?.applicationServerKey;
    return { sealKey: toBase64Url(this.opts.sealKey.publicKey), providers: [...this.providers.keys()], ...(vapidKey ? { vapidKey } : {}) };
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `${this.opts.tls ? 'https' : 'http'}://${host}:${this.port}`;
  }

  get pushesInFlight(): number {
    return this.inFlight;
  }

  async start(): Promise<void> {
    const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => this.handle(req, res);
    const settings = { maxConcurrentStreams: MAX_STREAMS_PER_CONNECTION };
    const server = this.opts.tls
      ? http2.createSecureServer({ cert: this.opts.tls.cert, key: this.opts.tls.key, allowHTTP1: true, settings }, handler)
      : http2.createServer({ settings }, handler);
    capConnectionsPerAddress(server, this.opts.maxConnectionsPerAddress ?? DEFAULT_CONNECTIONS_PER_ADDRESS, () =>
      this.metrics.connectionsRefused.inc(),
    );
    // Node keeps an HTTP/2 connection it answered a connection error with (GOAWAY) open for
    // good, even after the peer leaves: only the idle timeout reaps it. PINGs are not activity,
    // so an idle notification server's connection goes too; its pool opens another on demand.
    server.setTimeout(this.opts.idleTimeoutMs ?? DEFAULT_IDLE_MS);
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.opts.log?.info({ event: 'gateway_started', url: this.url, providers: this.info.providers, servers: this.accounts.size });
  }

  /** Stops taking requests, lets those in flight finish (up to 3 s), then closes the providers. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((r) => server.close(() => r()));
    const deadline = new Promise<void>((r) => setTimeout(r, 3000).unref());
    await Promise.race([closed, deadline]);
    await Promise.all(this.opts.providers.map((p) => p.close()));
  }

  private handle(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const path = req.url.split('?')[0];
    if (path === INFO_PATH) {
      if (req.method !== 'GET') return reply(res, 405, { error: 'method_not_allowed' });
      return reply(res, 200, this.info);
    }
    if (path !== PUSH_PATH) return reply(res, 404, { error: 'not_found' });
    if (req.method !== 'POST') return reply(res, 405, { error: 'method_not_allowed' });
    const auth = req.headers.authorization;
    const account = typeof auth === 'string' && auth.startsWith('Bearer ') ? this.accounts.get(keyHash(auth.slice(7))) : undefined;
    if (!account) {
      this.metrics.requests.inc({ server: '', result: 'unauthorized' });
      return reply(res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
    }
    const count = (result: string) => this.metrics.requests.inc({ server: account.name, result });
    const admission = account.limiter.admit();
    if (!admission.ok) {
      count(admission.why);
      return reply(res, 429, { error: admission.why === 'rate' ? 'rate_limited' : 'quota_exceeded' }, { 'retry-after': String(admission.retryAfterSeconds) });
    }
    if (this.inFlight >= this.maxInFlight) {
      count('busy');
      return reply(res, 503, { error: 'busy' }, { 'retry-after': '1' });
    }
    readBody(req, MAX_REQUEST_BYTES).then(
      (body) => {
        if (body === undefined) {
          count('bad_request');
          return reply(res, 413, { error: 'too_large' });
        }
        const r = decodePushRequest(body);
        if (!r.ok) {
          count('bad_request');
          return reply(res, 400, { error: 'bad_request', message: r.error });
        }
        count('accepted');
        void this.deliver(r.value).then((result) => {
          if (!res.writableEnded && !res.destroyed) res.writeHead(200, { 'content-type': 'application/json' }).end(encodePushResult(result));
        });
      },
      () => res.destroy(),
    );
  }

  private async deliver(req: PushRequest): Promise<PushResult> {
    let device = req.device;
    if (device.provider === 'sealed') {
      const opened = openDeviceToken(this.opts.crypto, this.opts.sealKey, device.token);
      if (!opened) return { outcome: 'invalid', reason: 'BAD' };
      device = opened;
    }
    const provider = this.providers.get(device.provider);
    if (!provider) return { outcome: 'failed', reason: 'NO_PROVIDER' };
    this.inFlight++;
    this.metrics.inFlight.inc();
    const end = this.metrics.pushSeconds.startTimer({ provider: device.provider });
    let result: PushResult;
    try {
      result = await provider.send({ device, kind: req.kind, data: req.data });
    } catch (e) {
      this.opts.log?.error({ event: 'provider_threw', provider: device.provider, err: e instanceof Error ? e.message : String(e) });
      result = { outcome: 'retry', reason: 'provider error' };
    } finally {
      end();
      this.inFlight--;
      this.metrics.inFlight.dec();
    }
    this.metrics.pushes.inc({ provider: device.provider, kind: req.kind, outcome: result.outcome });
    return result;
  }
}

function reply(res: Http2ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

/** The request body as text, or undefined if it is longer than `max` bytes. */
function readBody(req: Http2ServerRequest, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
