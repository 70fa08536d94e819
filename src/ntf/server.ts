// The notification server: token and subscription commands, the relay
// subscriber feeding NMSGs in, and the dispatcher sending pushes out.
import { parseAddress } from '../core/address.ts';
import type { KeepaliveOptions } from '../core/client.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import { equalBytes, latin1, latin1Bytes } from '../core/encoding.ts';
import { isValidPublicKey, sharedKey } from '../core/keys.ts';
import type { Transmission } from '../core/transmission.ts';
import type { PushProvider } from '../push/provider.ts';
import { AddressPolicy, type AddressRules } from '../server/address-guard.ts';
import type { ConnectionLimits } from '../server/connection-limits.ts';
import { serveProtocol, type Session } from '../server/protocol-server.ts';
import type { ListenerOptions, ProtocolServer, ServerSpec } from '../server/protocol-server.ts';
import type { RateLimiter } from '../server/rate-limit.ts';
import { ProtocolSession, shapeError, type SessionProtocol } from '../server/session-core.ts';
import { DEFAULT_NTF_CREATION, NtfCreationLimits, type NtfCreation } from './creation.ts';
import { Dispatcher, type DispatchOptions } from './dispatch.ts';
import { NtfMetrics } from './metrics.ts';
import {
  CODE_LENGTH,
  decodeCommand,
  encodeResponse,
  ID_LENGTH,
  MIN_CRON_MINUTES,
  NTF_BLOCK_SIZE,
  NTF_PROTOCOL,
  NTF_VERSIONS,
  UNKNOWN_COMMAND,
  type NtfCommand,
  type NtfError,
  type NtfResponse,
  type SubStatus,
} from './protocol.ts';
import type { NtfStore, SubRecord, TokenRecord } from './store/store.ts';
import { RelaySubscriber } from './subscriber.ts';
import { REAL_TIMERS, type Timers } from './timers.ts';

export interface NtfServerOptions extends ListenerOptions {
  /** X25519 key the server identifies with at relays (NSUBS). */
  serviceKey: KeyPair;
  store: NtfStore;
  providers: PushProvider[];
  /** Relay addresses admitted for SNEW and dialled (ntf.json `relays`); default: public addresses only. */
  relays?: AddressRules;
  metrics?: NtfMetrics;
  now?: () => number;
  /** Runs the retry delays of pushes and relay reconnects; default: the real timers. */
  timers?: Timers;
  dispatch?: Partial<DispatchOptions>;
  /** Client connections (ntf.json `limits`; idleTimeoutMs from `liveness`); unset ones: DEFAULT_CONNECTION_LIMITS. */
  limits?: Partial<ConnectionLimits>;
  /** How often due TCRN pushes are looked for. */
  cronIntervalMs?: number;
  subscriber?: { batchWindowMs?: number; backoffMs?: number; maxBackoffMs?: number; keepalive?: Partial<KeepaliveOptions> };
  /** /healthz fails while a relay link with ACTIVE subscriptions has been down this long. */
  linkDownLimitMs?: number;
  /** Creation password, rate limits, subscriptions per token, token expiry (ntf.json `creation`). */
  creation?: Partial<NtfCreation>;
  /** Membership of a cluster on one PostgreSQL database (docs/ntf-cluster.md); none: this server is the only one. */
  cluster?: NtfCluster;
}

/** What a server asks of its cluster membership (cluster/member.ts). */
export interface NtfCluster {
  /** This member holds the relay's lease: it links the relay and pushes what comes from it. */
  holdsRelay(relay: string): boolean;
  /** This member runs the TCRN pushes and token expiry. */
  holdsCron(): boolean;
  /** The relay's holder has its link up (SCHK says INACTIVE otherwise). */
  linkUp(relay: string): boolean;
  /** Resolves once the other members' changes committed so far are in memory: commands wait for it. */
  catchUp(): Promise<void>;
  /** Whether a subscription unknown to this member is stored by none either. */
  confirmGone(relay: string, notifierId: string): Promise<boolean>;
  /** A subscription was made at `relay`: its lease is taken soon if nobody holds it. */
  relayWanted(relay: string): void;
  /** Another connection of the service took `relay` over. */
  takenOver(relay: string): void;
  start(server: NtfServer): Promise<void>;
  /** Hands the leases back (after the relay links are closed). */
  stop(): Promise<void>;
  health(): { ok: boolean; reason?: string };
}

/** A dead link is closed within 20 s (keepalive) and retried at once: down longer than this is an outage. */
export const DEFAULT_LINK_DOWN_LIMIT_MS = 30_000;

const OK: NtfResponse = { type: 'OK' };
const SPEC: ServerSpec = {
  protocol: NTF_PROTOCOL,
  versions: NTF_VERSIONS,
  blockSize: NTF_BLOCK_SIZE,
  busyReply: encodeResponse({ type: 'ERR', error: 'BUSY' }),
};
/** Token states that may manage subscriptions (INVALID/EXPIRED: so a client can clean up). */
const SUB_ALLOWED = new Set(['ACTIVE', 'INVALID', 'EXPIRED']);

export class NtfServer {
  readonly metrics: NtfMetrics;
  readonly dispatcher: Dispatcher;
  readonly subscriber: RelaySubscriber;
  readonly relayPolicy: AddressPolicy;
  readonly store: NtfStore;
  readonly crypto: CryptoSuite;
  readonly now: () => number;
  readonly creation: NtfCreationLimits;
  private readonly server: ProtocolServer;
  private cronTimer: ReturnType<typeof setInterval> | undefined;
  private flushQueued = false;

  constructor(readonly opts: NtfServerOptions) {
    this.store = opts.store;
    this.crypto = opts.crypto;
    this.now = opts.now ?? Date.now;
    this.metrics = opts.metrics ?? new NtfMetrics();
    this.relayPolicy = new AddressPolicy(opts.relays);
    this.creation = new NtfCreationLimits({ ...DEFAULT_NTF_CREATION, ...opts.creation }, opts.crypto, this.now, (command, reason) =>
      this.metrics.refusals.inc({ command, reason }),
    );
    this.dispatcher = new Dispatcher(
      {
        providers: opts.providers,
        store: opts.store,
        crypto: opts.crypto,
        log: opts.log,
        metrics: this.metrics,
        now: this.now,
        timers: opts.timers ?? REAL_TIMERS,
        changed: () => this.persistSoon(),
      },
      opts.dispatch,
    );
    this.subscriber = new RelaySubscriber({
      crypto: opts.crypto,
      serviceKey: opts.serviceKey,
      policy: this.relayPolicy,
      onRefused: () => this.metrics.relaysRefused.inc(),
      store: opts.store,
      log: opts.log,
      onNotification: (sub, nmsg) => this.notification(sub, nmsg),
      changed: () => this.persistSoon(),
      durable: () => this.store.flush(),
      onProbe: (ms) => this.metrics.relayProbeRtt.observe(ms / 1000),
      now: this.now,
      timers: opts.timers ?? REAL_TIMERS,
      ...opts.subscriber,
      ...(opts.cluster ? clusterLinks(opts.cluster) : {}),
    });
    this.metrics.bind({
      counts: () => this.store.counts(),
      inactive: () => this.subscriber.inactive(),
      queueLengths: () => this.dispatcher.queueLengths(),
      pendingPushes: () => this.dispatcher.pendingPushes(),
      linkStates: () => this.subscriber.linkStates(),
      longestLinkDownMs: () => this.subscriber.longestDown(),
      storeFailed: () => this.store.failure() !== undefined,
    });
    const protocol: SessionProtocol<NtfCommand, NtfResponse, NtfError> = {
      decodeCommand,
      unknownCommand: UNKNOWN_COMMAND,
      encodeResponse,
      metrics: this.metrics,
    };
    this.server = serveProtocol(SPEC, opts, {
      limits: opts.limits ?? {},
      store: this.store,
      metrics: this.metrics,
      handler: (session) => new NtfSession(this, protocol, session),
      ...(opts.cluster ? { gate: () => opts.cluster!.catchUp() } : {}),
    });
  }

  async start(): Promise<number> {
    const port = await this.server.listen();
    // Before the relays send anything: what was pending at the last stop (or kill) is pushed now.
    this.dispatcher.pushPending();
    this.subscriber.start();
    await this.opts.cluster?.start(this);
    this.cronTimer = setInterval(() => this.runCron(), this.opts.cronIntervalMs ?? 10_000);
    this.cronTimer.unref();
    this.opts.log.info({ event: 'ntf_started', port, tls: this.opts.tls !== undefined });
    return port;
  }

  async stop(): Promise<void> {
    clearInterval(this.cronTimer);
    this.subscriber.close();
    await this.opts.cluster?.stop().catch((err) => this.opts.log.warn({ event: 'cluster_stop_failed', err: String(err) }));
    this.dispatcher.close();
    await this.server.close();
    try {
      await this.store.flush();
      await this.store.close();
    } catch (err) {
      // A failed store has nothing more to write; the providers must still be closed.
      this.opts.log.error({ event: 'store_close_failed', err: String(err) });
    }
    await Promise.all(this.opts.providers.map((p) => p.close()));
  }

  /** The address clients use, once started. */
  get address(): string {
    return this.server.address;
  }

  get connections(): number {
    return this.server.connections;
  }

  /** Sends the TCRN pushes that are due and deletes expired tokens (also run by a timer). */
  runCron(): void {
    if (this.opts.cluster && !this.opts.cluster.holdsCron()) return; // another member's duty
    this.dispatcher.runCron();
    const expired = this.creation.sweep(this.store, this.now(), (tokenId) => this.deleteToken(tokenId));
    for (const [kind, n] of Object.entries(expired)) if (n > 0) this.metrics.tokensExpired.inc({ kind }, n);
    if (expired.unverified + expired.inactive > 0) this.opts.log.info({ event: 'tokens_expired', ...expired });
    this.persistSoon();
  }

  /** Changes made outside a command (push results, relay events) are flushed soon after. */
  persistSoon(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.store.flush().catch((err) => this.opts.log.error({ event: 'store_flush_failed', err: String(err) }));
    });
  }

  private notification(sub: SubRecord, nmsg: { nonce: Uint8Array; sealedMeta: Uint8Array }): void {
    this.metrics.received.inc();
    const token = this.store.token(sub.tokenId);
    if (!token) return;
    // The relay sends again what it has no NACK for: kept already, pushed or pending, so nothing changes.
    const kept = this.store.lastNotification(token.tokenId, sub.subId);
    if (kept && equalBytes(kept.nonce, nmsg.nonce)) return;
    this.store.setLastNotification(token.tokenId, {
      subId: sub.subId,
      nonce: nmsg.nonce,
      sealedMeta: nmsg.sealedMeta,
      ts: this.now(),
    });
    // No persistSoon: the subscriber flushes before it acknowledges the NMSG.
    if (token.status.status === 'ACTIVE') this.dispatcher.push(token, 'message');
  }

  /** Deletes a token with its subscriptions, and stops the relays notifying them; returns how many there were. */
  deleteToken(tokenId: string): number {
    const subs = [...this.store.subsOfToken(tokenId)];
    this.store.deleteToken(tokenId);
    for (const sub of subs) this.subscriber.remove(sub);
    return subs.length;
  }

  /** Not ok when the store can no longer persist, or a relay link with ACTIVE subscriptions is down past the limit. */
  health(): { ok: boolean; reason?: string } {
    const failure = this.store.failure();
    if (failure) return { ok: false, reason: `store failed: ${failure}` };
    const cluster = this.opts.cluster?.health();
    if (cluster && !cluster.ok) return cluster;
    const down = this.subscriber.longestDown();
    if (down > (this.opts.linkDownLimitMs ?? DEFAULT_LINK_DOWN_LIMIT_MS))
      return { ok: false, reason: `a relay link with ACTIVE subscriptions has been down for ${Math.round(down / 1000)} s` };
    return { ok: true };
  }

  /** The reported status: ACTIVE reads INACTIVE while its relay is disconnected. */
  subStatus(sub: SubRecord): SubStatus {
    const up = this.opts.cluster ? this.opts.cluster.linkUp(sub.relay) : this.subscriber.connected(sub.relay);
    return sub.status === 'ACTIVE' && !up ? 'INACTIVE' : sub.status;
  }

  newId = () => latin1(this.crypto.randomBytes(ID_LENGTH));
}

/** The subscriber's side of cluster membership: only held relays are linked. */
const clusterLinks = (c: NtfCluster) => ({
  holds: (relay: string) => c.holdsRelay(relay),
  onTakenOver: (relay: string) => c.takenOver(relay),
  confirmGone: (relay: string, notifierId: string) => c.confirmGone(relay, notifierId),
});

type Reply = NtfResponse | NtfError;

class NtfSession extends ProtocolSession<NtfCommand, NtfResponse, NtfError> {
  /** This connection's TNEW and SNEW budgets, made at its first of each. */
  private tokenBudget: RateLimiter | undefined;
  private subBudget: RateLimiter | undefined;

  constructor(
    private readonly ntf: NtfServer,
    protocol: SessionProtocol<NtfCommand, NtfResponse, NtfError>,
    session: Session,
  ) {
    super(protocol, session);
  }

  protected handle(t: Transmission, c: NtfCommand): Reply {
    const { store } = this.ntf;
    const s = this.session;
    switch (c.type) {
      case 'PING':
        return shapeError(t, false, false) ?? { type: 'PONG' };
      case 'TNEW': {
        const bad = shapeError(t, false, true);
        if (bad) return bad;
        if (!isValidPublicKey(c.tknAuthKey) || !isValidPublicKey(c.tknDhKey)) return 'KEY';
        // Before the key agreement of verify: a refused TNEW costs the server little.
        const { tokens } = this.ntf.creation;
        const refused = tokens.check((this.tokenBudget ??= tokens.connectionBudget()), s.address, c.password);
        if (refused) return refused;
        if (!s.verify(t, c.tknAuthKey, 'TNEW')) return 'AUTH';
        const r = this.newToken(c);
        if (typeof r === 'object' && r.type === 'IDTKN') s.created(t, c.tknAuthKey, 'TNEW', 'token', r.tokenId);
        return r;
      }
    }
    const bad = shapeError(t, true, true);
    if (bad) return bad;
    if (c.type === 'SNEW') {
      // Before the token is looked up: SNEWs for tokens that do not exist count too.
      const { subscriptions } = this.ntf.creation;
      const refused = subscriptions.check((this.subBudget ??= subscriptions.connectionBudget()), s.address, undefined);
      if (refused) return refused;
    }
    const id = latin1(t.entityId);
    // SCHK and SDEL name a subscription; everything else a token.
    const bySub = c.type === 'SCHK' || c.type === 'SDEL';
    const sub = bySub ? store.sub(id) : undefined;
    const named = bySub ? sub && store.token(sub.tokenId) : store.token(id);
    const token = this.authorized(t, named, (k) => k.tknAuthKey, bySub ? 'subscription' : 'token');
    if (!token) return 'AUTH';
    switch (c.type) {
      case 'SCHK':
        return { type: 'SUB', status: this.ntf.subStatus(sub!) };
      case 'SDEL':
        store.deleteSub(sub!.subId);
        this.ntf.subscriber.remove(sub!);
        return OK;
      default:
        return this.tokenCommand(token, c);
    }
  }

  private newToken(c: Extract<NtfCommand, { type: 'TNEW' }>): Reply {
    const { store, crypto, dispatcher, creation } = this.ntf;
    if (!dispatcher.serves(c.device.provider)) return 'NO_PROVIDER';
    const existing = store.tokenOfDevice(c.device, c.tknAuthKey);
    if (existing) {
      // A repeated TNEW (the reply or the push got lost): same token, the code pushed again.
      if (!equalBytes(existing.tknDhKey, c.tknDhKey)) return 'AUTH';
      // Past the device token's verification pushes: RATE, and nothing changes.
      if (!creation.verificationPush(c.device, 'TNEW')) return 'RATE';
      const st = existing.status.status;
      if (st === 'NEW' || st === 'INVALID' || st === 'EXPIRED') store.renewCode(existing.tokenId, crypto.randomBytes(CODE_LENGTH), this.ntf.now());
      dispatcher.push(existing, 'verification');
      return { type: 'IDTKN', tokenId: latin1Bytes(existing.tokenId), srvDhKey: existing.srvDhKey };
    }
    const dh = crypto.x25519KeyPair();
    const tknDhSecret = sharedKey(crypto, dh.privateKey, c.tknDhKey, 'ntf token');
    if (!tknDhSecret) return 'KEY';
    if (!creation.verificationPush(c.device, 'TNEW')) return 'RATE';
    const token: TokenRecord = {
      tokenId: this.ntf.newId(),
      device: c.device,
      tknAuthKey: c.tknAuthKey,
      tknDhKey: c.tknDhKey,
      srvDhKey: dh.publicKey,
      tknDhSecret,
      status: { status: 'REGISTERED' },
      code: crypto.randomBytes(CODE_LENGTH),
      cronMinutes: 0,
      cronNextAt: 0,
      statusAt: this.ntf.now(),
      verified: false,
    };
    if (!store.createToken(token)) return 'INTERNAL';
    dispatcher.push(store.token(token.tokenId)!, 'verification');
    return { type: 'IDTKN', tokenId: latin1Bytes(token.tokenId), srvDhKey: token.srvDhKey };
  }

  private tokenCommand(token: TokenRecord, c: NtfCommand): Reply {
    const { store, crypto, dispatcher } = this.ntf;
    const status = token.status.status;
    switch (c.type) {
      case 'TVFY': {
        const verifiable = status === 'REGISTERED' || status === 'CONFIRMED' || status === 'ACTIVE';
        if (!verifiable || !equalBytes(token.code, c.code)) return 'AUTH';
        store.setTokenStatus(token.tokenId, { status: 'ACTIVE' }, this.ntf.now());
        // The device proved it gets this token's pushes: its other tokens (the app was
        // reinstalled, their keys are lost) go with their subscriptions, so it gets each push once.
        for (const old of [...store.tokensOfDevice(token.device)]) {
          if (old.tokenId === token.tokenId) continue;
          const subscriptions = this.ntf.deleteToken(old.tokenId);
          this.ntf.opts.log.info({ event: 'token_replaced', subscriptions });
        }
        return OK;
      }
      case 'TCHK':
        return { type: 'TKN', ...token.status };
      case 'TRPL':
        if (!dispatcher.serves(c.device.provider)) return 'NO_PROVIDER';
        if (!this.ntf.creation.verificationPush(c.device, 'TRPL')) return 'RATE';
        store.replaceDevice(token.tokenId, c.device, crypto.randomBytes(CODE_LENGTH), this.ntf.now());
        dispatcher.push(token, 'verification');
        return OK;
      case 'TDEL':
        this.ntf.deleteToken(token.tokenId);
        return OK;
      case 'TCRN':
        if (c.minutes !== 0 && c.minutes < MIN_CRON_MINUTES) return 'QUOTA';
        // The first check push comes one interval from now, not at once and not never.
        store.setCron(token.tokenId, c.minutes, c.minutes === 0 ? 0 : this.ntf.now() + c.minutes * 60_000);
        return OK;
      case 'SNEW':
        if (!SUB_ALLOWED.has(status)) return 'AUTH';
        return this.newSub(token, c);
      default:
        return 'UNKNOWN';
    }
  }

  private newSub(token: TokenRecord, c: Extract<NtfCommand, { type: 'SNEW' }>): Reply {
    const { store, subscriber } = this.ntf;
    const address = parseAddress(c.relay);
    // The relay's creation password is the client's to keep: never stored here.
    if (!address.ok || address.value.password !== undefined) return 'SYNTAX';
    if (this.ntf.relayPolicy.refusesHost(address.value.host)) return 'RELAY';
    const notifierId = latin1(c.notifierId);
    const ntfAuthKey = latin1(c.ntfAuthKey);
    const existing = store.subOfNotifier(c.relay, notifierId);
    if (existing) {
      // Idempotent for the same token and key; a queue belongs to one token.
      if (existing.tokenId !== token.tokenId || existing.ntfAuthKey !== ntfAuthKey) return 'AUTH';
      return { type: 'IDSUB', subId: latin1Bytes(existing.subId) };
    }
    if (store.subscriptionCount(token.tokenId) >= this.ntf.creation.opts.maxSubscriptionsPerToken) {
      this.ntf.creation.refused('SNEW', 'subscriptions_per_token');
      return 'QUOTA';
    }
    const sub: SubRecord = { subId: this.ntf.newId(), tokenId: token.tokenId, relay: c.relay, notifierId, ntfAuthKey, status: 'NEW' };
    if (!store.createSub(sub)) return 'INTERNAL';
    subscriber.add(store.sub(sub.subId)!);
    this.ntf.opts.cluster?.relayWanted(sub.relay);
    return { type: 'IDSUB', subId: latin1Bytes(sub.subId) };
  }
}
