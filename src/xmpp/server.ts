// The XEP-0357 push app server: an XMPP component (XEP-0114) of each XMPP
// server it serves, acting as the PubSub service their users' clients name in
// <enable/>. A client registers its device token with an ad-hoc command and
// gets a node and a secret; its server publishes to that node when a message
// waits; the app server checks the secret and wakes the device through Hush's
// providers with a content-free push of Hush's fixed size. The publish's
// summary (sender, body) is never read. Protocol and privacy: docs/xmpp.md.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { component, xml, type Component, type Element, type IqContext } from '@xmpp/component';
import type { Logger } from 'pino';
import { toBase64Url } from '../core/encoding.ts';
import { isProvider, PUSH_DATA_SIZE, type DeviceToken, type Provider } from '../push/device.ts';
import type { PushProvider } from '../push/provider.ts';
import { RateLimiter, type RateLimit } from '../server/rate-limit.ts';
import { XmppMetrics } from './metrics.ts';
import { completed, formFields, NS, readPublish, stanzaError } from './protocol.ts';
import type { RegistrationStore } from './store.ts';

/** One XMPP server the app server is a component of. */
export interface XmppLink {
  /** xmpp://host:port of the server's component listener (XEP-0114). */
  service: string;
  /** The component's domain there: what clients name in <enable jid=…/>. */
  domain: string;
  /** The component secret configured on that server. */
  password: string;
}

export interface XmppAppServerOptions {
  links: XmppLink[];
  providers: PushProvider[];
  store: RegistrationStore;
  log: Logger;
  metrics?: XmppMetrics;
  /** Registrations at most (a stranger may register); default 1,000,000. */
  maxRegistrations?: number;
  /** Pushes per node: burst, then per minute; default 10 and 60. */
  pushesPerNode?: RateLimit;
  /** New registrations per XMPP server (the requesting JID's domain); default 1,000 at once, 100 a minute. */
  registrationsPerServer?: RateLimit;
  now?: () => number;
}

/** Command nodes: `register-push-<provider>` (fields token, [device-id]) and `unregister-push` (node, secret). */
const REGISTER = 'register-push-';
const UNREGISTER = 'unregister-push';
const REGISTERABLE: readonly Provider[] = ['apns', 'apns-sandbox', 'fcm', 'webpush'];

/** A device token as the command carries it: hex for APNs, the registration token for FCM, the subscription JSON for Web Push. */
function deviceToken(provider: Provider, token: string): DeviceToken | undefined {
  if (!token || token.length > 2048) return undefined;
  if (provider === 'apns' || provider === 'apns-sandbox') return /^[0-9a-f]{16,200}$/i.test(token) ? { provider, token: Buffer.from(token, 'hex') } : undefined;
  return { provider, token: new TextEncoder().encode(token) };
}

/** Constant-time: a publish's secret against the node's. */
function secretMatches(stored: string, given: string | undefined): boolean {
  const a = Buffer.from(stored);
  const b = Buffer.from(given ?? '');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The server of a JID (its domain), for the registration budget only: never kept. */
const serverOf = (jid: string) => jid.replace(/\/.*$/, '').replace(/^[^@]*@/, '');

export class XmppAppServer {
  readonly metrics: XmppMetrics;
  private readonly components: Component[] = [];
  /** Pushes per node. */
  private readonly budget: RateLimiter;
  /** New registrations per requesting server: what a stranger can make the store keep. */
  private readonly registrations: RateLimiter;

  constructor(private readonly o: XmppAppServerOptions) {
    this.metrics = o.metrics ?? new XmppMetrics();
    this.metrics.bind({ registrations: () => o.store.size, online: () => this.online() });
    this.budget = new RateLimiter(o.pushesPerNode ?? { burst: 10, perMinute: 60 }, o.now ?? Date.now);
    this.registrations = new RateLimiter(o.registrationsPerServer ?? { burst: 1000, perMinute: 100 }, o.now ?? Date.now);
  }

  /** Connects to every server; resolves once each is online (each reconnects by itself afterwards). */
  async start(): Promise<void> {
    for (const link of this.o.links) {
      const c = component(link);
      c.on('error', (err: Error) => this.o.log.warn({ event: 'xmpp_error', domain: link.domain, err: err.message }));
      c.on('offline', () => this.o.log.warn({ event: 'xmpp_offline', domain: link.domain }));
      c.on('online', () => this.o.log.info({ event: 'xmpp_online', domain: link.domain }));
      c.iqCallee.get(NS.discoInfo, 'query', () => this.discoInfo());
      c.iqCallee.set(NS.commands, 'command', (ctx) => this.command(ctx));
      c.iqCallee.set(NS.pubsub, 'pubsub', async (ctx) => {
        const done = this.metrics.publishSeconds.startTimer();
        try {
          return await this.publish(ctx);
        } finally {
          done();
        }
      });
      this.components.push(c);
    }
    await Promise.all(this.components.map((c) => c.start()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.components.map((c) => c.stop().catch(() => {})));
    await this.o.store.flush().catch(() => {});
    await this.o.store.close().catch(() => {});
    await Promise.all(this.o.providers.map((p) => p.close()));
  }

  /** The component domains, one per XMPP server. */
  domains(): string[] {
    return this.o.links.map((l) => l.domain);
  }

  /** Components online now. */
  online(): number {
    return this.components.filter((c) => c.status === 'online').length;
  }

  /** Not ok while a server's component link is down, or the store cannot persist. */
  health(): { ok: boolean; reason?: string } {
    const failure = this.o.store.failure();
    if (failure) return { ok: false, reason: `store failed: ${failure}` };
    const down = this.o.links.filter((_, i) => this.components[i]?.status !== 'online').map((l) => l.domain);
    return down.length > 0 ? { ok: false, reason: `not connected to ${down.join(', ')}` } : { ok: true };
  }

  private discoInfo(): Element {
    return xml(
      'query',
      { xmlns: NS.discoInfo },
      xml('identity', { category: 'pubsub', type: 'push' }),
      xml('feature', { var: NS.push }),
      xml('feature', { var: NS.commands }),
    );
  }

  private command(ctx: IqContext): Promise<Element> {
    const node = ctx.element.attrs.node ?? '';
    const fields = formFields(ctx.element.getChild('x', NS.data));
    if (node === UNREGISTER) return this.unregister(fields);
    const provider = node.startsWith(REGISTER) ? node.slice(REGISTER.length) : '';
    if (!isProvider(provider) || !REGISTERABLE.includes(provider)) return Promise.resolve(stanzaError('cancel', 'item-not-found'));
    return this.register(node, provider, fields.get('token') ?? '', serverOf(ctx.stanza.attrs.from ?? ''));
  }

  private async register(command: string, provider: Provider, token: string, server: string): Promise<Element> {
    const refused = (result: string, error: Element) => {
      this.metrics.commands.inc({ command: 'register', result });
      return error;
    };
    if (!this.o.providers.some((p) => p.serves.includes(provider))) return refused('no_provider', stanzaError('cancel', 'feature-not-implemented'));
    const device = deviceToken(provider, token);
    if (!device) return refused('bad_request', stanzaError('modify', 'bad-request'));
    let reg = this.o.store.byDevice(device);
    if (!reg) {
      if (this.o.store.size >= (this.o.maxRegistrations ?? 1_000_000)) return refused('full', stanzaError('wait', 'resource-constraint'));
      if (!this.registrations.take(server)) return refused('rate', stanzaError('wait', 'resource-constraint'));
      reg = { node: toBase64Url(randomBytes(18)), secret: toBase64Url(randomBytes(24)), device };
      this.o.store.add(reg);
      await this.o.store.flush();
    }
    this.metrics.commands.inc({ command: 'register', result: 'ok' });
    return completed(command, toBase64Url(randomBytes(8)), { node: reg.node, secret: reg.secret });
  }

  private async unregister(fields: Map<string, string>): Promise<Element> {
    const reg = this.o.store.byNode(fields.get('node') ?? '');
    if (!reg || !secretMatches(reg.secret, fields.get('secret'))) {
      this.metrics.commands.inc({ command: 'unregister', result: 'not_authorized' });
      return stanzaError('auth', 'not-authorized');
    }
    this.o.store.delete(reg.node);
    await this.o.store.flush();
    this.metrics.commands.inc({ command: 'unregister', result: 'ok' });
    return completed(UNREGISTER, toBase64Url(randomBytes(8)), {});
  }

  private async publish(ctx: IqContext): Promise<Element | boolean> {
    const p = readPublish(ctx.element);
    if (!p) return stanzaError('modify', 'bad-request');
    const reg = this.o.store.byNode(p.node);
    if (!reg) {
      this.metrics.publishes.inc({ result: 'unknown_node' });
      return stanzaError('cancel', 'item-not-found');
    }
    if (!secretMatches(reg.secret, p.secret)) {
      this.metrics.publishes.inc({ result: 'not_authorized' });
      return stanzaError('auth', 'not-authorized');
    }
    if (!this.budget.take(reg.node)) {
      this.metrics.publishes.inc({ result: 'rate' });
      return stanzaError('wait', 'resource-constraint');
    }
    const provider = this.o.providers.find((x) => x.serves.includes(reg.device.provider));
    if (!provider) return stanzaError('cancel', 'feature-not-implemented');
    // Content-free: random bytes of Hush's push size, so a provider cannot tell it from a sealed Hush push.
    const started = performance.now();
    const result = await provider.send({ device: reg.device, kind: 'message', data: randomBytes(PUSH_DATA_SIZE) });
    this.metrics.pushSeconds.observe({ provider: reg.device.provider }, (performance.now() - started) / 1000);
    this.metrics.publishes.inc({ result: result.outcome });
    switch (result.outcome) {
      case 'delivered':
        return true;
      case 'invalid':
        // The device token is dead: the node goes, and the server disables the registration on this error.
        this.o.store.delete(reg.node);
        await this.o.store.flush();
        this.o.log.info({ event: 'registration_invalid', provider: reg.device.provider, reason: result.reason });
        return stanzaError('cancel', 'item-not-found');
      case 'retry':
        return stanzaError('wait', 'resource-constraint');
      default:
        return stanzaError('cancel', 'internal-server-error');
    }
  }
}
