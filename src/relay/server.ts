// The relay: command handlers (subscriptions are kept in subscriptions.ts). Handlers run synchronously
// against the store's in-memory state; ProtocolServer holds their replies
// until the store has flushed.
import type { CryptoSuite } from '../core/crypto/suite.ts';
import type { Transmission } from '../core/transmission.ts';
import { equalBytes } from '../core/encoding.ts';
import { isValidPublicKey, sharedKey } from '../core/keys.ts';
import { serveProtocol, type Session } from '../server/protocol-server.ts';
import { ProtocolSession, shapeError, type SessionProtocol } from '../server/session-core.ts';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../server/connection-limits.ts';
import type { ListenerOptions, ProtocolServer, ServerSpec } from '../server/protocol-server.ts';
import { CreationGuard, type CreationPolicy } from '../server/creation.ts';
import type { RateLimiter } from '../server/rate-limit.ts';
import { RelayMetrics } from './metrics.ts';
import { Subscriptions, type Subscriber } from './subscriptions.ts';
import {
  decodeCommand,
  encodeMeta,
  encodeMessagePlain,
  encodeResponse,
  ID_LENGTH,
  MAX_MESSAGE_BYTES,
  MSG_ID_LENGTH,
  NMSG_NONCE_LENGTH,
  RELAY_BLOCK_SIZE,
  RELAY_PROTOCOL,
  RELAY_VERSIONS,
  UNKNOWN_COMMAND,
  type RelayCommand,
  type RelayError,
  type RelayResponse,
} from './protocol.ts';
import type { KeptQueue, PendingNotification, QueueRecord, QueueStore, StoredMessage } from './store/store.ts';

export interface RelayLimits extends ConnectionLimits {
  /** Messages a queue may hold before SEND gets QUOTA. */
  queueQuota: number;
  /** Largest SEND body; larger gets LARGE_MSG. */
  maxMessageBytes: number;
  /** Messages older than this are deleted undelivered. */
  messageTtlMs: number;
  /** How long the latest NMSG is kept for an unsubscribed notifier. */
  pendingNotificationTtlMs: number;
}

export const DEFAULT_LIMITS: RelayLimits = {
  queueQuota: 128,
  maxMessageBytes: MAX_MESSAGE_BYTES,
  messageTtlMs: 21 * 24 * 3600_000,
  pendingNotificationTtlMs: 24 * 3600_000,
  ...DEFAULT_CONNECTION_LIMITS,
};

/** NEW for anyone (no password), in bursts a messenger adding contacts needs, at a rate a flood does not get far with. */
export const DEFAULT_CREATION: CreationPolicy = {
  perConnection: { burst: 20, perMinute: 5 },
  perAddress: { burst: 50, perMinute: 10 },
};

export interface RelayServerOptions extends ListenerOptions {
  store: QueueStore;
  limits?: Partial<RelayLimits>;
  /** Who may NEW: password, rate limits (relay.json `creation`). */
  creation?: Partial<CreationPolicy>;
  metrics?: RelayMetrics;
  now?: () => number;
  /** How often expired messages and notifications are swept. */
  expireIntervalMs?: number;
}

const SPEC: ServerSpec = {
  protocol: RELAY_PROTOCOL,
  versions: RELAY_VERSIONS,
  blockSize: RELAY_BLOCK_SIZE,
  busyReply: encodeResponse({ type: 'ERR', error: 'BUSY' }),
};

export class RelayServer {
  readonly metrics: RelayMetrics;
  readonly limits: RelayLimits;
  private readonly server: ProtocolServer;
  private readonly store: QueueStore;
  private readonly crypto: CryptoSuite;
  readonly now: () => number;
  readonly subscriptions: Subscriptions;
  readonly creation: CreationGuard;
  private expireTimer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly opts: RelayServerOptions) {
    this.store = opts.store;
    this.crypto = opts.crypto;
    this.now = opts.now ?? Date.now;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    // A larger body would make a MSG that no block can carry.
    if (this.limits.maxMessageBytes > MAX_MESSAGE_BYTES) throw new RangeError(`maxMessageBytes is at most ${MAX_MESSAGE_BYTES}`);
    this.metrics = opts.metrics ?? new RelayMetrics(opts.store, this.now);
    this.creation = new CreationGuard({ ...DEFAULT_CREATION, ...opts.creation }, this.now, (reason) =>
      this.metrics.creationsRefused.inc({ reason }),
    );
    this.subscriptions = new Subscriptions({
      store: this.store,
      seal: (q, m) => this.sealMessage(q, m),
      delivered: () => this.metrics.messagesDelivered.inc(),
      serviceTakenOver: () => this.metrics.serviceTakeovers.inc(),
    });
    const protocol: SessionProtocol<RelayCommand, RelayResponse, RelayError> = {
      decodeCommand,
      unknownCommand: UNKNOWN_COMMAND,
      encodeResponse,
      metrics: this.metrics,
    };
    this.server = serveProtocol(SPEC, opts, {
      limits: this.limits,
      store: this.store,
      metrics: this.metrics,
      handler: (session) => new RelaySession(this, protocol, session),
    });
  }

  async start(): Promise<number> {
    const port = await this.server.listen();
    this.expire();
    this.expireTimer = setInterval(() => this.expire(), this.opts.expireIntervalMs ?? 60_000);
    this.expireTimer.unref();
    this.opts.log.info({ event: 'relay_started', port, tls: this.opts.tls !== undefined });
    return port;
  }

  async stop(): Promise<void> {
    clearInterval(this.expireTimer);
    await this.server.close();
    await this.store.close();
  }

  /** Not ok once the store can no longer persist: every reply would wait for a flush that fails. */
  health(): { ok: boolean; reason?: string } {
    const failure = this.store.failure();
    return failure ? { ok: false, reason: `store failed: ${failure}` } : { ok: true };
  }

  /** Resolves when every reply queued so far has been written. */
  drain = () => this.server.drain();

  /** The address clients use, once started. */
  get address(): string {
    return this.server.address;
  }

  get connections(): number {
    return this.server.connections;
  }

  expire(): void {
    const now = this.now();
    const messages = this.store.expireMessages(now - this.limits.messageTtlMs);
    const ntfs = this.store.expirePendingNotifications(now - this.limits.pendingNotificationTtlMs);
    if (messages + ntfs > 0) this.opts.log.info({ event: 'expired', messages, notifications: ntfs });
    if (messages > 0) this.subscriptions.releaseExpiredInFlight();
  }

  // ---- helpers the sessions share ----

  newId = () => this.crypto.randomBytes(ID_LENGTH);

  sealMessage(q: KeptQueue, m: StoredMessage): RelayResponse {
    // Re-encrypted for the recipient, so delivered bytes share nothing with sent bytes.
    const sealed = this.crypto.seal(q.rcvDhSecret, m.msgId, encodeMessagePlain(m.ts, m.notify, m.body));
    return { type: 'MSG', msgId: m.msgId, sealed };
  }

  /**
   * Seals an NMSG for the queue's notifier and keeps it until the subscriber
   * acknowledges it (NACK): a notification written into a connection that dies
   * is sent again on the next NSUB/NSUBS. Only the latest per queue is kept.
   */
  notify(q: KeptQueue, m: StoredMessage): void {
    const n = q.notifier!;
    const nonce = this.crypto.randomBytes(NMSG_NONCE_LENGTH);
    const sealedMeta = this.crypto.seal(n.rcvNtfDhSecret, nonce, encodeMeta(m));
    const p: PendingNotification = { nonce, sealedMeta, ts: this.now() };
    this.store.setPendingNotification(q.rcvId, p);
    const s = this.subscriptions.notifierSubscriber(q);
    this.metrics.notifications.inc({ outcome: s ? 'delivered' : 'stored' });
    if (s) this.sendNotification(q, s, p);
  }

  /** Sends the unacknowledged NMSG of a queue to its notifier (one that just subscribed, or caught up). */
  flushPending(q: KeptQueue, s: Subscriber): void {
    const p = this.store.pendingNotification(q.rcvId);
    if (p && this.sendNotification(q, s, p)) this.metrics.notifications.inc({ outcome: 'redelivered' });
  }

  /** False when the connection is at its outbound cap: it gets the NMSG once it has caught up (kept until NACK anyway). */
  private sendNotification(q: KeptQueue, s: Subscriber, p: PendingNotification): boolean {
    if (s.congested()) {
      this.subscriptions.holdNotification(q, s);
      return false;
    }
    s.event(q.notifier!.notifierId, { type: 'NMSG', nonce: p.nonce, sealedMeta: p.sealedMeta });
    return true;
  }
}

type Reply = RelayResponse | RelayError;

/** One client connection's command handlers; what it subscribes to is kept in `relay.subscriptions`. */
class RelaySession extends ProtocolSession<RelayCommand, RelayResponse, RelayError> {
  /** This connection's NEW budget, made at its first NEW. */
  private creations: RateLimiter | undefined;

  constructor(
    private readonly relay: RelayServer,
    protocol: SessionProtocol<RelayCommand, RelayResponse, RelayError>,
    session: Session,
  ) {
    super(protocol, session);
  }

  congested(): boolean {
    return this.session.congested();
  }

  drained(): void {
    for (const q of this.relay.subscriptions.resume(this)) this.relay.flushPending(q, this);
  }

  protected handle(t: Transmission, c: RelayCommand): Reply {
    const s = this.session;
    switch (c.type) {
      case 'PING':
        return shapeError(t, false, false) ?? { type: 'PONG' };
      case 'NEW': {
        const bad = shapeError(t, false, true);
        if (bad) return bad;
        if (![c.rcvAuthKey, c.rcvDhKey, ...(c.ntf ? [c.ntf.ntfAuthKey, c.ntf.rcvNtfDhKey] : [])].every(isValidPublicKey)) return 'KEY';
        // Before the key agreement of verify: a refused NEW costs the relay little.
        const refused = this.relay.creation.check((this.creations ??= this.relay.creation.connectionBudget()), s.address, c.password);
        if (refused) return refused;
        if (!s.verify(t, c.rcvAuthKey, 'NEW')) return 'AUTH';
        const r = this.newQueue(c);
        if (typeof r === 'object' && r.type === 'IDS') s.created(t, c.rcvAuthKey, 'NEW', 'recipient', r.rcvId);
        return r;
      }
      case 'NSUBS': {
        const bad = shapeError(t, false, true);
        if (bad) return bad;
        if (!isValidPublicKey(c.serviceKey)) return 'KEY';
        if (!s.verify(t, c.serviceKey, 'NSUBS')) return 'AUTH';
        return this.subscribeService(this.relay.opts.crypto.sha256(c.serviceKey));
      }
      case 'SEND':
        return this.send(t, c);
      case 'NACK':
      case 'NUNS':
        return this.notifierCommand(t, c);
      case 'NSUB': {
        const bad = shapeError(t, true, true);
        if (bad) return bad;
        const q = this.authorized(t, this.relay.opts.store.byNotifier(t.entityId), (q) => q.notifier!.ntfAuthKey, 'notifier');
        return q ? this.subscribeNotifier(q) : 'AUTH';
      }
    }
    // Recipient commands.
    const bad = shapeError(t, true, true);
    if (bad) return bad;
    const q = this.authorized(t, this.relay.opts.store.byRecipient(t.entityId), (q) => q.rcvAuthKey, 'recipient');
    return q ? this.recipient(q, c) : 'AUTH';
  }

  private newQueue(c: Extract<RelayCommand, { type: 'NEW' }>): Reply {
    const { crypto, store } = this.relay.opts;
    const queueDh = crypto.x25519KeyPair();
    const rcvDhSecret = sharedKey(crypto, queueDh.privateKey, c.rcvDhKey, 'relay recipient');
    if (!rcvDhSecret) return 'KEY';
    let ntf: { record: NonNullable<QueueRecord['notifier']>; srvNtfDhKey: Uint8Array } | undefined;
    if (c.ntf) {
      ntf = this.notifierKeys(c.ntf.ntfAuthKey, c.ntf.rcvNtfDhKey);
      if (!ntf) return 'KEY';
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const q: QueueRecord = {
        rcvId: this.relay.newId(),
        sndId: this.relay.newId(),
        rcvAuthKey: c.rcvAuthKey,
        rcvDhSecret,
        suspended: false,
        ...(ntf ? { notifier: ntf.record } : {}),
      };
      if (!store.createQueue(q)) continue;
      return {
        type: 'IDS',
        rcvId: q.rcvId,
        sndId: q.sndId,
        srvDhKey: queueDh.publicKey,
        ...(ntf ? { ntf: { notifierId: ntf.record.notifierId, srvNtfDhKey: ntf.srvNtfDhKey } } : {}),
      };
    }
    return 'INTERNAL';
  }

  private notifierKeys(ntfAuthKey: Uint8Array, rcvNtfDhKey: Uint8Array) {
    const { crypto } = this.relay.opts;
    if (!isValidPublicKey(ntfAuthKey)) return undefined;
    const dh = crypto.x25519KeyPair();
    const rcvNtfDhSecret = sharedKey(crypto, dh.privateKey, rcvNtfDhKey, 'relay notifier');
    if (!rcvNtfDhSecret) return undefined;
    return { record: { notifierId: this.relay.newId(), ntfAuthKey, rcvNtfDhSecret }, srvNtfDhKey: dh.publicKey };
  }

  private recipient(q: KeptQueue, c: RelayCommand): Reply {
    const { store } = this.relay.opts;
    switch (c.type) {
      case 'SUB': {
        this.relay.subscriptions.subscribeRecipient(q, this);
        this.defer(() => this.relay.subscriptions.deliver(q));
        return { type: 'OK' };
      }
      case 'GET': {
        if (this.relay.subscriptions.isRecipient(q, this)) return 'PROHIBITED';
        const m = store.peekMessage(q.rcvId);
        return m ? this.relay.sealMessage(q, m) : { type: 'OK' };
      }
      case 'ACK': {
        const acked = store.ackMessage(q.rcvId, c.msgId);
        if (acked && this.relay.subscriptions.acked(q, c.msgId)) this.defer(() => this.relay.subscriptions.deliver(q));
        return acked ? { type: 'OK' } : 'NO_MSG';
      }
      case 'KEY':
        if (!isValidPublicKey(c.sndAuthKey)) return 'KEY';
        if (q.sndAuthKey) return equalBytes(q.sndAuthKey, c.sndAuthKey) ? { type: 'OK' } : 'AUTH';
        store.secureQueue(q.rcvId, c.sndAuthKey);
        return { type: 'OK' };
      case 'NKEY': {
        const ntf = this.notifierKeys(c.ntfAuthKey, c.rcvNtfDhKey);
        if (!ntf) return 'KEY';
        this.relay.subscriptions.dropNotifier(q);
        if (!store.setNotifier(q.rcvId, ntf.record)) return 'INTERNAL';
        return { type: 'NID', notifierId: ntf.record.notifierId, srvNtfDhKey: ntf.srvNtfDhKey };
      }
      case 'NDEL':
        if (q.notifier) {
          this.relay.subscriptions.dropNotifier(q);
          store.deleteNotifier(q.rcvId);
        }
        return { type: 'OK' };
      case 'OFF':
        store.suspendQueue(q.rcvId);
        return { type: 'OK' };
      case 'DEL': {
        this.relay.subscriptions.dropNotifier(q);
        this.relay.subscriptions.dropRecipient(q, this);
        store.deleteQueue(q.rcvId);
        return { type: 'OK' };
      }
      default:
        return 'UNKNOWN';
    }
  }

  private send(t: Transmission, c: Extract<RelayCommand, { type: 'SEND' }>): Reply {
    const bad = shapeError(t, true); // an authenticator or none: which one the queue takes is checked below
    if (bad) return bad;
    const { store, crypto } = this.relay.opts;
    const q = store.bySender(t.entityId);
    // Until KEY secures the queue only an unauthenticated SEND is accepted; after, only the sender key.
    // An unknown ID, or an authenticator on an unsecured queue, is checked alike (against no key) and fails.
    const open = q !== undefined && !q.sndAuthKey && t.auth.length === 0;
    if (!open && !this.session.verify(t, q?.sndAuthKey, 'sender')) return 'AUTH';
    if (!q || q.suspended) return 'AUTH';
    if (c.body.length > this.relay.limits.maxMessageBytes) return 'LARGE_MSG';
    if (store.messageCount(q.rcvId) >= this.relay.limits.queueQuota) return 'QUOTA';
    const m: StoredMessage = { msgId: crypto.randomBytes(MSG_ID_LENGTH), ts: this.relay.now(), notify: c.notify, body: c.body.slice() };
    store.addMessage(q.rcvId, m);
    this.relay.metrics.messagesSent.inc();
    this.defer(() => {
      this.relay.subscriptions.deliver(q);
      if (c.notify && q.notifier) this.relay.notify(q, m);
    });
    return { type: 'OK' };
  }

  /**
   * NACK and NUNS need no key: only the connection that gets a queue's NMSGs
   * (its NSUB, or its service's NSUBS) may send them, and it proved a key to get
   * there. Unknown and foreign notifier IDs cost the same map lookups: no oracle.
   */
  private notifierCommand(t: Transmission, c: Extract<RelayCommand, { type: 'NACK' | 'NUNS' }>): Reply {
    const bad = shapeError(t, true, false);
    if (bad) return bad;
    const { store } = this.relay.opts;
    const q = store.byNotifier(t.entityId);
    if (!q || this.relay.subscriptions.notifierSubscriber(q) !== this) return 'AUTH';
    if (c.type === 'NACK') {
      const p = store.pendingNotification(q.rcvId);
      // An older nonce was superseded by a newer NMSG, which stays until its own NACK.
      if (p && equalBytes(p.nonce, c.nonce)) store.clearPendingNotification(q.rcvId);
      return { type: 'OK' };
    }
    this.relay.subscriptions.unsubscribeNotifier(q, this);
    store.clearPendingNotification(q.rcvId);
    return { type: 'OK' };
  }

  private subscribeNotifier(q: KeptQueue): Reply {
    this.relay.subscriptions.subscribeNotifier(q, this);
    this.defer(() => this.relay.flushPending(q, this));
    return { type: 'OK' };
  }

  private subscribeService(serviceId: Uint8Array): Reply {
    const queues = this.relay.subscriptions.subscribeService(serviceId, this);
    this.defer(() => {
      for (const q of queues) {
        this.relay.subscriptions.claimForService(q, this);
        this.relay.flushPending(q, this);
      }
    });
    return { type: 'SOKS', count: queues.length };
  }

  override closed(): void {
    this.relay.subscriptions.closed(this);
  }
}
