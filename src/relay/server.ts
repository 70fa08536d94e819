// The relay: command handlers and subscriptions. Handlers run synchronously
// against the store's in-memory state; ProtocolServer holds their replies
// until the store has flushed.
import type { CryptoSuite } from '../core/crypto/suite.ts';
import type { Transmission } from '../core/transmission.ts';
import { equalBytes, latin1, latin1Bytes } from '../core/encoding.ts';
import { isValidPublicKey, sharedKey } from '../core/keys.ts';
import { serveProtocol, shapeError, type Session, type SessionHandler } from '../server/protocol-server.ts';
import { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../server/connection-limits.ts';
import type { ListenerOptions, ProtocolServer, ServerSpec } from '../server/protocol-server.ts';
import { CreationGuard, type CreationPolicy } from '../server/creation.ts';
import type { RateLimiter } from '../server/rate-limit.ts';
import { RelayMetrics } from './metrics.ts';
import {
  decodeCommand,
  encodeMeta,
  encodeMessagePlain,
  encodeResponse,
  DELIVERY_WINDOW,
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
import type { QueueRecord, QueueStore, StoredMessage } from './store/store.ts';

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

const EMPTY = new Uint8Array(0);
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
  readonly recipients = new Map<string, RelaySession>();
  readonly notifiers = new Map<string, RelaySession>();
  readonly services = new Map<string, RelaySession>();
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
    this.server = serveProtocol(SPEC, opts, {
      limits: this.limits,
      store: this.store,
      metrics: this.metrics,
      handler: (session) => new RelaySession(this, session),
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
    if (messages > 0) this.releaseExpiredInFlight();
  }

  /** Expired messages leave the front of a subscriber's window: it would wait for ACKs that cannot succeed. */
  private releaseExpiredInFlight(): void {
    for (const [k, s] of this.recipients) {
      const sent = s.inFlight.get(k);
      if (!sent?.length) continue;
      const q = this.store.byRecipient(latin1Bytes(k));
      const head = q && this.store.peekMessage(q.rcvId);
      const headKey = head && latin1(head.msgId);
      if (sent[0] === headKey) continue;
      while (sent.length > 0 && sent[0] !== headKey) sent.shift();
      if (q) this.deliver(q);
    }
  }

  // ---- helpers the sessions share ----

  newId = () => this.crypto.randomBytes(ID_LENGTH);

  sealMessage(q: QueueRecord, m: StoredMessage): RelayResponse {
    // Re-encrypted for the recipient, so delivered bytes share nothing with sent bytes.
    const sealed = this.crypto.seal(q.rcvDhSecret, m.msgId, encodeMessagePlain(m.ts, m.notify, m.body));
    return { type: 'MSG', msgId: m.msgId, sealed };
  }

  /** Fills the subscriber's delivery window: up to DELIVERY_WINDOW messages ahead of its ACKs, oldest first. */
  deliver(q: QueueRecord): void {
    const k = latin1(q.rcvId);
    const s = this.recipients.get(k);
    if (!s) return;
    let sent = s.inFlight.get(k);
    if (!sent) s.inFlight.set(k, (sent = []));
    while (sent.length < DELIVERY_WINDOW) {
      const m = this.store.messageAt(q.rcvId, sent.length);
      if (!m) return;
      sent.push(latin1(m.msgId));
      s.event(q.rcvId, this.sealMessage(q, m));
      this.metrics.messagesDelivered.inc();
    }
  }

  /** The session that gets NMSGs of a queue: its own NSUB, else its service's NSUBS. */
  notifierSession(q: QueueRecord): RelaySession | undefined {
    const n = q.notifier;
    if (!n) return undefined;
    return this.notifiers.get(latin1(n.notifierId)) ?? (n.serviceId && this.services.get(latin1(n.serviceId)));
  }

  /**
   * Seals an NMSG for the queue's notifier and keeps it until the subscriber
   * acknowledges it (NACK): a notification written into a connection that dies
   * is sent again on the next NSUB/NSUBS. Only the latest per queue is kept.
   */
  notify(q: QueueRecord, m: StoredMessage): void {
    const n = q.notifier!;
    const nonce = this.crypto.randomBytes(NMSG_NONCE_LENGTH);
    const sealedMeta = this.crypto.seal(n.rcvNtfDhSecret, nonce, encodeMeta(m));
    this.store.setPendingNotification(q.rcvId, { nonce, sealedMeta, ts: this.now() });
    const s = this.notifierSession(q);
    if (s) s.event(n.notifierId, { type: 'NMSG', nonce, sealedMeta });
    this.metrics.notifications.inc({ outcome: s ? 'delivered' : 'stored' });
  }

  /** Sends the unacknowledged NMSG of a queue to a notifier that just subscribed. */
  flushPending(q: QueueRecord, s: RelaySession): void {
    const p = this.store.pendingNotification(q.rcvId);
    if (p) {
      s.event(q.notifier!.notifierId, { type: 'NMSG', nonce: p.nonce, sealedMeta: p.sealedMeta });
      this.metrics.notifications.inc({ outcome: 'redelivered' });
    }
  }

  /** Ends the notifier subscription of a queue (NDEL, DEL, NKEY replacing it) with DELD. */
  dropNotifier(q: QueueRecord): void {
    const n = q.notifier;
    if (!n) return;
    const s = this.notifierSession(q);
    this.notifiers.delete(latin1(n.notifierId));
    s?.ntfSubs.delete(latin1(n.notifierId));
    s?.event(n.notifierId, { type: 'DELD' });
  }
}

type Reply = RelayResponse | RelayError;

/** One client connection's view of the relay: its subscriptions and command handlers. */
class RelaySession implements SessionHandler {
  /** Recipient subscriptions, and per queue the msgId keys delivered and awaiting ACK, oldest first. */
  readonly rcvSubs = new Set<string>();
  readonly inFlight = new Map<string, string[]>();
  readonly ntfSubs = new Set<string>();
  serviceId: Uint8Array | undefined;
  /** This connection's NEW budget, made at its first NEW. */
  private creations: RateLimiter | undefined;

  constructor(
    private readonly relay: RelayServer,
    private readonly session: Session,
  ) {}

  event(entityId: Uint8Array, r: RelayResponse): void {
    this.session.send(EMPTY, entityId, encodeResponse(r));
  }

  malformed(corrId: Uint8Array): void {
    this.answer(corrId, EMPTY, 'SYNTAX');
  }

  private answer(corrId: Uint8Array, entityId: Uint8Array, r: Reply): void {
    const response: RelayResponse = typeof r === 'string' ? { type: 'ERR', error: r } : r;
    if (response.type === 'ERR') this.relay.metrics.errors.inc({ error: response.error });
    this.session.send(corrId, entityId, encodeResponse(response));
  }

  transmission(t: Transmission): void {
    const c = decodeCommand(t.command);
    if (!c.ok) return this.answer(t.corrId, t.entityId, c.error === UNKNOWN_COMMAND ? 'UNKNOWN' : 'SYNTAX');
    this.relay.metrics.commands.inc({ command: c.value.type });
    this.answer(t.corrId, t.entityId, this.handle(t, c.value));
    // Deliveries a command triggers go after its reply.
    this.after?.();
    this.after = undefined;
  }

  private after: (() => void) | undefined;

  private handle(t: Transmission, c: RelayCommand): Reply {
    const s = this.session;
    switch (c.type) {
      case 'PING':
        if (t.entityId.length > 0) return 'HAS_ENTITY';
        if (t.auth.length > 0) return 'HAS_AUTH';
        return { type: 'PONG' };
      case 'NEW': {
        if (t.entityId.length > 0) return 'HAS_ENTITY';
        if (t.auth.length === 0) return 'NO_AUTH';
        if (![c.rcvAuthKey, c.rcvDhKey, ...(c.ntf ? [c.ntf.ntfAuthKey, c.ntf.rcvNtfDhKey] : [])].every(isValidPublicKey)) return 'KEY';
        // Before the key agreement of verify: a refused NEW costs the relay little.
        const refused = this.relay.creation.check((this.creations ??= this.relay.creation.connectionBudget()), s.address, c.password);
        if (refused) return refused;
        if (!s.verify(t, c.rcvAuthKey, 'NEW')) return 'AUTH';
        return this.newQueue(c);
      }
      case 'NSUBS':
        if (t.entityId.length > 0) return 'HAS_ENTITY';
        if (t.auth.length === 0) return 'NO_AUTH';
        if (!isValidPublicKey(c.serviceKey)) return 'KEY';
        if (!s.verify(t, c.serviceKey, 'NSUBS')) return 'AUTH';
        return this.subscribeService(this.relay.opts.crypto.sha256(c.serviceKey));
      case 'SEND':
        return this.send(t, c);
      case 'NACK':
      case 'NUNS':
        return this.notifierCommand(t, c);
      case 'NSUB': {
        if (t.entityId.length === 0) return 'NO_ENTITY';
        if (t.auth.length === 0) return 'NO_AUTH';
        const q = this.relay.opts.store.byNotifier(t.entityId);
        // An unknown ID is checked alike (against no key) and fails: no existence oracle.
        return s.verify(t, q?.notifier!.ntfAuthKey, 'notifier') && q ? this.subscribeNotifier(q) : 'AUTH';
      }
    }
    // Recipient commands.
    if (t.entityId.length === 0) return 'NO_ENTITY';
    if (t.auth.length === 0) return 'NO_AUTH';
    const q = this.relay.opts.store.byRecipient(t.entityId);
    if (!s.verify(t, q?.rcvAuthKey, 'recipient') || !q) return 'AUTH';
    return this.recipient(q, c);
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

  private recipient(q: QueueRecord, c: RelayCommand): Reply {
    const { store } = this.relay.opts;
    const k = latin1(q.rcvId);
    switch (c.type) {
      case 'SUB': {
        const other = this.relay.recipients.get(k);
        if (other && other !== this) {
          other.rcvSubs.delete(k);
          other.inFlight.delete(k);
          other.event(q.rcvId, { type: 'END' });
        }
        this.relay.recipients.set(k, this);
        this.rcvSubs.add(k);
        this.inFlight.delete(k); // a repeated SUB delivers the unacknowledged message again
        this.after = () => this.relay.deliver(q);
        return { type: 'OK' };
      }
      case 'GET': {
        if (this.rcvSubs.has(k)) return 'PROHIBITED';
        const m = store.peekMessage(q.rcvId);
        return m ? this.relay.sealMessage(q, m) : { type: 'OK' };
      }
      case 'ACK': {
        const acked = store.ackMessage(q.rcvId, c.msgId);
        // The ACK frees a place in the subscriber's window, also when it comes
        // from another connection (after a GET there).
        const sent = this.relay.recipients.get(k)?.inFlight.get(k);
        if (acked && sent?.[0] === latin1(c.msgId)) {
          sent.shift();
          this.after = () => this.relay.deliver(q);
        }
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
        this.relay.dropNotifier(q);
        if (!store.setNotifier(q.rcvId, ntf.record)) return 'INTERNAL';
        return { type: 'NID', notifierId: ntf.record.notifierId, srvNtfDhKey: ntf.srvNtfDhKey };
      }
      case 'NDEL':
        if (q.notifier) {
          this.relay.dropNotifier(q);
          store.deleteNotifier(q.rcvId);
        }
        return { type: 'OK' };
      case 'OFF':
        store.suspendQueue(q.rcvId);
        return { type: 'OK' };
      case 'DEL': {
        this.relay.dropNotifier(q);
        const sub = this.relay.recipients.get(k);
        if (sub) {
          this.relay.recipients.delete(k);
          sub.rcvSubs.delete(k);
          sub.inFlight.delete(k);
          if (sub !== this) sub.event(q.rcvId, { type: 'DELD' });
        }
        store.deleteQueue(q.rcvId);
        return { type: 'OK' };
      }
      default:
        return 'UNKNOWN';
    }
  }

  private send(t: Transmission, c: Extract<RelayCommand, { type: 'SEND' }>): Reply {
    const { store, crypto } = this.relay.opts;
    if (t.entityId.length === 0) return 'NO_ENTITY';
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
    this.after = () => {
      this.relay.deliver(q);
      if (c.notify && q.notifier) this.relay.notify(q, m);
    };
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
    if (!q || this.relay.notifierSession(q) !== this) return 'AUTH';
    if (c.type === 'NACK') {
      const p = store.pendingNotification(q.rcvId);
      // An older nonce was superseded by a newer NMSG, which stays until its own NACK.
      if (p && equalBytes(p.nonce, c.nonce)) store.clearPendingNotification(q.rcvId);
      return { type: 'OK' };
    }
    const k = latin1(t.entityId);
    if (this.ntfSubs.delete(k)) this.relay.notifiers.delete(k);
    else store.setService(q.rcvId, undefined);
    store.clearPendingNotification(q.rcvId);
    return { type: 'OK' };
  }

  private subscribeNotifier(q: QueueRecord): Reply {
    const n = q.notifier!;
    const k = latin1(n.notifierId);
    const current = this.relay.notifierSession(q);
    if (current && current !== this) {
      current.ntfSubs.delete(k);
      current.event(n.notifierId, { type: 'END' });
    }
    const { store } = this.relay.opts;
    if (this.serviceId) {
      // A service's queues are found through the service: one NSUBS resubscribes them all.
      this.relay.notifiers.delete(k);
      if (!n.serviceId || !equalBytes(n.serviceId, this.serviceId)) store.setService(q.rcvId, this.serviceId);
    } else {
      if (n.serviceId) store.setService(q.rcvId, undefined);
      this.relay.notifiers.set(k, this);
      this.ntfSubs.add(k);
    }
    this.after = () => this.relay.flushPending(q, this);
    return { type: 'OK' };
  }

  private subscribeService(serviceId: Uint8Array): Reply {
    const k = latin1(serviceId);
    const previous = this.relay.services.get(k);
    const queues = this.relay.opts.store.queuesOfService(serviceId);
    if (previous && previous !== this) {
      previous.serviceId = undefined;
      previous.event(EMPTY, { type: 'ENDS', count: queues.length });
    }
    // A connection holds one service: switching keys releases the old one, whose entry would
    // otherwise outlive the connection and swallow its queues' NMSGs instead of keeping them.
    const held = this.serviceId && latin1(this.serviceId);
    if (held && held !== k && this.relay.services.get(held) === this) this.relay.services.delete(held);
    this.relay.services.set(k, this);
    this.serviceId = serviceId;
    this.after = () => {
      for (const q of queues) {
        // Individual NSUBs elsewhere lose to the service subscription.
        const nk = latin1(q.notifier!.notifierId);
        const other = this.relay.notifiers.get(nk);
        if (other) {
          this.relay.notifiers.delete(nk);
          other.ntfSubs.delete(nk);
          if (other !== this) other.event(q.notifier!.notifierId, { type: 'END' });
        }
        this.relay.flushPending(q, this);
      }
    };
    return { type: 'SOKS', count: queues.length };
  }

  closed(): void {
    for (const k of this.rcvSubs) if (this.relay.recipients.get(k) === this) this.relay.recipients.delete(k);
    for (const k of this.ntfSubs) if (this.relay.notifiers.get(k) === this) this.relay.notifiers.delete(k);
    if (this.serviceId && this.relay.services.get(latin1(this.serviceId)) === this)
      this.relay.services.delete(latin1(this.serviceId));
  }
}
