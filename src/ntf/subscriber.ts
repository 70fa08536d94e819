// Relay subscriber: one connection per relay (pinned by the fingerprint in its
// address) carrying every subscription the server has there. On connect it
// identifies as the server's service (NSUBS): every queue it ever subscribed
// is subscribed again by that one command, so a restart of either side costs
// O(1) commands per relay. New subscriptions wait a short batching window and
// go out as NSUBs in blocks. A quiet link is PINGed and a dead one closed
// (keepalive); a lost connection is retried with exponential backoff and
// jitter, and meanwhile its ACTIVE subscriptions read as INACTIVE. Each NMSG is
// acknowledged (NACK) only once the store has made it durable, so the relay
// sends again whatever a dead link or a killed server lost.
import type { Logger } from 'pino';
import type { KeepaliveOptions, WebSocketFactory } from '../core/client.ts';
import type { CryptoSuite, KeyPair } from '../core/crypto/suite.ts';
import { RelayClient, RelayCommandError, type RelayEvent } from '../relay/client.ts';
import { bytesOf, latin1 } from './store/records.ts';
import type { NtfStore, SubRecord } from './store/store.ts';

export interface SubscriberOptions {
  crypto: CryptoSuite;
  serviceKey: KeyPair;
  webSocket: WebSocketFactory;
  store: NtfStore;
  log: Logger;
  /** An NMSG for a subscription: recorded in the store before this returns. */
  onNotification(sub: SubRecord, nmsg: { nonce: Uint8Array; sealedMeta: Uint8Array }): void;
  /** Background changes to persist. */
  changed(): void;
  /** Resolves once every change made so far is durable (the store's flush). */
  durable(): Promise<void>;
  /** The round trip of each answered PING on a relay link. */
  onProbe?(rttMs: number): void;
  keepalive?: Partial<KeepaliveOptions>;
  now: () => number;
  batchWindowMs?: number;
  /** NSUBs in flight per relay (below the relay's pending limit). */
  batchSize?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
}

export class RelaySubscriber {
  private readonly links = new Map<string, RelayLink>();
  private closed = false;

  constructor(readonly opts: SubscriberOptions) {}

  /** Connects to every relay the store has subscriptions at. */
  start(): void {
    for (const relay of [...this.opts.store.relays()]) this.link(relay);
  }

  /** A new subscription: NSUB in the next batch. */
  add(sub: SubRecord): void {
    this.opts.store.setSubStatus(sub.subId, 'PENDING');
    this.link(sub.relay).queue(sub);
  }

  /** A subscription the store has deleted: the relay stops notifying it (NUNS); a link left with none is closed. */
  remove(sub: SubRecord): void {
    const l = this.links.get(sub.relay);
    if (!l) return;
    const empty = () => {
      for (const _ of this.opts.store.subsOfRelay(sub.relay)) return false;
      return true;
    };
    void l.unsubscribe(bytesOf(sub.notifierId)).then(() => {
      if (!empty() || this.links.get(sub.relay) !== l) return;
      l.close();
      this.links.delete(sub.relay);
      this.opts.log.info({ event: 'relay_link_closed', reason: 'no subscriptions' });
    });
  }

  connected(relay: string): boolean {
    return this.links.get(relay)?.connected ?? false;
  }

  /** Links by state: up (subscribed), connecting, down (waiting to retry). */
  linkStates(): Record<LinkState, number> {
    const n: Record<LinkState, number> = { up: 0, connecting: 0, down: 0 };
    for (const l of this.links.values()) n[l.state]++;
    return n;
  }

  /** The longest time (ms) a link with subscriptions has not been up; 0 when all are. */
  longestDown(): number {
    const now = this.opts.now();
    let max = 0;
    for (const l of this.links.values()) if (l.downSince !== undefined) max = Math.max(max, now - l.downSince);
    return max;
  }

  /** ACTIVE subscriptions at relays that are disconnected now. */
  inactive(): number {
    let n = 0;
    for (const [relay, l] of this.links)
      if (!l.connected) for (const s of this.opts.store.subsOfRelay(relay)) if (s.status === 'ACTIVE') n++;
    return n;
  }

  private link(relay: string): RelayLink {
    let l = this.links.get(relay);
    if (!l) {
      l = new RelayLink(relay, this.opts);
      this.links.set(relay, l);
      if (!this.closed) l.connect();
    }
    return l;
  }

  /** Resolves once every relay link has finished its current (re)subscription. */
  async settled(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.settled()));
  }

  close(): void {
    this.closed = true;
    for (const l of this.links.values()) l.close();
  }
}

export type LinkState = 'up' | 'connecting' | 'down';

class RelayLink {
  private client: RelayClient | undefined;
  /** NMSGs received, acknowledged once the store has them. */
  private acks: { client: RelayClient; notifierId: Uint8Array; nonce: Uint8Array }[] = [];
  private connecting = false;
  /** When the link stopped being up (ms, the subscriber's clock); undefined while up. */
  downSince: number | undefined;
  private waiting: SubRecord[] = [];
  private batchTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private closed = false;
  /** NSUBS answered on this.client: until then its subscriptions are not live. */
  private ready = false;
  private work: Promise<void> = Promise.resolve();

  constructor(
    readonly relay: string,
    private readonly o: SubscriberOptions,
  ) {
    this.downSince = o.now();
  }

  /** Connected and resubscribed (NSUBS answered). */
  get connected(): boolean {
    return this.ready && (this.client?.connected ?? false);
  }

  get state(): LinkState {
    return this.connected ? 'up' : this.connecting ? 'connecting' : 'down';
  }

  async connect(): Promise<void> {
    const { log, crypto, webSocket, serviceKey, store } = this.o;
    this.connecting = true;
    try {
      const client = await RelayClient.connect(this.relay, {
        crypto,
        webSocket,
        timeoutMs: 30_000,
        ...(this.o.keepalive ? { keepalive: this.o.keepalive } : {}),
        ...(this.o.onProbe ? { onPing: this.o.onProbe } : {}),
        onEvent: (e) => this.event(client, e),
        onClose: (why) => this.lost(client, why),
      });
      if (this.closed) return client.close();
      // set before NSUBS is answered: NMSGs the relay kept may follow the answer in the same block
      this.client = client;
      const count = await client.subscribeService(serviceKey);
      if (client !== this.client) return; // lost meanwhile; a reconnect is under way
      this.ready = true;
      this.connecting = false;
      this.downSince = undefined;
      this.failures = 0;
      // Subscriptions the service does not cover yet, and all of them if the relay lost track.
      const subs = [...store.subsOfRelay(this.relay)];
      const active = subs.filter((s) => s.status === 'ACTIVE').length;
      const redo = subs.filter((s) => s.status === 'NEW' || s.status === 'PENDING' || (count < active && s.status === 'ACTIVE'));
      log.info({ event: 'relay_connected', services: count, resubscribe: redo.length });
      this.waiting = redo; // every waiting subscription is PENDING, so in `redo` already
      this.flushSoon(0);
    } catch (e) {
      log.warn({ event: 'relay_connect_failed', err: e instanceof Error ? e.message : String(e) });
      this.client?.close();
      this.client = undefined;
      this.ready = false;
      this.connecting = false;
      this.retry();
    }
  }

  private retry(): void {
    if (this.closed || this.retryTimer) return;
    const base = Math.min(this.o.maxBackoffMs ?? 30_000, (this.o.backoffMs ?? 250) * 2 ** this.failures++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, base * (0.5 + Math.random() / 2));
  }

  private lost(client: RelayClient, why: string): void {
    if (client !== this.client) return;
    this.client = undefined;
    this.ready = false;
    this.downSince ??= this.o.now();
    this.o.log.warn({ event: 'relay_disconnected', reason: why });
    this.retry();
  }

  /** NUNS on the current connection; a link that is down has nothing to stop (see the stray NMSG case in event()). */
  async unsubscribe(notifierId: Uint8Array): Promise<void> {
    const client = this.client;
    if (!client || !this.ready) return;
    try {
      await client.unsubscribeNotifier(notifierId);
    } catch {
      // AUTH: the relay already had no such subscription here; a lost link: same as down.
    }
  }

  /**
   * NACKs wait for a store flush called after their NMSGs were recorded: the
   * NMSGs of one block are taken together (a microtask runs after the whole
   * block), and later ones start their own flush. A connection lost meanwhile
   * drops its NACKs: the relay sends those NMSGs again.
   */
  private acknowledge(client: RelayClient, notifierId: Uint8Array, nonce: Uint8Array): void {
    this.acks.push({ client, notifierId, nonce });
    if (this.acks.length > 1) return;
    queueMicrotask(() => {
      const acks = this.acks;
      this.acks = [];
      this.o.durable().then(
        () => {
          for (const a of acks) if (a.client.connected) a.client.acknowledgeNotification(a.notifierId, a.nonce).catch(() => {});
        },
        // Not durable: never acknowledged, the relay keeps them.
        (err) => this.o.log.error({ event: 'store_flush_failed', err: String(err) }),
      );
    });
  }

  queue(sub: SubRecord): void {
    this.waiting.push(sub);
    this.flushSoon(this.o.batchWindowMs ?? 10);
  }

  private flushSoon(ms: number): void {
    // Not before NSUBS is answered: connect() then takes every PENDING subscription
    // itself, and one sent meanwhile would go twice.
    if (this.batchTimer || !this.ready) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.work = this.work.then(() => this.subscribeWaiting());
    }, ms);
  }

  /** NSUBs for the waiting subscriptions, a batch at a time. */
  private async subscribeWaiting(): Promise<void> {
    const { store } = this.o;
    const size = this.o.batchSize ?? 1000;
    while (this.waiting.length > 0) {
      const client = this.client;
      if (!client) return; // kept waiting for the next connection
      const batch = this.waiting.splice(0, size).filter((s) => store.sub(s.subId) === s);
      const results = await Promise.allSettled(
        batch.map((s) => client.subscribeNotifier(bytesOf(s.notifierId), bytesOf(s.ntfAuthKey))),
      );
      const retried = new Map<string, number>();
      results.forEach((r, i) => {
        const s = batch[i]!;
        if (r.status === 'fulfilled') return store.setSubStatus(s.subId, 'ACTIVE');
        if (r.reason instanceof RelayCommandError && r.reason.error === 'AUTH') return store.setSubStatus(s.subId, 'AUTH');
        this.waiting.push(s); // BUSY or connection trouble: again later
        const why = r.reason instanceof RelayCommandError ? r.reason.error : 'connection';
        retried.set(why, (retried.get(why) ?? 0) + 1);
      });
      if (retried.size > 0) this.o.log.warn({ event: 'nsub_retry', ...Object.fromEntries(retried) });
      this.o.changed();
      if (results.some((r) => r.status === 'rejected' && !(r.reason instanceof RelayCommandError))) return;
    }
  }

  private event(client: RelayClient, e: RelayEvent): void {
    if (client !== this.client) return; // a replaced connection
    const { store } = this.o;
    if (e.type === 'ENDS') {
      // Another connection of this service took over: let it, and come back later.
      this.o.log.warn({ event: 'relay_service_taken_over' });
      client.close();
      return;
    }
    const sub = store.subOfNotifier(this.relay, latin1(e.entityId));
    if (!sub) {
      // Deleted while the link was down, so its NUNS never went: send it now.
      if (e.type === 'NMSG') client.unsubscribeNotifier(e.entityId).catch(() => {});
      return;
    }
    switch (e.type) {
      case 'NMSG':
        this.o.onNotification(sub, e);
        this.acknowledge(client, e.entityId, e.nonce);
        return;
      case 'END':
        store.setSubStatus(sub.subId, 'END');
        break;
      case 'DELD':
        store.setSubStatus(sub.subId, 'DELETED');
        break;
      default:
        return;
    }
    this.o.changed();
  }

  async settled(): Promise<void> {
    while (this.batchTimer || this.waiting.length > 0 || (this.client && !this.ready)) {
      if (!this.client) return;
      await new Promise((r) => setTimeout(r, 5));
      await this.work;
    }
    await this.work;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.batchTimer);
    clearTimeout(this.retryTimer);
    this.client?.close();
    this.client = undefined;
    this.ready = false;
  }
}
